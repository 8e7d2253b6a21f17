/**
 * `walrust replicate`'s engine: a local SQLite file that follows one database's backups.
 *
 * - **Bootstrap:** the latest restore (`restoreDatabase`: atomic, LTX checksums, `PRAGMA integrity_check`) into
 *   a hidden temp file beside the replica, switched to rollback-journal mode, then renamed into place.
 * - **Follow:** every interval, list the replica and apply each LTX file that continues the local TXID
 *   (`plan.ts`: the next L0 file, or the best compacted file that starts at or before TXID+1) **in place**
 *   (`apply.ts`): cost proportional to the pages the file changes; readers keep their connections and see
 *   either the state before or after each file. One log line per poll that applied something.
 * - **Resume:** the TXID is recorded in `<replica>-walrust-replica.json` (`state.ts`) together with the replica's
 *   inode and SQLite change counter; a restart continues from there without downloading a snapshot.
 * - **Re-bootstrap:** when a needed TXID exists at no level any more (a gap: we were stopped longer than the
 *   backups keep L0–L8 files), when the backup's history was replaced (its newest TXID went below ours, or a
 *   file we applied / the snapshot we started from was rewritten with different contents), when the page size
 *   changed, or when the replica file does not match the record. A fresh restore is made beside the replica
 *   and, when the page size is unchanged, only the pages that differ are applied in place — so even then
 *   readers keep their connections. Otherwise (first run, page size change, unreadable file) the restore is
 *   renamed over the replica, and open connections keep reading the old file until they reopen.
 *
 * One follower per replica file: an `flock` on `<replica>-walrust-replica.lock`.
 *
 * @module
 */

import {
  ConflictError,
  CorruptionError,
  DatabaseError,
  GapError,
  InterruptedError,
  localIoError,
  messageOf,
  NotFoundError,
  UsageError,
  WalrustError,
} from "../errors.ts";
import { LtxDecoder } from "../ltx/decoder.ts";
import { formatLtxFilename, type LtxHeader } from "../ltx/types.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { restoreDatabase } from "../restore/restore.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { baseOf, dirOf, exists, fsyncDir, readAt, readFileChunks, writeAll } from "../util/fs.ts";
import { fileBatch, type PageBatch, patchHeader, ReplicaDb } from "./apply.ts";
import { planFollow } from "./plan.ts";
import {
  type FileIdent,
  lockPathFor,
  readState,
  type ReplicaState,
  statePathFor,
  writeState,
} from "./state.ts";

/** Options of {@link ReplicaFollower}. */
export interface FollowerOptions {
  /** Path of the local replica database. */
  path: string;
  /** Poll interval in ms (default 1000). */
  intervalMs?: number;
  /** Stops `run()` (and a wait for readers) when aborted. */
  signal?: AbortSignal;
  /** Logger (default: the process logger). */
  logger?: Logger;
  /** One `BEGIN EXCLUSIVE` attempt's busy timeout (default 1000 ms). */
  busyTimeoutMs?: number;
  /** LTX files (and their decoded pages) up to this size are held in memory; larger ones go to a temp file. */
  memoryLimitBytes?: number;
  /** Longest wait between failed re-bootstrap attempts (default 5 min). */
  maxBackoffMs?: number;
}

/** What one poll did. */
export interface StepResult {
  /** `applied` files, `bootstrapped` (first build or rebuild), `idle` (nothing new), `waiting` (cannot move). */
  kind: "applied" | "bootstrapped" | "idle" | "waiting";
  /** The replica's TXID afterwards. */
  txid: number;
  /** LTX files applied in place. */
  files: number;
  /** Pages written in place. */
  pages: number;
  /** Why a (re)bootstrap happened or why the replica cannot move. */
  reason?: string;
}

/** Thrown internally when the backup's history no longer matches the replica: rebuild it. */
class Rebootstrap extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

const DEFAULT_MEMORY_LIMIT = 64 << 20;

