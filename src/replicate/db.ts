/**
 * One database's replication: the loop that reads newly committed WAL frames every sync interval, writes
 * them as one level-0 LTX file `<txid>-<txid>` into the local queue, checkpoints, and takes level-9
 * snapshots; plus the {@link Uploader} that ships the queue. Litestream v0.5's design (reference digest §4),
 * with the Rust walrust's lost-frames bug avoided by holding a read transaction at all times.
 *
 * ## Why nothing committed is lost
 *
 * The loop holds a read transaction (`ReplicationConnection.acquireReadLock`) on its own connection. SQLite
 * (wal.c) then guarantees one of two things for as long as it is held:
 * - the transaction uses a WAL read mark (lock 1…N): no connection can restart or truncate the WAL, and a
 *   checkpoint copies only frames at or before the mark into the database file; or
 * - it uses read lock 0 (the WAL was empty or fully checkpointed when it began): no checkpoint can copy any
 *   frame into the database file, so the WAL can be restarted at most once, at the end it had when the lock
 *   was taken, and a restarted WAL can never be restarted again while it has frames.
 *
 * Hence the rule for a restarted WAL (new salts): if, under the current lock, the loop had already read the old
 * generation to its end, and that generation was the first seen under this lock (or had no frames), the new
 * generation continues exactly from the replicated state: ship it incrementally from offset 32. In every other
 * case (a restart by someone else before we read to the end, a restart while the lock was not held — e.g.
 * after a crash —, a TRUNCATE checkpoint) the loop writes a *full* L0 file: every page of the database file
 * overlaid with the WAL's committed frames. That is always correct; it only costs bandwidth. Our own PASSIVE
 * checkpoint holds a write barrier across "sync, checkpoint, re-take the read lock", so its restart is
 * always the incremental kind.
 *
 * Frames are read as offsets first and their bytes later; a restart in between would overwrite them. A
 * restart rewrites the WAL header before any frame, so the header is re-read after the pages and the file is
 * discarded if it changed.
 *
 * ## Position after a restart of walrust
 *
 * The newest local L0 file (always kept) is the position: its header holds the TXID, the WAL salts and the
 * WAL range it covered. It is verified (`verifyLtx`), and the WAL must still be that generation (same salts,
 * long enough; the running checksum is taken from the stored checksum of the frame right before the
 * position). While running in the background, L0 files are shipped from memory and reach the local disk only
 * at a checkpoint, a stop or an upload failure (queue.ts), so after a crash the local files usually trail the
 * replica: then the replica's newest L0 header is the position, verified against the WAL the same way. With
 * no usable position, the replica's highest TXID is the base and the next file is a full L0 at TXID+1, so
 * TXIDs never restart at 1 over existing data. Local files that do not continue the replica's chain (a gap)
 * are dropped, and a full L0 replaces them.
 *
 * A graceful stop leaves the WAL in place (`ReplicationConnection.close({ keepWal: true })`): closing the last
 * connection would checkpoint and delete it, and the next start would have to ship a full copy.
 *
 * @module
 */

import {
  AuthError,
  ConflictError,
  CorruptionError,
  DatabaseError,
  errorClassOf,
  InterruptedError,
  LocalIoError,
  messageOf,
  WalrustError,
} from "../errors.ts";
import type { DatabaseSettings } from "../config/types.ts";
import { verifyLtx } from "../ltx/decoder.ts";
import { LtxEncoder } from "../ltx/encoder.ts";
import {
  formatLtxFilename,
  HEADER_FLAG_NO_CHECKSUM,
  HEADER_SIZE,
  type LtxHeader,
  parseHeaderBytes,
} from "../ltx/types.ts";
import type { DbStatus, EventBus } from "../observe/events.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { ReplicationConnection } from "../sqlite/connection.ts";
import { readDbHeaderSync } from "../sqlite/db_header.ts";
import {
  DEFAULT_MAX_WAL_READ_BYTES,
  readCommittedFrames,
  readWalHeader,
  WAL_FRAME_HEADER_SIZE,
  WAL_HEADER_SIZE,
  type WalHeader,
  type WalPosition,
  type WalReadResult,
  walStartPosition,
} from "../sqlite/wal.ts";
import { acquireLease, type Lease, leaseKey } from "../storage/lease.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { readAt } from "../util/fs.ts";
import { decideCheckpoint, framesBefore } from "./checkpoint.ts";
import { acquireQueueLock, LocalQueue, type QueueLock } from "./queue.ts";
import { DbFile, encodeFullDatabase, encodeIncremental } from "./snapshot.ts";
import { Uploader, type UploaderOptions, type UploadProblem } from "./uploader.ts";

/** Options of a {@link DbReplicator} beyond the contract's `(settings, client, bus)`. */
export interface DbReplicatorOptions {
  /** Run the sync loop and the uploader in the background (`watch`); false for one-shot use (`snapshot`). */
  background?: boolean;
  /** Take the single-writer lease on the replica (default true). */
  lease?: boolean;
  /** Lease TTL, ms (default 30 000; renewed every third of it). */
  leaseTtlMs?: number;
  /** Added to the ConflictError when another local process holds the queue lock. */
  lockHint?: string;
  /** Uploader tuning. */
  uploader?: Partial<UploaderOptions>;
  /** Called once when replication of this database cannot continue (the lease was taken over). */
  onFatal?: (err: WalrustError) => void;
  /** Bytes of WAL one L0 file covers at most (default 64 MiB, as Litestream). */
  maxWalBytesPerSync?: number;
  /** Progress of a snapshot being written: database bytes encoded so far, and the database size. */
  onSnapshotProgress?: (bytes: number, total: number) => void;
}

/**
 * Encoder chunks of 64 KiB instead of the default 1 MiB: an L0 file of a sync is usually a few KiB, and the
 * encoder allocates a fresh chunk at every flush, including the last one. With a hundred databases syncing
 * every second, 1 MiB chunks were ~200 MiB/s of short-lived buffers that glibc kept in its heap (the largest
 * share of walrust's RSS in bench/replication_compare.ts); a full copy now takes more, smaller writes.
 */
const ENCODER_OPTIONS = { chunkSize: 64 * 1024 } as const;

/** Salts of a WAL generation; {@link EMPTY} stands for "no WAL / empty WAL". */
interface Salts {
  salt1: number;
  salt2: number;
}

const EMPTY: Salts = { salt1: 0, salt2: 0 };

function sameSalts(a: Salts | null | undefined, b: Salts | null | undefined): boolean {
  return !!a && !!b && a.salt1 === b.salt1 && a.salt2 === b.salt2;
}

