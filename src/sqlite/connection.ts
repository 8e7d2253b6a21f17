/**
 * The replication connection: walrust's own `node:sqlite` connection to a user database. It holds the long
 * read transaction that pins the WAL (Litestream's read lock), runs checkpoints, and forces a WAL write when
 * the WAL is empty. One per database, owned by the replication loop.
 *
 * `node:sqlite` calls are synchronous and a busy wait blocks the whole event loop for the busy timeout, so the
 * timeout is short (100 ms) and callers retry later instead of waiting (toolchain.md §1).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { DatabaseError, LocalIoError, messageOf } from "../errors.ts";
import { readDbHeaderSync } from "./db_header.ts";

/** Busy timeout of walrust's connections, in ms: short, because every SQLite call blocks the event loop. */
export const REPLICATION_BUSY_TIMEOUT_MS = 100;

/** Page cache of walrust's connections, in pages (`PRAGMA cache_size`). */
export const REPLICATION_CACHE_PAGES = 16;

/** Name of the helper table walrust creates in the user database (Litestream's is `_litestream_seq`). */
export const SEQ_TABLE = "_walrust_seq";

/** Checkpoint modes walrust uses (RESTART is never needed: TRUNCATE does everything it does and more). */
export type CheckpointMode = "PASSIVE" | "TRUNCATE";

/** The result row of `PRAGMA wal_checkpoint`. */
export interface CheckpointResult {
  /** True when the checkpoint could not complete (readers/writers in the way, or SQLite said busy). */
  busy: boolean;
  /** Frames in the WAL (-1 when unknown). */
  log: number;
  /** Frames copied back into the database file (-1 when unknown). */
  checkpointed: number;
}

/** Options of {@link ReplicationConnection.open}. */
export interface ReplicationConnectionOptions {
  /** Busy timeout in ms (default {@link REPLICATION_BUSY_TIMEOUT_MS}). */
  busyTimeoutMs?: number;
}

/** Whether a `node:sqlite` error means SQLITE_BUSY or SQLITE_LOCKED (try again later). */
export function isBusyError(err: unknown): boolean {
  const errcode = (err as { errcode?: unknown })?.errcode;
  if (typeof errcode === "number" && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6)) return true;
  return /database is locked|database table is locked|database schema is locked|SQLITE_BUSY|SQLITE_LOCKED/i
    .test(messageOf(err));
}

/**
 * The kind of host-side failure a `node:sqlite` error reports: `full` (SQLITE_FULL), `io` (SQLITE_IOERR: a
 * read or write of the database's files failed, e.g. no space for the WAL or shared memory), or null.
 */
export function hostErrorKind(err: unknown): "full" | "io" | null {
  const errcode = (err as { errcode?: unknown })?.errcode;
  const primary = typeof errcode === "number" ? errcode & 0xff : -1;
  const msg = messageOf(err);
  if (primary === 13 || /database or disk is full|SQLITE_FULL/i.test(msg)) return "full";
  if (primary === 10 || /disk I\/O error|SQLITE_IOERR/i.test(msg)) return "io";
  return null;
}

/**
 * Wraps a `node:sqlite` failure into a one-line error naming the database: {@link DatabaseError} (exit 3),
 * or {@link LocalIoError} (exit 12) when SQLite could not read or write the database's files (full disk,
 * I/O error) — a problem of the host, like a full queue or output disk, not of the database.
 */
function sqliteError(err: unknown, path: string, action: string): DatabaseError | LocalIoError {
  if (err instanceof DatabaseError || err instanceof LocalIoError) return err;
  const host = hostErrorKind(err);
  if (host) {
    const what = host === "full"
      ? "no space left on the database's disk"
      : "SQLite could not read or write its files";
    return new LocalIoError(
      `${action} ${path}: ${messageOf(err)} (${what}); check free space and the disk holding the database`,
      { cause: err },
    );
  }
  const busy = isBusyError(err);
  const hint = busy ? "; another connection holds a lock, walrust will retry" : "";
  return new DatabaseError(`${action} ${path}: ${messageOf(err)}${hint}`, { cause: err, transient: busy });
}