function ident(f: LtxFileInfo): FileIdent {
  return {
    level: f.level,
    minTXID: f.minTXID,
    maxTXID: f.maxTXID,
    size: f.size,
    createdAt: f.createdAt.getTime(),
  };
}

function fileName(f: { level: number; minTXID: number; maxTXID: number }): string {
  return `L${f.level}/${formatLtxFilename(f.minTXID, f.maxTXID)}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** One downloaded and verified LTX file, ready to apply. */
interface LoadedLtx {
  header: LtxHeader;
  pgnos: number[];
  pages(): AsyncIterable<[number, Uint8Array]>;
  dispose(): Promise<void>;
}

/**
 * Downloads `f` (into memory, or a scratch file when large) and decodes it once completely — so its checksum,
 * header and page order are verified before the replica is touched — keeping the pages when they fit in
 * `memLimit`, else decoding again while applying.
 */
async function loadLtx(
  client: ReplicaClient,
  f: LtxFileInfo,
  scratch: string,
  memLimit: number,
): Promise<LoadedLtx> {
  let source: () => Uint8Array | AsyncIterable<Uint8Array>;
  let dispose = () => Promise.resolve();
  if (f.size <= memLimit) {
    const bytes = await client.readLtxFile(f.level, f.minTXID, f.maxTXID);
    source = () => bytes;
  } else {
    const stream = await client.openLtxFile(f.level, f.minTXID, f.maxTXID);
    const out = await Deno.open(scratch, { write: true, create: true, truncate: true, mode: 0o600 }).catch(
      (err) => {
        throw localIoError(err, scratch, "create");
      },
    );
    try {
      for await (const chunk of stream) await writeAll(out, chunk);
    } finally {
      out.close();
    }
    source = () => readFileChunks(scratch);
    dispose = () => Deno.remove(scratch).catch(() => {});
  }
  try {
    const dec = new LtxDecoder(source(), f.key);
    const header = await dec.readHeader();
    if (header.minTXID !== f.minTXID || header.maxTXID !== f.maxTXID) {
      throw new CorruptionError(
        `header says TXIDs ${header.minTXID}–${header.maxTXID} but the name says ${f.minTXID}–${f.maxTXID}`,
        { object: f.key, offset: 16 },
      );
    }
    const pgnos: number[] = [];
    let kept: Uint8Array[] | null = [];
    let keptBytes = 0;
    for (let p = await dec.nextPage(); p; p = await dec.nextPage()) {
      pgnos.push(p.pgno);
      if (kept) {
        kept.push(p.data);
        keptBytes += p.data.length;
        if (keptBytes > memLimit) kept = null;
      }
    }
    await dec.finish();
    const inMemory = kept;
    return {
      header,
      pgnos,
      pages: inMemory
        ? async function* () {
          for (let i = 0; i < pgnos.length; i++) yield [pgnos[i], inMemory[i]] as [number, Uint8Array];
        }
        : async function* () {
          const d2 = new LtxDecoder(source(), f.key);
          await d2.readHeader();
          for (let p = await d2.nextPage(); p; p = await d2.nextPage()) {
            yield [p.pgno, p.data] as [number, Uint8Array];
          }
          await d2.finish();
        },
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** Follows one database's backups into a local SQLite file (see the module doc). */
export class ReplicaFollower {
  readonly #client: ReplicaClient;
  readonly #path: string;
  readonly #intervalMs: number;
  readonly #signal?: AbortSignal;
  readonly #logger: Logger;
  readonly #busyTimeoutMs: number;
  readonly #memLimit: number;
  readonly #maxBackoffMs: number;
  #lock: Deno.FsFile;
  #db: ReplicaDb | null = null;
  #state: ReplicaState | null = null;
  #initialized = false;
  #backoffUntil = 0;
  #backoffMs = 0;
  #noBackupWarned = false;

  private constructor(client: ReplicaClient, opts: FollowerOptions, lock: Deno.FsFile) {
    this.#client = client;
    this.#path = opts.path;
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#signal = opts.signal;
    this.#logger = (opts.logger ?? rootLog).child({
      db: client.dbName || client.displayUrl,
      replica: opts.path,
    });
    this.#busyTimeoutMs = opts.busyTimeoutMs ?? 1000;
    this.#memLimit = opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
    this.#lock = lock;
  }

  /**
   * Takes the follower lock of `opts.path` (ConflictError when another `walrust replicate` holds it). Nothing
   * else happens until the first {@link step}.
   */
  static async open(client: ReplicaClient, opts: FollowerOptions): Promise<ReplicaFollower> {
    const dir = dirOf(opts.path);
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (err) {
      throw localIoError(err, dir, "create directory");
    }
    const lockPath = lockPathFor(opts.path);
    let f: Deno.FsFile;
    try {
      f = await Deno.open(lockPath, { read: true, write: true, create: true, mode: 0o644 });
    } catch (err) {
      throw localIoError(err, lockPath, "open");
    }
    let locked = false;
    try {
      locked = await f.tryLock(true);
    } catch (err) {
      f.close();
      throw localIoError(err, lockPath, "lock");
    }
    if (!locked) {
      f.close();
      throw new ConflictError(
        `another 'walrust replicate' is already updating ${opts.path} (lock ${lockPath}); stop it first`,
      );
    }
    try {
      await f.truncate(0);
      await writeAll(f, new TextEncoder().encode(`${Deno.pid}\n`));
    } catch { /* the pid is informational */ }
    return new ReplicaFollower(client, opts, f);
  }

  /** The TXID the replica is at (0 before the first bootstrap). */
  get txid(): number {
    return this.#state?.txid ?? 0;
  }

  /** The current progress record (null before the first bootstrap). */
  get state(): ReplicaState | null {
    return this.#state;
  }

  /** Polls until the signal fires. Errors of one poll are logged and retried at the next interval. */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.#signal?.aborted) {
      try {
        await this.step();
        failures = 0;
      } catch (err) {
        if (this.#signal?.aborted) break;
        if (!this.#state && !(err instanceof WalrustError && err.transient)) {
          // The first bootstrap failed for a reason waiting will not fix (no backup, bad URL, disk): report it.
          throw err;
        }
        failures++;
        this.#logger.error("replicate poll failed; retrying", {
          error: messageOf(err),
          class: err instanceof WalrustError ? err.errorClass : "internal",
          failures,
        });
        await sleep(Math.min(this.#intervalMs * 2 ** Math.min(failures, 6), 60_000), this.#signal);
        continue;
      }
      await sleep(this.#intervalMs, this.#signal);
    }
  }

  /** One poll: initialise or bootstrap when needed, then apply every file that continues the replica. */
  async step(): Promise<StepResult> {
    try {
      return await this.#step();
    } catch (err) {
      // After any failure, re-check the replica against the state file before trusting our TXID again.
      this.#initialized = false;
      if (this.#signal?.aborted && !(err instanceof InterruptedError)) throw new InterruptedError();
      throw err;
    }
  }

  async #step(): Promise<StepResult> {
    if (!this.#initialized) {
      const reason = await this.#init();
      if (reason !== null) return await this.#rebootstrap(reason);
    }
    const files = await this.#client.allLtxFiles();
    if (files.length === 0) {
      if (!this.#noBackupWarned) {
        this.#logger.warn("the backup has no LTX files any more; keeping the replica as it is", {
          txid: this.txid,
        });
        this.#noBackupWarned = true;
      }
      return { kind: "waiting", txid: this.txid, files: 0, pages: 0, reason: "no backup files" };
    }
    this.#noBackupWarned = false;
    if (this.#lineageProblem(files)) {
      // Listings can miss files created while they run (a directory read concurrently with a writer), so a
      // rebuild is only started when a second listing confirms the problem.
      const changed = this.#lineageProblem(await this.#client.allLtxFiles());
      if (changed) return await this.#rebootstrap(changed);
    }

    const started = performance.now();
    const from = this.txid;
    const plan = planFollow(files, from);
    let pages = 0;
    let applied = 0;
    try {
      for (const f of plan.chain) {
        if (this.#signal?.aborted) break;
        pages += await this.#applyFile(f);
        applied++;
      }
    } catch (err) {
      if (err instanceof Rebootstrap) return await this.#rebootstrap(err.reason);
      throw err;
    } finally {
      if (applied > 0) {
        this.#logger.info("applied", {
          files: applied,
          from,
          txid: this.txid,
          pages,
          ms: Math.round(performance.now() - started),
        });
      }
    }
    if (plan.gap && !this.#signal?.aborted) {
      // Confirm with a fresh listing (see above): a file written just before a newer one may have been missed.
      const again = planFollow(await this.#client.allLtxFiles(), this.txid);
      if (again.chain.length === 0 && again.gap) {
        return await this.#rebootstrap(
          `TXIDs ${again.gap.from}–${again.gap.to} are no longer in the backup (newest TXID ${again.replicaMax})`,
        );
      }
    }
    return { kind: applied > 0 ? "applied" : "idle", txid: this.txid, files: applied, pages };
  }

  /** Checks the replica file against the state file; null when we can resume, else why we must rebuild. */
  async #init(): Promise<string | null> {
    const st = await readState(this.#path);
    if (!(await exists(this.#path))) {
      this.#closeDb();
      return st.kind === "ok" ? "the replica file is missing" : "no replica yet";
    }
    if (!this.#db) {
      if (st.kind === "missing") {
        throw new ConflictError(
          `${this.#path} exists but is not a walrust read replica (no ${statePathFor(this.#path)}); ` +
            `remove it or choose another --local path`,
        );
      }
      try {
        this.#db = await ReplicaDb.open(this.#path, {
          busyTimeoutMs: this.#busyTimeoutMs,
          logger: this.#logger,
        });
      } catch (err) {
        if (!(err instanceof DatabaseError)) throw err;
        return `the replica file cannot be used (${messageOf(err)})`;
      }
    }
    const info = this.#db.info();
    if (st.kind === "missing") {
      // Never rebuild a database walrust did not create (e.g. --local pointing at an application's file).
      this.#closeDb();
      throw new ConflictError(
        `${this.#path} exists but is not a walrust read replica (no ${statePathFor(this.#path)}); ` +
          `remove it or choose another --local path`,
      );
    }
    if (st.kind === "invalid") return `state file ${statePathFor(this.#path)} is unusable (${st.problem})`;
    const s = st.state;
    if (s.source !== this.#client.displayUrl) return `the replica followed ${s.source} before`;
    if (s.pageSize !== info.pageSize) return "the replica's page size does not match its state file";
    if (s.ino !== null && info.ino !== null && s.ino !== info.ino) return "the replica file was replaced";
    if (info.changeCounter === s.changeCounter) {
      this.#state = s;
    } else if (s.prev && info.changeCounter === s.prev.changeCounter) {
      // The process died after recording the last apply but before its commit point; SQLite rolled it back.
      this.#logger.warn("the last apply did not complete and was rolled back", { txid: s.prev.txid });
      this.#state = {
        ...s,
        txid: s.prev.txid,
        changeCounter: s.prev.changeCounter,
        prev: null,
        lastFile: null,
      };
    } else {
      return "the replica was modified by another program";
    }
    this.#initialized = true;
    this.#logger.info("resuming", { txid: this.#state.txid, bootstraps: this.#state.bootstraps });
    return null;
  }

  /** Why the backup's history no longer matches the replica, or null. */
  #lineageProblem(files: LtxFileInfo[]): string | null {
    const s = this.#state!;
    const max = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
    if (max < s.txid) {
      return `the backup's newest TXID ${max} is older than the replica's ${s.txid} (history replaced)`;
    }
    for (
      const [what, id] of [["last applied file", s.lastFile], [
        "bootstrap snapshot",
        s.lineage.snapshot,
      ]] as const
    ) {
      if (!id) continue;
      const now = files.find((f) =>
        f.level === id.level && f.minTXID === id.minTXID && f.maxTXID === id.maxTXID
      );
      if (now && (now.size !== id.size || now.createdAt.getTime() !== id.createdAt)) {
        return `the ${what} ${fileName(id)} was rewritten (history replaced)`;
      }
    }
    return null;
  }

  /** Applies one LTX file in place; returns the pages written. */
  async #applyFile(f: LtxFileInfo): Promise<number> {
    const s = this.#state!;
    const db = this.#db!;
    const loaded = await loadLtx(this.#client, f, this.#scratchPath("ltx"), this.#memLimit);
    try {
      const h = loaded.header;
      if (h.pageSize !== s.pageSize) {
        throw new Rebootstrap(
          `${fileName(f)} has ${h.pageSize}-byte pages, the replica ${s.pageSize}-byte pages`,
        );
      }
      const batch: PageBatch = {
        pageSize: h.pageSize,
        commit: h.commit,
        pgnos: loaded.pgnos,
        pages: loaded.pages,
      };
      let next: ReplicaState | null = null;
      let res;
      try {
        res = await db.apply(batch, {
          expectChangeCounter: s.changeCounter,
          signal: this.#signal,
          beforeCommit: async ({ changeCounter }) => {
            next = {
              ...s,
              txid: f.maxTXID,
              changeCounter,
              prev: { txid: s.txid, changeCounter: s.changeCounter },
              lastFile: ident(f),
              applied: s.applied + 1,
              updatedAt: Date.now(),
            };
            await writeState(this.#path, next);
          },
        });
      } catch (err) {
        if (err instanceof ConflictError) throw new Rebootstrap(messageOf(err));
        throw err;
      }
      this.#state = next!;
      this.#logger.debug("applied file", {
        file: fileName(f),
        txid: f.maxTXID,
        pages: res.pagesWritten,
        lockWaitMs: Math.round(res.lockWaitMs),
      });
      return res.pagesWritten;
    } finally {
      await loaded.dispose();
    }
  }

  #scratchPath(kind: string): string {
    return `${dirOf(this.#path)}/.${baseOf(this.#path)}.walrust-${kind}`;
  }

  #closeDb(): void {
    this.#db?.close();
    this.#db = null;
  }

  /**
   * Builds the replica from the latest restore: in place (only differing pages) when a usable replica with
   * the same page size is open, else by renaming the restore into place. Failed attempts back off.
   */
  async #rebootstrap(reason: string): Promise<StepResult> {
    const now = Date.now();
    if (now < this.#backoffUntil) {
      return { kind: "waiting", txid: this.txid, files: 0, pages: 0, reason };
    }
    try {
      const r = await this.#bootstrap(reason);
      this.#backoffMs = 0;
      this.#backoffUntil = 0;
      return r;
    } catch (err) {
      // A replica that exists keeps serving its last good state; retry later rather than every poll.
      if (
        this.#state &&
        (err instanceof GapError || err instanceof NotFoundError || err instanceof CorruptionError)
      ) {
        this.#backoffMs = Math.min(
          this.#maxBackoffMs,
          Math.max(this.#intervalMs, this.#backoffMs * 2 || 5_000),
        );
        this.#backoffUntil = Date.now() + this.#backoffMs;
        this.#initialized = false;
        this.#logger.error("cannot rebuild the replica from the backup; keeping its current state", {
          reason,
          error: messageOf(err),
          retryInMs: this.#backoffMs,
        });
        return { kind: "waiting", txid: this.txid, files: 0, pages: 0, reason };
      }
      throw err;
    }
  }

  async #bootstrap(reason: string): Promise<StepResult> {
    const started = performance.now();
    const first = this.#state === null && !(await exists(statePathFor(this.#path)));
    this.#logger[first ? "info" : "warn"](first ? "bootstrapping" : "re-bootstrapping", { reason });
    const tmp = this.#scratchPath("bootstrap");
    await this.#removeWithSidecars(tmp);
    const prior = this.#state;
    try {
      const res = await restoreDatabase(this.#client, {
        output: tmp,
        integrityCheck: true,
        signal: this.#signal,
        logger: this.#logger,
      });
      if (res.format !== "ltx") {
        throw new UsageError(
          `${this.#client.displayUrl} holds only Litestream v0.3 backups, which have no TXIDs to follow; ` +
            `use 'walrust restore' instead`,
        );
      }
      // The restore is a WAL-mode file; readers of the replica must not use WAL (they would need -shm).
      const f = await Deno.open(tmp, { read: true, write: true });
      let ino: number | null;
      let changeCounter: number;
      try {
        const head = await readAt(f, 0, 100);
        changeCounter = (new DataView(head.buffer, head.byteOffset).getUint32(24) + 1) >>> 0;
        patchHeader(head, { changeCounter, pageCount: res.bytes / res.pageSize });
        await f.seek(0, Deno.SeekMode.Start);
        await writeAll(f, head);
        await f.sync();
        ino = (await f.stat()).ino ?? null;
      } finally {
        f.close();
      }
      const snapshot = res.plan.length > 0 && res.plan[0].level === 9 ? ident(res.plan[0]) : null;
      const lastFile = res.plan.length > 0 ? ident(res.plan[res.plan.length - 1]) : null;
      const base: Omit<ReplicaState, "changeCounter" | "ino"> = {
        version: 1,
        source: this.#client.displayUrl,
        txid: res.txid,
        pageSize: res.pageSize,
        prev: null,
        lineage: { snapshot, bootstrapTxid: res.txid, bootstrappedAt: Date.now() },
        lastFile,
        bootstraps: (prior?.bootstraps ?? 0) + 1,
        applied: prior?.applied ?? 0,
        updatedAt: Date.now(),
      };

      let pages: number;
      let mode: "in place" | "replaced";
      let info: ReturnType<ReplicaDb["info"]> | null = null;
      try {
        info = this.#db?.info() ?? null;
      } catch {
        info = null; // unreadable: replaced below
      }
      if (this.#db && info && info.pageSize === res.pageSize) {
        const { pgnos, commit } = await this.#db.diff(tmp, res.pageSize);
        let next: ReplicaState | null = null;
        const applied = await this.#db.apply(fileBatch(tmp, res.pageSize, pgnos, commit), {
          expectChangeCounter: info.changeCounter,
          signal: this.#signal,
          beforeCommit: async ({ changeCounter }) => {
            next = { ...base, changeCounter, ino: info.ino };
            await writeState(this.#path, next);
          },
        });
        this.#state = next!;
        pages = applied.pagesWritten;
        mode = "in place";
        await Deno.remove(tmp).catch(() => {});
      } else {
        this.#closeDb();
        // The state goes first: a crash before the rename leaves a state whose file is missing or has another
        // inode, so the next start rebuilds; never a replica file without a state (which we refuse to touch).
        const next: ReplicaState = { ...base, changeCounter, ino };
        await writeState(this.#path, next);
        for (const side of ["-journal", "-wal", "-shm"]) await Deno.remove(this.#path + side).catch(() => {});
        try {
          await Deno.rename(tmp, this.#path);
        } catch (err) {
          throw localIoError(err, this.#path, "rename");
        }
        await fsyncDir(dirOf(this.#path));
        this.#state = next;
        this.#db = await ReplicaDb.open(this.#path, {
          busyTimeoutMs: this.#busyTimeoutMs,
          logger: this.#logger,
        });
        pages = this.#db.info().pages;
        mode = "replaced";
      }
      this.#initialized = true;
      this.#logger.info(first ? "bootstrapped" : "re-bootstrapped", {
        txid: res.txid,
        mode,
        pages,
        bootstraps: this.#state.bootstraps,
        ms: Math.round(performance.now() - started),
      });
      return { kind: "bootstrapped", txid: res.txid, files: 0, pages, reason };
    } finally {
      await this.#removeWithSidecars(tmp);
    }
  }

  async #removeWithSidecars(path: string): Promise<void> {
    for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
      await Deno.remove(p).catch(() => {});
    }
  }

  /** Closes the replica and releases the follower lock. Idempotent. */
  close(): void {
    this.#closeDb();
    try {
      this.#lock.close();
    } catch { /* already closed */ }
  }
}