/** Where replication stands: the WAL position after the last shipped frame (null = empty WAL) and db size. */
interface Cursor {
  pos: WalPosition | null;
  commit: number;
}

/** What is known about the WAL under the current read lock (see the module doc). */
interface Epoch {
  /** The first generation seen under this lock. */
  firstGen: Salts | null;
  /** The generation the loop last read to its end under this lock. */
  reachedEnd: Salts | null;
}

/** What a stat of the WAL says about its content (times in ms). */
interface WalStat {
  ino: number;
  size: number;
  mtime: number;
  ctime: number;
}

/** The WAL must have been unmodified this long before a stat for an unchanged stat to mean "no new frames". */
const WAL_QUIET_MS = 1000;

/** Even when the WAL looks unchanged, it is read at least this often. */
const WAL_RECHECK_MS = 60_000;

/** Thrown inside a file build when the WAL was restarted while its pages were being read. */
class WalChangedError extends Error {
  constructor() {
    super("the WAL was restarted while it was being read");
  }
}

function u32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown-host";
  }
}

/** Absolute form of a path (relative to the current directory), without resolving symlinks. */
function absolute(path: string): string {
  if (path.startsWith("/")) return path;
  try {
    return `${Deno.cwd()}/${path}`.replace(/\/\.\//g, "/");
  } catch {
    return path;
  }
}

/** Replicates one database. */
export class DbReplicator {
  /** Settings of this database. */
  readonly settings: DatabaseSettings;
  /** The replica. */
  readonly client: ReplicaClient;
  /** Database name. */
  readonly name: string;
  readonly #bus: EventBus;
  readonly #opts: DbReplicatorOptions;
  readonly #log: Logger;
  readonly #queue: LocalQueue;
  readonly #uploader: Uploader;
  readonly #walPath: string;
  readonly #owner: string;

  #conn: ReplicationConnection | null = null;
  #db: DbFile | null = null;
  #lock: QueueLock | null = null;
  #lease: Lease | null = null;
  #pageSize = 0;
  #txid = 0;
  #cursor: Cursor | null = null;
  #fullReason = "first sync";
  #epoch: Epoch | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #starting: Promise<void> | null = null;
  #started = false;
  #stopping = false;
  #stopped = false;
  #resync = false;
  #fatal = false;
  #lastSyncAt: number | null = null;
  #lastActivityAt = 0;
  #lastSnapshotAt: number | null = null;
  #nextSnapshotAt = 0;
  #walBytes = 0;
  #walReads = 0;
  /** The WAL as of the last tick whose read reached its end (see {@link DbReplicator.#walUnchanged}). */
  #walSeen: (WalStat & { at: number; cursor: Cursor | null; epoch: Epoch | null }) | null = null;
  #lastError: DbStatus["lastError"] = null;
  #lastErrorLogged = "";
  #queueWarnedAt = 0;
  #queueFullLogged = false;
  #ckpt = { lastAt: Date.now(), activity: false, attemptFrames: 0, attemptGen: null as Salts | null };

  /** A replicator for `settings.path` to `client`; nothing happens until {@link start}. */
  constructor(
    settings: DatabaseSettings,
    client: ReplicaClient,
    bus: EventBus,
    opts: DbReplicatorOptions = {},
  ) {
    this.settings = settings;
    this.client = client;
    this.name = settings.name;
    this.#bus = bus;
    this.#opts = opts;
    this.#log = rootLog.child({ db: settings.name });
    this.#queue = new LocalQueue(settings.queueDir);
    this.#walPath = `${settings.path}-wal`;
    this.#owner = `walrust for ${absolute(settings.path)}`;
    this.#uploader = new Uploader(
      {
        queue: this.#queue,
        client,
        bus,
        db: settings.name,
        log: this.#log,
        beforeUpload: () => this.#ensureLease(),
        onProblem: (p) => this.#onUploadProblem(p),
      },
      { attempts: settings.retry.maxAttempts, ...opts.uploader },
    );
  }

  /** Newest TXID written locally. */
  get txid(): number {
    return this.#txid;
  }

  /** How many background ticks read the WAL (the others found it unchanged by a stat); for tests. */
  get walReads(): number {
    return this.#walReads;
  }

  /** Newest TXID confirmed on the replica. */
  get replicatedTxid(): number {
    return this.#uploader.replicatedTxid;
  }

  /** The local queue (for the compaction/retention hook and tests). */
  get queue(): LocalQueue {
    return this.#queue;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Start and stop

  /**
   * Takes the local lock, opens the database (DatabaseError if missing, not SQLite or not in WAL mode), takes
   * the read lock and the replica lease (ConflictError if another process replicates it), reconciles the local
   * queue with the replica, and — with `background` — starts the loops. Transient replica failures are
   * retried until they pass or {@link stop} is called.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const s = this.settings;
    const stopping = () => {
      if (this.#stopping) throw new InterruptedError(`stopped while starting replication of ${s.path}`);
    };
    try {
      // The database file is checked before anything is created beside it (a mistyped path leaves no
      // trace), and the replica is reached before the database is opened (opening creates _walrust_seq), so
      // a wrong credential, missing bucket or held lease leaves the database untouched.
      if (!readDbHeaderSync(s.path).walMode) {
        throw new DatabaseError(
          `database ${s.path} is not in WAL mode; run PRAGMA journal_mode=WAL on it (walrust will not change it for you)`,
        );
      }
      this.#lock = await acquireQueueLock(s.queueDir, `database ${s.path}`, this.#opts.lockHint ?? "");
      stopping();
      await this.#queue.init();
      await this.#retryTransient("take the replica lease", () => this.#acquireLease());
      stopping();
      const remote = await this.#retryTransient("list the replica", () => this.client.allLtxFiles());
      stopping();
      this.#conn = ReplicationConnection.open(s.path);
      this.#db = await DbFile.open(s.path);
      this.#pageSize = (await this.#db.header()).pageSize;
      await this.#retryTransient("take the read lock", () => Promise.resolve(this.#ensureReadLock()));
      stopping();
      await this.#reconcile(remote);
      stopping();
    } catch (err) {
      await this.#release();
      // Webhooks hear about rejected credentials even when they stop the process at start (exit 4).
      if (err instanceof AuthError) {
        this.#bus.emit({ type: "auth_failure", db: this.name, error: messageOf(err) });
      }
      throw err;
    }
    this.#started = true;
    this.#bus.emit({ type: "db_started", db: this.name, path: s.path, txid: this.#txid });
    // One-shot use (`snapshot`) prints its own result: the start line would be noise there.
    this.#log[(this.#opts.background ?? true) ? "info" : "debug"]("replicating", {
      path: s.path,
      replica: this.client.displayUrl,
      txid: this.#txid,
      replicated: this.#uploader.replicatedTxid,
    });
    if (this.#opts.background ?? true) {
      this.#uploader.start();
      this.#schedule(0);
    }
  }

  /**
   * Stops: a final sync (unless `finalSync: false`), then up to `flushTimeoutMs` (default 10 s) for the
   * uploader to ship the queue, then releases the lease, the read lock and the local lock. Returns how many
   * files are still queued (they ship on the next start).
   */
  async stop(opts: { flushTimeoutMs?: number; finalSync?: boolean } = {}): Promise<{ pending: number }> {
    if (this.#stopped) return { pending: this.#queue.pending(this.#uploader.replicatedTxid).files };
    this.#stopping = true;
    clearTimeout(this.#timer);
    // A start in progress notices `#stopping` at its next step and unwinds; wait for it.
    await this.#starting?.catch(() => {});
    if (this.#started && !this.#fatal) {
      if (opts.finalSync ?? true) {
        try {
          await this.#exclusive(() => this.#syncLocked());
        } catch (err) {
          this.#log.warn("final sync failed", { error: messageOf(err) });
        }
      }
      const flushMs = opts.flushTimeoutMs ?? 10_000;
      if (flushMs > 0) {
        this.#uploader.start();
        await this.#uploader.drain(flushMs);
      }
    }
    await this.#uploader.stop();
    await this.#chain.catch(() => {});
    // Everything held in memory goes to disk, including the newest L0: the position for the next start.
    await this.#queue.persist(0).catch((err) =>
      this.#log.error("cannot write the local queue to disk", { error: messageOf(err) })
    );
    const pending = this.#queue.pending(this.#uploader.replicatedTxid).files;
    await this.#release();
    this.#stopped = true;
    if (this.#started) this.#bus.emit({ type: "db_stopped", db: this.name });
    return { pending };
  }

  async #release(): Promise<void> {
    clearTimeout(this.#timer);
    if (this.#lease) {
      // Best effort and bounded: with the replica unreachable the lease simply expires after its TTL.
      const lease = this.#lease;
      this.#lease = null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        lease.release().catch(() => {}),
        new Promise((r) => (timer = setTimeout(r, 2000))),
      ]);
      clearTimeout(timer);
    }
    try {
      // Leave the WAL in place: the next start resumes from the newest local L0's position instead of
      // shipping a full copy (closing the last connection would checkpoint and delete the WAL).
      this.#conn?.close({ keepWal: true });
    } catch { /* closing anyway */ }
    this.#conn = null;
    // Only after SQLite closed its connection: see DbFile (closing our descriptor drops SQLite's locks).
    this.#db?.close();
    this.#db = null;
    this.#lock?.release();
    this.#lock = null;
  }

  /** Runs `fn` until it succeeds, retrying transient failures with backoff (1 s … 30 s) until stopped. */
  async #retryTransient<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof WalrustError) || !err.transient || this.#stopping) throw err;
        this.#recordError(err, `cannot ${what}; retrying`);
        await this.#sleep(Math.min(30_000, 1000 * 2 ** Math.min(attempt - 1, 5)));
      }
    }
  }

  /** Sleeps `ms`, or less when {@link stop} is called meanwhile. */
  async #sleep(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!this.#stopping && Date.now() < until) {
      await new Promise((r) => setTimeout(r, Math.min(100, until - Date.now())));
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Lease

  async #acquireLease(): Promise<void> {
    if (this.#opts.lease === false) return;
    const store: ObjectStore = this.client.store;
    const ttl = this.#opts.leaseTtlMs ?? 30_000;
    const onLost = (err: WalrustError) => this.#onFatal(err);
    try {
      this.#lease = await acquireLease(store, this.name, this.#owner, ttl, { onLost });
    } catch (err) {
      if (!(err instanceof ConflictError) || !(await this.#dropOwnStaleLease(store))) throw err;
      this.#lease = await acquireLease(store, this.name, this.#owner, ttl, { onLost });
    }
  }

  /**
   * A lease object left by an earlier walrust process for this same database on this host (it was killed
   * before releasing it) is ours to take over: we hold the local queue lock, so that process is gone.
   * Returns whether such a lease was found and deleted.
   */
  async #dropOwnStaleLease(store: ObjectStore): Promise<boolean> {
    if (store.localPath) return false; // file locks die with their process
    const key = leaseKey(this.name);
    try {
      const info = JSON.parse(new TextDecoder().decode(await store.get(key))) as {
        owner?: string;
        host?: string;
      };
      if (info.owner !== this.#owner || info.host !== hostName()) return false;
      this.#log.info("taking over the lease left by an earlier walrust process for this database", { key });
      await store.delete([key]);
      return true;
    } catch (err) {
      // A replica that failed to answer (after the store's own retries) says nothing about whose lease it
      // is: let the caller retry instead of reporting "held by another process" (exit 11) for our own lease.
      if (err instanceof WalrustError && err.transient) throw err;
      return false;
    }
  }

  /** Before uploads: a lease that expired (e.g. the replica was unreachable for a while) is taken again. */
  async #ensureLease(): Promise<void> {
    if (this.#opts.lease === false || this.#fatal) {
      if (this.#fatal) throw new ConflictError(`replication of ${this.name} stopped: the lease was lost`);
      return;
    }
    if (this.#lease && !this.#lease.lost) return;
    const old = this.#lease;
    this.#lease = null;
    await old?.release().catch(() => {});
    try {
      await this.#acquireLease();
    } catch (err) {
      if (err instanceof ConflictError) this.#onFatal(err);
      throw err;
    }
  }

  #onFatal(err: WalrustError): void {
    if (this.#fatal) return;
    this.#fatal = true;
    this.#recordError(err, "replication stopped");
    this.#opts.onFatal?.(err);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Reconciling local state with the replica

  async #reconcile(remote: LtxFileInfo[]): Promise<void> {
    const remoteMax = remote.reduce((m, f) => Math.max(m, f.maxTXID), 0);
    const snapshots = remote.filter((f) => f.level === 9);
    const newestSnap = snapshots.reduce<number | null>(
      (m, f) => Math.max(m ?? 0, f.createdAt.getTime()),
      null,
    );
    this.#lastSnapshotAt = newestSnap;
    this.#nextSnapshotAt = newestSnap === null ? 0 : this.#periodicSnapshotAfter(newestSnap);

    let header: LtxHeader | null = null;
    let newest = this.#queue.newestL0();
    while (newest) {
      try {
        header = (await verifyLtx(await this.#queue.read(newest), newest.path)).header;
        break;
      } catch (err) {
        if (errorClassOf(err) !== "corruption") throw err;
        this.#log.warn("newest local LTX file is damaged; dropping it", {
          file: newest.path,
          error: messageOf(err),
        });
        await this.#queue.remove(newest);
        newest = this.#queue.newestL0();
      }
    }

    const restart = async (why: string) => {
      this.#log.warn(why);
      for (const f of [...this.#queue.files(0), ...this.#queue.files(9)]) await this.#queue.remove(f);
      this.#txid = remoteMax;
      this.#cursor = null;
      this.#fullReason = why;
    };

    this.#uploader.replicatedTxid = remoteMax;
    // Files shipped from memory never reach the local disk (queue.ts), so after a crash the replica's newest
    // L0 file is usually the position: it is used when it matches this WAL, exactly as a local one would be.
    const fromReplica = (!newest || !header || newest.maxTXID < remoteMax) && remoteMax > 0
      ? await this.#positionFromReplica(remote, remoteMax)
      : null;
    if (fromReplica) {
      for (const f of [...this.#queue.files(0), ...this.#queue.files(9)]) await this.#queue.remove(f);
      this.#txid = remoteMax;
      this.#cursor = fromReplica;
      this.#log.info("continuing from the replica's newest file", { txid: remoteMax });
    } else if (!newest || !header) {
      this.#txid = remoteMax;
      this.#cursor = null;
      this.#fullReason = remoteMax === 0
        ? "first sync of a new replica"
        : `no local state: continuing after the replica's TXID ${remoteMax} with a full snapshot`;
    } else if (newest.maxTXID < remoteMax) {
      await restart(
        `the replica is ahead of the local queue (replica TXID ${remoteMax}, local ${newest.maxTXID}) and ` +
          `its newest file does not match the WAL; continuing after it with a full snapshot`,
      );
    } else {
      const pending = this.#queue.files(0).filter((f) => f.maxTXID > remoteMax);
      let expected = remoteMax + 1;
      let contiguous = true;
      for (const f of pending) {
        if (f.minTXID !== expected) contiguous = false;
        expected = f.maxTXID + 1;
      }
      if (!contiguous) {
        await restart(
          `local queue does not continue the replica's chain at TXID ${remoteMax + 1}; ` +
            `replacing it with a full snapshot`,
        );
      } else {
        this.#txid = newest.maxTXID;
        this.#cursor = await this.#positionFromHeader(header);
        if (!this.#cursor) {
          this.#fullReason =
            "the WAL changed while walrust was not running (restarted, checkpointed or deleted)";
        }
      }
    }
    for (const f of this.#queue.files(9)) if (f.maxTXID > this.#txid) await this.#queue.remove(f);
  }

  /**
   * The position recorded in the replica's L0 file `remoteMax`, if there is one and it matches the WAL (see
   * {@link DbReplicator.#positionFromHeader}); null otherwise. Only the header is read: the position is then
   * checked against the WAL itself (salts and the running checksum of the frame before it), which a header
   * taken from another WAL cannot pass.
   */
  async #positionFromReplica(remote: LtxFileInfo[], remoteMax: number): Promise<Cursor | null> {
    const l0 = remote.find((f) => f.level === 0 && f.minTXID === remoteMax && f.maxTXID === remoteMax);
    if (!l0) return null;
    let header: LtxHeader;
    try {
      header = await this.#retryTransient(
        "read the replica's newest file",
        () => this.#remoteHeader(remoteMax),
      );
    } catch (err) {
      if (errorClassOf(err) !== "corruption" && errorClassOf(err) !== "not_found") throw err;
      return null;
    }
    if (header.minTXID !== remoteMax || header.maxTXID !== remoteMax || header.pageSize !== this.#pageSize) {
      return null;
    }
    return await this.#positionFromHeader(header);
  }

  /** The header of the replica's L0 file `txid` (its first 100 bytes; the rest is not downloaded). */
  async #remoteHeader(txid: number): Promise<LtxHeader> {
    const stream = await this.client.openLtxFile(0, txid, txid);
    const reader = stream.getReader();
    const buf = new Uint8Array(HEADER_SIZE);
    let got = 0;
    try {
      while (got < HEADER_SIZE) {
        const { value, done } = await reader.read();
        if (done) break;
        const n = Math.min(value.length, HEADER_SIZE - got);
        buf.set(value.subarray(0, n), got);
        got += n;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    const r = parseHeaderBytes(buf.subarray(0, got));
    if (!r.ok) throw new CorruptionError(`replica file ${formatLtxFilename(txid, txid)}: ${r.problem}`);
    return r.header;
  }

  /**
   * The WAL position recorded in an L0 header, if the WAL is still that generation; null otherwise. An
   * empty-WAL position is never trusted after a gap in the read lock: the application may have written and
   * checkpointed in between.
   */
  async #positionFromHeader(h: LtxHeader): Promise<Cursor | null> {
    if (h.walOffset === 0) return null;
    const end = h.walOffset + h.walSize;
    const wal = await readWalHeader(this.#walPath);
    if (!wal || wal.salt1 !== h.walSalt1 || wal.salt2 !== h.walSalt2 || wal.pageSize !== this.#pageSize) {
      return null;
    }
    if (end === WAL_HEADER_SIZE) return { pos: walStartPosition(wal), commit: h.commit };
    const frameSize = WAL_FRAME_HEADER_SIZE + wal.pageSize;
    if (end < WAL_HEADER_SIZE || (end - WAL_HEADER_SIZE) % frameSize !== 0) return null;
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(this.#walPath, { read: true });
    } catch {
      return null;
    }
    try {
      const b = await readAt(f, end - frameSize, WAL_FRAME_HEADER_SIZE);
      if (b.length < WAL_FRAME_HEADER_SIZE) return null;
      // The frame before the position must be a commit frame of this generation; its stored checksum is
      // the running checksum at the position.
      if (u32(b, 4) === 0 || u32(b, 8) !== wal.salt1 || u32(b, 12) !== wal.salt2) return null;
      return {
        pos: {
          offset: end,
          salt1: wal.salt1,
          salt2: wal.salt2,
          checksum1: u32(b, 16),
          checksum2: u32(b, 20),
        },
        commit: h.commit,
      };
    } finally {
      f.close();
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // The loop

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => {});
    return run;
  }

  #schedule(delayMs: number): void {
    if (this.#stopping) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
  }

  async #tick(): Promise<void> {
    if (this.#stopping || this.#fatal) return;
    const started = Date.now();
    let failed = false;
    try {
      await this.#exclusive(async () => {
        if (this.#stopping) return;
        if (this.#resync) await this.#rebuildQueue();
        const stat = this.#statWal();
        let atEnd: boolean;
        if (this.#walUnchanged(stat, started)) {
          atEnd = true; // nothing was written since a read that reached the end: no need to open the WAL
        } else {
          this.#walReads++;
          atEnd = await this.#syncLocked();
          this.#walSeen = atEnd && stat
            ? { ...stat, at: started, cursor: this.#cursor, epoch: this.#epoch }
            : null;
        }
        await this.#maybeCheckpointLocked(atEnd);
        if (Date.now() >= this.#nextSnapshotAt) {
          try {
            await this.#snapshotLocked();
          } catch (err) {
            // A snapshot reads the whole database: do not retry it on every tick.
            this.#nextSnapshotAt = Date.now() + Math.min(60_000, this.settings.snapshotIntervalMs || 60_000);
            throw err;
          }
        }
      });
      this.#lastError = null;
      this.#lastErrorLogged = "";
    } catch (err) {
      failed = true;
      this.#walSeen = null;
      this.#recordError(err, "replication step failed; retrying");
    }
    // Fixed rate: the next tick is one interval after this one *started*, so time spent syncing (an fsync
    // under load, a hundred databases sharing the thread) does not stretch the interval and with it the lag.
    const interval = this.settings.syncIntervalMs;
    this.#schedule(failed ? interval : Math.max(0, started + interval - Date.now()));
  }

  /**
   * Whether the WAL certainly has not changed since the last read that reached its end, judged by a stat:
   * same inode, size, mtime and ctime as the stat taken right before that read, with the replication state
   * (cursor, read-lock epoch) untouched since. Sound because that stat showed a file quiet for
   * {@link WAL_QUIET_MS} already: any write after it gets a later timestamp (file times come from a clock with
   * a resolution of milliseconds at worst), and appends also change the size. A real read still happens at
   * least every {@link WAL_RECHECK_MS}. This makes an idle database cost one stat per tick.
   */
  #walUnchanged(stat: WalStat | null, now: number): boolean {
    const seen = this.#walSeen;
    if (!seen || !stat || this.#cursor === null || this.#txid === 0) return false;
    if (seen.cursor !== this.#cursor || seen.epoch !== this.#epoch || !this.#conn?.hasReadLock) return false;
    if (now - seen.at >= WAL_RECHECK_MS || seen.mtime > seen.at - WAL_QUIET_MS) return false;
    return stat.ino === seen.ino && stat.size === seen.size && stat.mtime === seen.mtime &&
      stat.ctime === seen.ctime;
  }

  #recordError(err: unknown, what: string): void {
    const message = messageOf(err);
    const errorClass = errorClassOf(err);
    this.#lastError = { message, errorClass, at: Date.now() };
    if (message !== this.#lastErrorLogged) {
      this.#lastErrorLogged = message;
      this.#log.error(what, { error: message, class: errorClass });
      this.#bus.emit({ type: "error", db: this.name, errorClass, message });
    }
  }

  /** Stats the WAL (also for `status().walBytes`); null when it is missing or unreadable. */
  #statWal(): WalStat | null {
    try {
      const st = Deno.statSync(this.#walPath);
      this.#walBytes = st.size;
      if (st.mtime === null || st.ctime === null || st.ino === null) return null;
      return { ino: st.ino, size: st.size, mtime: st.mtime.getTime(), ctime: st.ctime.getTime() };
    } catch {
      this.#walBytes = 0;
      return null;
    }
  }

  #ensureReadLock(): void {
    const conn = this.#conn;
    if (!conn) throw new DatabaseError(`database ${this.settings.path} is not open`);
    if (conn.hasReadLock && this.#epoch) return;
    if (!conn.hasReadLock) conn.acquireReadLock();
    this.#epoch = { firstGen: null, reachedEnd: null };
  }

  #observe(gen: Salts): void {
    if (this.#epoch && this.#epoch.firstGen === null) this.#epoch.firstGen = { ...gen };
  }

  #reachedEnd(gen: Salts): void {
    this.#observe(gen);
    if (this.#epoch) this.#epoch.reachedEnd = { ...gen };
  }

  /** Whether a restart of generation `gen` (cursor at its end: `zeroFrames` when it had none) is benign. */
  #benign(gen: Salts, zeroFrames: boolean): boolean {
    const e = this.#epoch;
    if (!e || !sameSalts(e.reachedEnd, gen)) return false;
    return zeroFrames || sameSalts(e.firstGen, gen);
  }

  /** Whether the queue is over its limit (then frames stay in the WAL, pinned by the read lock). */
  #queueBlocked(): boolean {
    const max = this.settings.queueMaxBytes;
    const p = this.#uploader.pending();
    if (max > 0 && p.bytes >= 0.8 * max) {
      const now = Date.now();
      if (now - this.#queueWarnedAt >= 30_000) {
        this.#queueWarnedAt = now;
        this.#log.warn(
          `local queue at ${Math.round((100 * p.bytes) / max)}% of its limit; the replica is not keeping up`,
          { files: p.files, bytes: p.bytes, limit: max },
        );
        this.#bus.emit({ type: "queue", db: this.name, files: p.files, bytes: p.bytes, limitBytes: max });
      }
    }
    const full = max > 0 && p.bytes >= max;
    if (full && !this.#queueFullLogged) {
      this.#log.error("local queue is full: new frames stay in the WAL until the replica catches up", {
        files: p.files,
        bytes: p.bytes,
      });
    }
    this.#queueFullLogged = full;
    return full;
  }

  /** Runs one sync: reads newly committed frames and queues them as L0 files. Returns the newest TXID. */
  syncOnce(): Promise<number> {
    return this.#exclusive(async () => {
      this.#requireStarted();
      await this.#syncLocked();
      return this.#txid;
    });
  }

  /** Writes a level-9 snapshot of the database at its current TXID (after a sync). Returns that TXID. */
  snapshot(): Promise<number> {
    return this.#exclusive(async () => {
      this.#requireStarted();
      return await this.#snapshotLocked();
    });
  }

  /**
   * Runs a checkpoint now with walrust's procedure (PASSIVE: under the write barrier, so the WAL restart that
   * follows is shipped incrementally; TRUNCATE: the emergency procedure, after which the next file is full).
   * Returns the checkpoint result, or null when the application was writing (try again).
   */
  checkpoint(
    mode: "PASSIVE" | "TRUNCATE",
  ): Promise<{ busy: boolean; log: number; checkpointed: number } | null> {
    return this.#exclusive(async () => {
      this.#requireStarted();
      await this.#syncLocked();
      const frames = this.#cursor?.pos ? framesBefore(this.#cursor.pos.offset, this.#pageSize) : 0;
      if (mode === "PASSIVE") return await this.#passiveCheckpoint(frames);
      return await this.#truncateCheckpoint(frames);
    });
  }

  #requireStarted(): void {
    if (!this.#started || this.#stopped) {
      throw new DatabaseError(`replication of ${this.settings.path} is not running`);
    }
  }

  /**
   * Ships every committed frame not yet shipped. Returns true when the WAL was read to its end (as of the read),
   * false when stopped early (queue full).
   */
  async #syncLocked(): Promise<boolean> {
    this.#ensureReadLock();
    const maxBytes = this.#opts.maxWalBytesPerSync ?? DEFAULT_MAX_WAL_READ_BYTES;
    for (let round = 0; round < 1000; round++) {
      if (this.#queueBlocked()) return false;
      const cur = this.#cursor;
      if (cur === null || this.#txid === 0) {
        await this.#writeFullL0(this.#fullReason);
        continue;
      }
      const gen: Salts = cur.pos ?? EMPTY;
      const r = await readCommittedFrames(this.#walPath, cur.pos, { maxBytes });
      if (r.kind === "restarted") {
        if (cur.pos === null) {
          if (r.header === null) {
            this.#reachedEnd(EMPTY); // still no WAL
            return true;
          }
          // A WAL appeared and changed while it was being read: start over from a full copy.
          this.#cursor = null;
          this.#fullReason = "the WAL changed while walrust read it";
          continue;
        }
        if (r.header && sameSalts(r.header, cur.pos)) {
          // Same generation but shorter, or the frame before the position was rewritten: SQLite never does
          // this; re-reading the generation from offset 32 would ship older page versions, so copy everything.
          this.#cursor = null;
          this.#fullReason = "the WAL was truncated or rewritten in place";
          continue;
        }
        if (r.header) this.#observe(r.header);
        const zeroFrames = cur.pos.offset === WAL_HEADER_SIZE;
        if (!this.#benign(gen, zeroFrames)) {
          this.#cursor = null;
          this.#fullReason = "the WAL was restarted by another connection before walrust read all of it";
          continue;
        }
        // Benign: the new generation starts from the state we replicated.
        this.#cursor = { pos: r.header ? walStartPosition(r.header) : null, commit: cur.commit };
        if (!r.header) this.#reachedEnd(EMPTY);
        continue;
      }
      if (cur.pos === null) {
        // A WAL appeared where there was none.
        this.#observe(r.header);
        if (!this.#benign(EMPTY, true)) {
          this.#cursor = null;
          this.#fullReason = "a WAL appeared that walrust cannot place after its position";
          continue;
        }
        this.#cursor = { pos: r.start, commit: cur.commit };
      }
      this.#observe(r.header);
      if (r.frames === 0) {
        if (!r.more) this.#reachedEnd(r.header);
        return true;
      }
      try {
        await this.#writeIncremental(r, cur.commit);
      } catch (err) {
        if (err instanceof WalChangedError) continue;
        throw err;
      }
      if (!r.more) {
        this.#reachedEnd(r.header);
        return true;
      }
    }
    return false;
  }

  #ltxHeader(txid: number, commit: number, wal: { offset: number; size: number; salts: Salts }): LtxHeader {
    return {
      flags: HEADER_FLAG_NO_CHECKSUM,
      pageSize: this.#pageSize,
      commit,
      minTXID: txid,
      maxTXID: txid,
      timestamp: Date.now(),
      preApplyChecksum: 0n,
      walOffset: wal.offset,
      walSize: wal.size,
      walSalt1: wal.salts.salt1,
      walSalt2: wal.salts.salt2,
      nodeID: 0n,
    };
  }

  /** Throws {@link WalChangedError} unless the WAL is still generation `gen`. */
  async #recheckWal(gen: Salts): Promise<void> {
    const h = await readWalHeader(this.#walPath);
    if (!h || h.salt1 !== gen.salt1 || h.salt2 !== gen.salt2) throw new WalChangedError();
  }

  async #writeIncremental(r: Extract<WalReadResult, { kind: "ok" }>, prevCommit: number): Promise<void> {
    const t0 = performance.now();
    const txid = this.#txid + 1;
    const header = this.#ltxHeader(txid, r.commit, {
      offset: r.start.offset,
      size: r.end.offset - r.start.offset,
      salts: r.header,
    });
    let pages = 0;
    const file = await this.#queue.write(0, txid, txid, header.timestamp, async (sink) => {
      const wal = Deno.openSync(this.#walPath, { read: true });
      try {
        const enc = new LtxEncoder(sink, header, ENCODER_OPTIONS);
        pages = await encodeIncremental(
          enc,
          { db: this.#db!, wal, walPages: r.pages, pageSize: this.#pageSize },
          prevCommit,
          r.commit,
        );
        await enc.finish();
      } finally {
        wal.close();
      }
      await this.#recheckWal(r.header);
    }, this.#memoryQueue());
    this.#txid = txid;
    this.#cursor = { pos: r.end, commit: r.commit };
    this.#afterSync(txid, pages, file.size, header.walSize, t0);
  }

  /** Queue options of an L0 file: in memory first while running in the background (see queue.ts). */
  #memoryQueue(): { memory: boolean; uploadedTxid: number } {
    return { memory: this.#opts.background ?? true, uploadedTxid: this.#uploader.replicatedTxid };
  }

  /**
   * Writes queued memory files that are not on the replica yet to disk. Called before the read lock is
   * released (a checkpoint, stop): from then on their frames may leave the WAL, so the files must survive a
   * crash. Throws when they cannot be written (the checkpoint is then skipped and retried later).
   */
  async #persistPending(): Promise<void> {
    await this.#queue.persist(this.#uploader.replicatedTxid);
  }

  #afterSync(txid: number, pages: number, bytes: number, walBytes: number, t0: number): void {
    const now = Date.now();
    this.#lastSyncAt = now;
    this.#lastActivityAt = now;
    this.#ckpt.activity = true;
    this.#bus.emit({
      type: "sync",
      db: this.name,
      txid,
      pages,
      bytes,
      walBytes,
      seconds: (performance.now() - t0) / 1000,
    });
    this.#log.debug("queued", { txid, pages, bytes });
    this.#uploader.notify();
  }

  /** Reads the whole WAL and returns the pages for a full file: WAL pages, db size and the end position. */
  async #readWholeWal(): Promise<
    { pos: WalPosition | null; header: WalHeader | null; commit: number; pages: Map<number, number> } | null
  > {
    const r = await readCommittedFrames(this.#walPath, null);
    if (r.kind === "restarted") {
      if (r.header !== null) return null; // changed while reading: try again
      return { pos: null, header: null, commit: await this.#db!.pageCount(this.#pageSize), pages: new Map() };
    }
    const commit = r.frames > 0 ? r.commit : await this.#db!.pageCount(this.#pageSize);
    return { pos: r.end, header: r.header, commit, pages: r.pages };
  }

  /** Writes a full L0 file (every page) at the next TXID and makes the end of the WAL the position. */
  async #writeFullL0(reason: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const t0 = performance.now();
      const w = await this.#readWholeWal();
      if (!w) continue;
      if (w.commit === 0) throw new DatabaseError(`database ${this.settings.path} has no pages`);
      const txid = this.#txid + 1;
      const header = this.#ltxHeader(txid, w.commit, {
        offset: w.pos ? WAL_HEADER_SIZE : 0,
        size: w.pos ? w.pos.offset - WAL_HEADER_SIZE : 0,
        salts: w.header ?? EMPTY,
      });
      let pages = 0;
      let file;
      try {
        file = await this.#queue.write(0, txid, txid, header.timestamp, async (sink) => {
          const wal = w.pages.size ? Deno.openSync(this.#walPath, { read: true }) : null;
          try {
            const enc = new LtxEncoder(sink, header, ENCODER_OPTIONS);
            pages = await encodeFullDatabase(
              enc,
              { db: this.#db!, wal, walPages: w.pages, pageSize: this.#pageSize },
              w.commit,
            );
            await enc.finish();
          } finally {
            wal?.close();
          }
          if (w.header) await this.#recheckWal(w.header);
        }, this.#memoryQueue());
      } catch (err) {
        if (err instanceof WalChangedError) continue;
        throw err;
      }
      this.#txid = txid;
      this.#cursor = { pos: w.pos, commit: w.commit };
      this.#reachedEnd(w.header ?? EMPTY);
      this.#log.info("queued a full copy of the database", { txid, pages, bytes: file.size, reason });
      this.#afterSync(txid, pages, file.size, header.walSize, t0);
      return;
    }
    throw new DatabaseError(
      `the WAL of ${this.settings.path} kept changing while it was being read; will retry`,
      {
        transient: true,
      },
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // Snapshots

  #periodicSnapshotAfter(at: number): number {
    const every = this.settings.snapshotIntervalMs;
    return every > 0 ? at + every : Number.POSITIVE_INFINITY;
  }

  /** Writes `1-<txid>` to the queue's level 9: the whole database at the current TXID. */
  async #snapshotLocked(): Promise<number> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const atEnd = await this.#syncLocked();
      if (!atEnd && this.#queueBlocked()) {
        throw new LocalIoError(
          `local queue of ${this.settings.path} is full; the snapshot waits until the replica catches up`,
        );
      }
      const cur = this.#cursor;
      if (!cur) continue;
      const t0 = performance.now();
      const txid = this.#txid;
      let pages = new Map<number, number>();
      if (cur.pos && cur.pos.offset > WAL_HEADER_SIZE) {
        // The frames of this generation up to the position, and not one more: the snapshot is TXID `txid`.
        const r = await readCommittedFrames(this.#walPath, null, {
          maxBytes: cur.pos.offset - WAL_HEADER_SIZE,
        });
        if (
          r.kind !== "ok" || r.end.offset !== cur.pos.offset || !sameSalts(r.header, cur.pos) ||
          r.commit !== cur.commit
        ) {
          continue;
        }
        pages = r.pages;
      }
      const header: LtxHeader = {
        ...this.#ltxHeader(txid, cur.commit, { offset: 0, size: 0, salts: EMPTY }),
        minTXID: 1,
      };
      let n = 0;
      let file;
      try {
        file = await this.#queue.write(9, 1, txid, header.timestamp, async (sink) => {
          const wal = pages.size ? Deno.openSync(this.#walPath, { read: true }) : null;
          try {
            const enc = new LtxEncoder(sink, header, ENCODER_OPTIONS);
            const progress = this.#opts.onSnapshotProgress;
            if (progress) {
              // Counted per page encoded (the sink sees compressed bytes, which say nothing about the total).
              const encodePage = enc.encodePage.bind(enc);
              const total = cur.commit * this.#pageSize;
              let done = 0;
              enc.encodePage = async (pgno: number, data: Uint8Array) => {
                await encodePage(pgno, data);
                progress(done += data.byteLength, total);
              };
            }
            n = await encodeFullDatabase(
              enc,
              { db: this.#db!, wal, walPages: pages, pageSize: this.#pageSize },
              cur.commit,
            );
            await enc.finish();
          } finally {
            wal?.close();
          }
          if (cur.pos) await this.#recheckWal(cur.pos);
        });
      } catch (err) {
        if (err instanceof WalChangedError) continue;
        throw err;
      }
      // An older snapshot still waiting for upload is superseded by this one.
      for (const f of this.#queue.files(9)) if (f.maxTXID < txid) await this.#queue.remove(f);
      const now = Date.now();
      this.#lastSnapshotAt = now;
      this.#nextSnapshotAt = this.#periodicSnapshotAfter(now);
      const seconds = (performance.now() - t0) / 1000;
      this.#bus.emit({ type: "snapshot", db: this.name, txid, bytes: file.size, seconds });
      this.#log.info("snapshot queued", { txid, pages: n, bytes: file.size });
      this.#uploader.notify();
      return txid;
    }
    throw new DatabaseError(
      `the WAL of ${this.settings.path} kept changing during the snapshot; will retry`,
      {
        transient: true,
      },
    );
  }

  // ---------------------------------------------------------------------------------------------------------
  // Checkpoints

  async #maybeCheckpointLocked(atEnd: boolean): Promise<void> {
    const cur = this.#cursor;
    if (!atEnd || !cur?.pos) return;
    const frames = framesBefore(cur.pos.offset, this.#pageSize);
    const decision = decideCheckpoint(this.settings, {
      walFrames: frames,
      framesAtLastAttempt: sameSalts(this.#ckpt.attemptGen, cur.pos) ? this.#ckpt.attemptFrames : 0,
      lastCheckpointAt: this.#ckpt.lastAt,
      activity: this.#ckpt.activity,
      now: Date.now(),
    });
    if (!decision) return;
    if (decision.mode === "PASSIVE") {
      await this.#passiveCheckpoint(frames);
      return;
    }
    this.#bus.emit({ type: "checkpoint_emergency", db: this.name, walPages: frames });
    this.#log.warn("WAL is very large; emergency checkpoint", { walPages: frames });
    const r = await this.#passiveCheckpoint(frames);
    if (r && !r.busy && r.checkpointed === r.log) return; // everything copied back: the next write restarts the WAL
    await this.#truncateCheckpoint(frames);
  }

  /**
   * Litestream's PASSIVE procedure: take the write barrier (no commit can slip in), sync to the end, release
   * the read lock, checkpoint, re-take the read lock, release the barrier. Because the WAL ended exactly at
   * our position while the read lock was re-taken, a restart of this generation afterwards is benign.
   * Returns the checkpoint result, or null when it could not run (writer busy, queue full).
   */
  async #passiveCheckpoint(
    walPagesBefore: number,
  ): Promise<{ busy: boolean; log: number; checkpointed: number } | null> {
    const conn = this.#conn!;
    const t0 = performance.now();
    const gen0 = this.#cursor?.pos ? { salt1: this.#cursor.pos.salt1, salt2: this.#cursor.pos.salt2 } : null;
    await this.#persistPending(); // most of them before the barrier, which blocks the application's writers
    if (!conn.writeBarrier()) {
      this.#log.debug("checkpoint postponed: the application is writing");
      this.#ckpt.attemptFrames = walPagesBefore;
      this.#ckpt.attemptGen = gen0;
      return null;
    }
    let result: { busy: boolean; log: number; checkpointed: number };
    try {
      if (!(await this.#syncLocked())) return null;
      const pos = this.#cursor?.pos;
      if (!pos) return null;
      const gen = { salt1: pos.salt1, salt2: pos.salt2 };
      await this.#persistPending(); // what the sync just queued
      this.#epoch = null;
      result = conn.checkpoint("PASSIVE");
      if (conn.hasReadLock) this.#epoch = { firstGen: gen, reachedEnd: gen };
    } finally {
      conn.releaseBarrier();
    }
    const complete = !result.busy && result.log >= 0 && result.checkpointed === result.log;
    this.#ckpt = {
      lastAt: Date.now(),
      activity: false,
      attemptFrames: complete ? 0 : walPagesBefore,
      attemptGen: complete ? null : gen0,
    };
    const seconds = (performance.now() - t0) / 1000;
    this.#bus.emit({ type: "checkpoint", db: this.name, mode: "passive", seconds, walPagesBefore });
    this.#log.info("checkpoint", {
      mode: "passive",
      walPages: walPagesBefore,
      checkpointed: result.checkpointed,
      busy: result.busy,
    });
    return result;
  }

  /**
   * Emergency TRUNCATE (no barrier: TRUNCATE needs the write lock itself). Frames committed between the
   * last sync and the checkpoint may be copied into the database and dropped from the WAL, so afterwards the
   * restart is not trusted and the next sync writes a full L0 (Litestream's "checkpoint boundary snapshot").
   */
  async #truncateCheckpoint(
    walPagesBefore: number,
  ): Promise<{ busy: boolean; log: number; checkpointed: number }> {
    const conn = this.#conn!;
    const t0 = performance.now();
    await this.#syncLocked();
    await this.#persistPending();
    this.#epoch = null;
    let result;
    try {
      result = conn.checkpoint("TRUNCATE");
    } finally {
      if (conn.hasReadLock) this.#epoch = { firstGen: null, reachedEnd: null };
    }
    this.#ckpt = { lastAt: Date.now(), activity: false, attemptFrames: 0, attemptGen: null };
    const seconds = (performance.now() - t0) / 1000;
    this.#bus.emit({ type: "checkpoint", db: this.name, mode: "truncate", seconds, walPagesBefore });
    this.#log.warn("checkpoint", { mode: "truncate", walPages: walPagesBefore, busy: result.busy });
    return result;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Queue problems reported by the uploader

  #onUploadProblem(_p: UploadProblem): void {
    this.#resync = true;
    // In the background the next tick rebuilds the queue; one-shot use (`upload()`) rebuilds it itself.
    if (this.#opts.background ?? true) this.#schedule(0);
  }

  /** Drops every local file after the replicated TXID; the next sync writes a full L0 right after it. */
  async #rebuildQueue(): Promise<void> {
    if (!this.#resync) return;
    const base = this.#uploader.replicatedTxid;
    for (const f of [...this.#queue.files(0), ...this.#queue.files(9)]) {
      if (f.maxTXID > base) await this.#queue.remove(f);
    }
    this.#txid = base;
    this.#cursor = null;
    this.#fullReason = "rebuilding the local queue after a damaged or missing file";
    this.#resync = false;
    this.#uploader.resume();
  }

  // ---------------------------------------------------------------------------------------------------------
  // One-shot helpers (the `snapshot` command) and status

  /** Ships the whole queue now (one-shot use); throws the first failure. Returns files shipped. */
  async upload(): Promise<number> {
    this.#requireStarted();
    let total = 0;
    for (let i = 0; i < 10_000; i++) {
      if (this.#resync) {
        await this.#exclusive(async () => {
          await this.#rebuildQueue();
          await this.#syncLocked();
        });
      }
      const n = await this.#uploader.pass();
      total += n;
      if (this.#uploader.pending().files === 0) return total;
      if (n === 0 && !this.#resync) break;
    }
    const left = this.#uploader.pending().files;
    if (left > 0) {
      throw new DatabaseError(`${left} file(s) of ${this.settings.path} could not be shipped; run again`, {
        transient: true,
      });
    }
    return total;
  }

  /** Live status for /health, the dashboard and metrics. */
  status(): DbStatus {
    const p = this.#uploader.pending();
    const now = Date.now();
    const lastError = this.#lastError ?? this.#uploader.lastError;
    let state: DbStatus["state"];
    if (this.#stopped) state = "stopped";
    else if (!this.#started) state = lastError ? "error" : "starting";
    else if (this.#fatal || lastError) state = "error";
    else if (p.files > 0 || now - this.#lastActivityAt < 5000) state = "syncing";
    else state = "idle";
    const circuit = (this.client.store as { circuitState?: DbStatus["circuit"] }).circuitState ?? "closed";
    return {
      name: this.name,
      path: this.settings.path,
      replica: this.client.displayUrl,
      state,
      txid: this.#txid,
      replicatedTxid: this.#uploader.replicatedTxid,
      lagSeconds: p.oldest === null ? 0 : Math.max(0, (now - p.oldest) / 1000),
      lastSyncAt: this.#lastSyncAt,
      lastUploadAt: this.#uploader.lastUploadAt,
      lastSnapshotAt: this.#lastSnapshotAt,
      walBytes: this.#walBytes,
      queueFiles: p.files,
      queueBytes: p.bytes,
      circuit,
      lastError,
    };
  }
}