/**
 * walrust's connection to one database. Not thread-safe; all methods are synchronous.
 *
 * Invariant the replication loop relies on: while {@link ReplicationConnection.acquireReadLock} is in effect no
 * checkpoint by any connection can restart or truncate the WAL past the frames this connection's snapshot
 * covers, so frames that have not been shipped yet stay readable in the `-wal` file.
 */
export class ReplicationConnection {
  /** The database path, as given to {@link ReplicationConnection.open}. */
  readonly path: string;
  /** The WAL path (`<path>-wal`). */
  readonly walPath: string;
  readonly #db: DatabaseSync;
  readonly #busyTimeoutMs: number;
  /** Second connection, opened on first use, for writes that must not touch the read transaction. */
  #writer: DatabaseSync | null = null;
  #readLock = false;
  #barrier = false;
  #closed = false;

  private constructor(path: string, db: DatabaseSync, busyTimeoutMs: number) {
    this.path = path;
    this.walPath = `${path}-wal`;
    this.#db = db;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /**
   * Opens the database at `path` for replication. Throws {@link DatabaseError} when the file is missing, is not
   * a SQLite database, or is not in WAL mode (walrust never converts a user's database itself). Sets a short
   * busy timeout and `wal_autocheckpoint=0` on this connection only, and creates `_walrust_seq` if needed.
   */
  static open(path: string, opts: ReplicationConnectionOptions = {}): ReplicationConnection {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new DatabaseError(
          `database ${path} does not exist; check the path (walrust does not create databases)`,
          { cause: err },
        );
      }
      throw new DatabaseError(`cannot access database ${path}: ${messageOf(err)}`, { cause: err });
    }
    if (!info.isFile) throw new DatabaseError(`${path} is not a file; give the path of a SQLite database`);
    const header = readDbHeaderSync(path);
    if (!header.walMode) {
      throw new DatabaseError(
        `database ${path} is not in WAL mode; run PRAGMA journal_mode=WAL on it (walrust will not change it for you)`,
      );
    }
    const busyTimeoutMs = opts.busyTimeoutMs ?? REPLICATION_BUSY_TIMEOUT_MS;
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { timeout: busyTimeoutMs });
    } catch (err) {
      throw sqliteError(err, path, "cannot open database");
    }
    const conn = new ReplicationConnection(path, db, busyTimeoutMs);
    try {
      const mode = (db.prepare("PRAGMA journal_mode").get() as { journal_mode?: string } | undefined)
        ?.journal_mode;
      if (mode !== "wal") {
        throw new DatabaseError(
          `database ${path} is not in WAL mode (journal_mode=${mode}); run PRAGMA journal_mode=WAL on it`,
        );
      }
      // Only walrust decides when its connection checkpoints; the application's own connections keep theirs.
      db.exec("PRAGMA wal_autocheckpoint=0");
      // This connection only holds a read transaction and checkpoints (which copy frames without the page
      // cache): a tiny cache instead of the default 2 MiB keeps a hundred databases' connections small.
      db.exec(`PRAGMA cache_size=${REPLICATION_CACHE_PAGES}`);
      conn.#ensureSeqTable();
    } catch (err) {
      conn.close();
      throw sqliteError(err, path, "cannot prepare database");
    }
    return conn;
  }

  /** Creates `_walrust_seq` unless it exists (checked first, so an existing table needs no write lock). */
  #ensureSeqTable(): void {
    const exists = this.#db.prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = ?")
      .get(SEQ_TABLE);
    if (exists) return;
    this.#retryBusy("create table _walrust_seq in", () => {
      this.#db.exec(`CREATE TABLE IF NOT EXISTS ${SEQ_TABLE} (id INTEGER PRIMARY KEY, seq INTEGER)`);
    });
  }

  /** Runs `fn`, retrying a few times on SQLITE_BUSY (each try may block for the busy timeout). */
  #retryBusy(action: string, fn: () => void, attempts = 10): void {
    for (let i = 1;; i++) {
      try {
        fn();
        return;
      } catch (err) {
        if (!isBusyError(err) || i >= attempts) throw sqliteError(err, this.path, `cannot ${action}`);
      }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new DatabaseError(`replication connection to ${this.path} is closed`);
  }

  /** The second connection (for bumpSeq and the write barrier), opened on first use. */
  #writerDb(): DatabaseSync {
    if (!this.#writer) {
      try {
        const w = new DatabaseSync(this.path, { timeout: this.#busyTimeoutMs });
        w.exec(`PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=${REPLICATION_CACHE_PAGES}`);
        this.#writer = w;
      } catch (err) {
        throw sqliteError(err, this.path, "cannot open a second connection to");
      }
    }
    return this.#writer;
  }

  /** Whether the read lock is held. */
  get hasReadLock(): boolean {
    return this.#readLock;
  }

  /** Whether the write barrier is held. */
  get hasBarrier(): boolean {
    return this.#barrier;
  }

  /** The page size of the database (`PRAGMA page_size`). */
  pageSize(): number {
    this.#checkOpen();
    return Number((this.#db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
  }

  /**
   * Starts the long read transaction (`BEGIN; SELECT COUNT(1) FROM _walrust_seq`) and keeps it open. This pins a
   * WAL read mark, so checkpoints by any connection can copy frames into the database but cannot restart or
   * truncate the WAL over frames this snapshot covers. No-op when already held. Throws a transient
   * {@link DatabaseError} when SQLite stays busy.
   *
   * Caveat (SQLite wal.c `walTryBeginRead`): when the WAL is empty or completely checkpointed at this moment,
   * SQLite serves the snapshot from the database file (read mark 0). That blocks every later backfill, but the
   * next writer may still restart the WAL once, discarding frames that were checkpointed *before* the lock was
   * taken. So ship (or snapshot) everything first, as the barrier procedure does, or call {@link bumpSeq}
   * before taking the lock so it pins frames; either way the loop then sees a restarted WAL and reads it from
   * offset 32.
   */
  acquireReadLock(): void {
    this.#checkOpen();
    if (this.#readLock) return;
    this.#retryBusy("take the read lock on", () => {
      this.#db.exec("BEGIN");
      try {
        this.#db.prepare(`SELECT COUNT(1) AS n FROM ${SEQ_TABLE}`).get();
      } catch (err) {
        try {
          this.#db.exec("ROLLBACK");
        } catch { /* no transaction left */ }
        throw err;
      }
    }, 3);
    this.#readLock = true;
  }

  /** Ends the read transaction taken by {@link acquireReadLock}. No-op when not held. */
  releaseReadLock(): void {
    if (!this.#readLock) return;
    this.#readLock = false;
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
    } catch (err) {
      throw sqliteError(err, this.path, "cannot release the read lock on");
    }
  }

  /**
   * Runs `PRAGMA wal_checkpoint(mode)` on this connection. A checkpoint cannot run inside the read transaction,
   * so the read lock (if held) is released just for the checkpoint and taken again right after — Litestream's
   * procedure. Busy is reported in the result, not thrown: PASSIVE stops at the oldest reader's mark, TRUNCATE
   * gives up after the busy timeout while another connection reads or writes. If the read lock cannot be taken
   * again (SQLite stayed busy), the checkpoint result is still returned and {@link hasReadLock} is false: the
   * caller must take it again before trusting the WAL to stay put.
   */
  checkpoint(mode: CheckpointMode): CheckpointResult {
    this.#checkOpen();
    if (mode !== "PASSIVE" && mode !== "TRUNCATE") throw new RangeError(`unknown checkpoint mode ${mode}`);
    const hadLock = this.#readLock;
    this.releaseReadLock();
    let result: CheckpointResult;
    try {
      const row = this.#db.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as
        | { busy: number; log: number; checkpointed: number }
        | undefined;
      result = row
        ? { busy: Number(row.busy) !== 0, log: Number(row.log), checkpointed: Number(row.checkpointed) }
        : { busy: true, log: -1, checkpointed: -1 };
    } catch (err) {
      if (!isBusyError(err)) {
        if (hadLock) this.#reacquireQuietly();
        throw sqliteError(err, this.path, `cannot checkpoint (${mode})`);
      }
      result = { busy: true, log: -1, checkpointed: -1 };
    }
    if (hadLock) this.#reacquireQuietly();
    return result;
  }

  /** Re-takes the read lock after a checkpoint; a failure leaves {@link hasReadLock} false for the caller to see. */
  #reacquireQuietly(): void {
    try {
      this.acquireReadLock();
    } catch { /* reported through hasReadLock */ }
  }

  /**
   * Forces a WAL write (`INSERT INTO _walrust_seq … ON CONFLICT DO UPDATE SET seq = seq + 1`) on the second
   * connection, so an empty or just-restarted WAL gets a header and a frame (and the read lock then pins it).
   * Returns false when the database stayed busy (retry later). Must not be called while the barrier is held.
   */
  bumpSeq(): boolean {
    this.#checkOpen();
    if (this.#barrier) throw new Error("bumpSeq called while the write barrier is held");
    const w = this.#writerDb();
    try {
      w.exec(`INSERT INTO ${SEQ_TABLE} (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1`);
      return true;
    } catch (err) {
      if (isBusyError(err)) return false;
      throw sqliteError(err, this.path, "cannot write to");
    }
  }

  /**
   * Takes SQLite's write lock on the second connection (`BEGIN IMMEDIATE`) and holds it until
   * {@link releaseBarrier}. Returns false when another writer kept the lock past the busy timeout.
   *
   * Why it is needed (Litestream's PASSIVE checkpoint procedure, db.go `checkpointWithExecutor`): the loop
   * syncs, then releases its read lock to checkpoint. Without a barrier the application can commit between that
   * last sync and the checkpoint; a PASSIVE checkpoint with no reader in the way then copies those unshipped
   * frames into the database and the next write restarts the WAL over them, so they would never be replicated.
   * With the barrier held: sync (everything committed is now shipped), checkpoint, re-take the read lock,
   * release the barrier — the WAL that gets restarted held only shipped frames. A PASSIVE checkpoint does not
   * need the write lock, so holding it does not make the checkpoint busy. Do not hold it for TRUNCATE: that mode
   * needs the write lock itself and would report busy.
   */
  writeBarrier(): boolean {
    this.#checkOpen();
    if (this.#barrier) return true;
    const w = this.#writerDb();
    try {
      w.exec("BEGIN IMMEDIATE");
    } catch (err) {
      if (isBusyError(err)) return false;
      throw sqliteError(err, this.path, "cannot take the write lock on");
    }
    this.#barrier = true;
    return true;
  }

  /** Releases the write lock taken by {@link writeBarrier} (rolls back; nothing was written). No-op if not held. */
  releaseBarrier(): void {
    if (!this.#barrier) return;
    this.#barrier = false;
    try {
      if (this.#writer?.isTransaction) this.#writer.exec("ROLLBACK");
    } catch (err) {
      throw sqliteError(err, this.path, "cannot release the write lock on");
    }
  }

  /**
   * Releases the locks and closes both connections. Idempotent.
   *
   * SQLite checkpoints and deletes the WAL when the last connection to a database closes, so after walrust
   * alone closes, the next start sees no WAL and must ship a full copy. With `keepWal`, the WAL is left as it
   * is (the next start resumes from its position): a read-only guard connection is opened first and closed
   * last. While the guard holds its shared lock, this connection cannot get the exclusive lock the
   * close-time checkpoint needs (SQLite checks its in-process lock count), and the guard itself cannot take
   * a write lock through its read-only descriptor, so neither checkpoints nor deletes. If the guard cannot
   * be opened, the connections close normally (a full copy next time, never a loss).
   */
  close(opts: { keepWal?: boolean } = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.releaseBarrier();
    } catch { /* closing anyway */ }
    try {
      this.releaseReadLock();
    } catch { /* closing anyway */ }
    const guard = opts.keepWal ? this.#openGuard() : null;
    for (const db of [this.#writer, this.#db, guard]) {
      try {
        if (db?.isOpen) db.close();
      } catch { /* already closed */ }
    }
    this.#writer = null;
  }

  /** The read-only connection of `close({ keepWal: true })`, holding SQLite's shared lock; null on failure. */
  #openGuard(): DatabaseSync | null {
    let guard: DatabaseSync | null = null;
    try {
      guard = new DatabaseSync(this.path, { readOnly: true, timeout: this.#busyTimeoutMs });
      // A read opens the WAL and takes the shared lock, which a WAL-mode connection keeps until it closes.
      guard.prepare("SELECT 1 FROM sqlite_master LIMIT 1").get();
      return guard;
    } catch {
      try {
        guard?.close();
      } catch { /* not open */ }
      return null;
    }
  }
}
