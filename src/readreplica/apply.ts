/**
 * Applying a set of pages (one LTX file, or the difference to a fresh restore) to a read replica **in
 * place**, while applications read it with ordinary SQLite — the cost is proportional to the pages changed,
 * not to the database size.
 *
 * ## Mechanism (why readers never see a torn state)
 *
 * This SQLite build has no `sqlite_dbpage` virtual table (SQLITE_ENABLE_DBPAGE_VTAB is off; checked by
 * `apply_test.ts`), so pages cannot be written through SQLite itself. Instead walrust borrows SQLite's own
 * locking and crash-recovery protocol for rollback-journal databases:
 *
 * 1. The replica is kept in rollback-journal mode (header bytes 18–19 = 1,1): readers need no `-shm`/`-wal`
 *    and take SQLite's ordinary SHARED lock for each read transaction.
 * 2. A `node:sqlite` connection runs `BEGIN EXCLUSIVE`. SQLite takes RESERVED, then PENDING (no new reader
 *    may start), then EXCLUSIVE once every reader's SHARED lock is gone. Readers that arrive meanwhile get
 *    SQLITE_BUSY and retry through their busy handler.
 * 3. With the lock held, walrust writes `<db>-journal` in SQLite's hot-journal format (`journal.ts`) holding
 *    the original content of every page it will overwrite or truncate away and the original size, and
 *    fsyncs it and the directory.
 * 4. It writes the new pages with plain file I/O, rewrites the header (rollback mode, change counter + 1,
 *    in-header page count = the new size, version-valid-for = the counter), truncates or extends the file
 *    to `commit × pageSize`, and fsyncs the database.
 * 5. A caller hook runs (the follower records the new TXID), then the journal is deleted and the directory
 *    fsynced — the commit point — and only then `COMMIT` releases the lock.
 *
 * A reader that starts after step 5 sees a new change counter, drops its page cache and reads the new
 * state; a reader that finished before step 2 saw the old state. If the process dies anywhere in steps 3–5,
 * the journal is hot (it exists, no process holds RESERVED): the next read-write opener (walrust on restart,
 * or any read-write SQLite connection) rolls the replica back to the previous state before anyone reads it.
 * If an apply fails inside the process, walrust rolls the pages back itself from the journal while still
 * holding the lock.
 *
 * ## A POSIX-lock pitfall this module avoids
 *
 * SQLite's locks are `fcntl` locks, which belong to the *process* and are all dropped when the process
 * closes *any* descriptor of the file. So the replica is opened once with Deno file I/O and that descriptor
 * is kept until after the SQLite connection is closed; nothing else in the process may open and close the
 * replica file while a {@link ReplicaDb} is open.
 *
 * **Deno's async file calls count as closing a descriptor.** Measured on Deno 2.9.6: one `await f.seek()`,
 * `f.read()`, `f.write()`, `f.stat()`, `f.sync()` or `f.truncate()` on a descriptor of the database file
 * silently drops every fcntl lock this process holds on it (the async ops run on a duplicate descriptor that
 * is closed afterwards), while the `*Sync` variants keep them. A reader then finds the journal "hot" and
 * fails with SQLITE_READONLY_ROLLBACK, or reads a half-written file. So every call on the replica's
 * descriptor here is synchronous (`readAtSync`/`writeAtSync`/`truncateSync`/`syncSync`/`statSync`); only
 * other files (the journal, the page source) use async I/O.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import {
  ConflictError,
  CorruptionError,
  DatabaseError,
  InterruptedError,
  localIoError,
  messageOf,
} from "../errors.ts";
import { lockPgno } from "../ltx/types.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { parseDbHeader } from "../sqlite/db_header.ts";
import { dirOf, fsyncDir, readAt, writeAll } from "../util/fs.ts";
import {
  encodeJournalHeader,
  encodeJournalRecord,
  JOURNAL_SECTOR_SIZE,
  parseJournalHeader,
} from "./journal.ts";

/** The pages to apply: ascending page numbers and a stream that yields exactly those pages in that order. */
export interface PageBatch {
  /** Page size (must equal the replica's). */
  pageSize: number;
  /** Database size in pages after the apply. */
  commit: number;
  /** Pages that will be written: ascending, unique, within 1…commit, never the lock page. */
  pgnos: readonly number[];
  /** The pages' new content, in `pgnos` order (each exactly `pageSize` bytes). */
  pages(): AsyncIterable<[number, Uint8Array]>;
}

/** Options of {@link ReplicaDb.apply}. */
export interface ApplyOptions {
  /** Refuse (ConflictError, nothing changed) when the replica's change counter is not this one. */
  expectChangeCounter?: number;
  /**
   * Runs once the new pages are durable and before the journal is removed (the commit point); the follower
   * writes its state file here. If it throws, the apply is rolled back.
   */
  beforeCommit?: (result: { changeCounter: number }) => Promise<void>;
  /** Aborting while waiting for readers stops with {@link InterruptedError} before anything is written. */
  signal?: AbortSignal;
  /**
   * Test hook: throw {@link SimulatedCrash} after this many pages were written, leaving the journal in place
   * and releasing the lock without rolling back — what a killed process leaves behind.
   */
  crashAfterPages?: number;
}

/** What one apply did. */
export interface ApplyResult {
  /** The replica's change counter before the apply. */
  previousChangeCounter: number;
  /** The change counter after it. */
  changeCounter: number;
  /** Pages written (including the header rewrite of page 1). */
  pagesWritten: number;
  /** Pages saved in the journal. */
  journalPages: number;
  /** Milliseconds spent waiting for readers to release their locks. */
  lockWaitMs: number;
  /** The database size in bytes afterwards. */
  bytes: number;
}

/** Thrown by the `crashAfterPages` test hook. */
export class SimulatedCrash extends Error {
  /** Creates the marker error. */
  constructor() {
    super("simulated crash");
    this.name = "SimulatedCrash";
  }
}

/** Fields of page 1 rewritten by every apply. */
export interface HeaderPatch {
  /** New file change counter (offset 24, and version-valid-for at offset 92). */
  changeCounter: number;
  /** New in-header database size in pages (offset 28). */
  pageCount: number;
}

/**
 * Rewrites the header in `page1` (≥ 100 bytes) for a rollback-journal replica: format versions 1,1 (so no
 * reader uses WAL), the change counter (readers compare it to drop stale caches), the page count and the
 * version-valid-for number (so SQLite trusts that page count).
 */
export function patchHeader(page1: Uint8Array, patch: HeaderPatch): void {
  const v = new DataView(page1.buffer, page1.byteOffset, 100);
  page1[18] = 1;
  page1[19] = 1;
  v.setUint32(24, patch.changeCounter >>> 0);
  v.setUint32(28, patch.pageCount >>> 0);
  v.setUint32(92, patch.changeCounter >>> 0);
}

/**
 * The pages whose original content must be journaled: page 1 (its header always changes), every written
 * page that exists now, every page truncated away, and — for pages smaller than a 4 KiB sector — the other
 * pages sharing a sector with a written page (a torn sector write could damage them). Never the lock page
 * (SQLite's playback stops at a record for it). Ascending.
 */
export function journalSet(
  pgnos: readonly number[],
  oldPages: number,
  commit: number,
  pageSize: number,
): number[] {
  const lock = lockPgno(pageSize);
  const set = new Set<number>();
  const perSector = Math.max(1, Math.floor(JOURNAL_SECTOR_SIZE / pageSize));
  const add = (p: number) => {
    if (p < 1 || p > oldPages || p === lock) return;
    if (perSector === 1) {
      set.add(p);
      return;
    }
    const first = Math.floor((p - 1) / perSector) * perSector + 1;
    for (let q = first; q < first + perSector && q <= oldPages; q++) if (q !== lock) set.add(q);
  };
  if (oldPages >= 1) add(1);
  for (const p of pgnos) add(p);
  for (let p = commit + 1; p <= oldPages; p++) if (p !== lock) set.add(p);
  return [...set].sort((a, b) => a - b);
}

function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: number })?.errcode;
  if (typeof code === "number") return (code & 0xff) === 5 || (code & 0xff) === 6;
  return /database is locked|database table is locked|busy/i.test(messageOf(err));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const CHUNK = 1 << 20;

/** Options of {@link ReplicaDb.open}. */
export interface ReplicaDbOptions {
  /** How long one `BEGIN EXCLUSIVE` attempt waits for readers (SQLite busy timeout; default 1000 ms). */
  busyTimeoutMs?: number;
  /** Logger (default: the process logger). */
  logger?: Logger;
}

/** Facts read from the replica's header and size. */
export interface ReplicaInfo {
  /** Page size. */
  pageSize: number;
  /** File change counter. */
  changeCounter: number;
  /** Size in pages (file size / page size). */
  pages: number;
  /** Inode number (identity of the file across renames), when the platform reports it. */
  ino: number | null;
}

/**
 * An open read replica: one `node:sqlite` connection (for SQLite's locks and hot-journal recovery) and one
 * file descriptor (for page I/O), both kept for the object's lifetime. Opening recovers a hot journal left
 * by a crash and converts a replica found in WAL mode back to rollback mode.
 */
export class ReplicaDb {
  /** The path as given. */
  readonly path: string;
  /** The resolved path (symlinks followed), as SQLite names its journal. */
  readonly realPath: string;
  #conn: DatabaseSync;
  #fd: Deno.FsFile;
  #logger: Logger;
  #closed = false;

  private constructor(path: string, realPath: string, conn: DatabaseSync, fd: Deno.FsFile, logger: Logger) {
    this.path = path;
    this.realPath = realPath;
    this.#conn = conn;
    this.#fd = fd;
    this.#logger = logger;
  }

  /**
   * Opens an existing replica. DatabaseError when it is missing or not a SQLite database (the caller then
   * bootstraps it from scratch).
   */
  static async open(path: string, opts: ReplicaDbOptions = {}): Promise<ReplicaDb> {
    let realPath: string;
    let fd: Deno.FsFile;
    try {
      realPath = await Deno.realPath(path);
      fd = Deno.openSync(realPath, { read: true, write: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        throw new DatabaseError(`replica ${path} does not exist`, { cause: err });
      }
      throw localIoError(err, path, "open");
    }
    let conn: DatabaseSync | undefined;
    try {
      conn = new DatabaseSync(realPath, { timeout: opts.busyTimeoutMs ?? 1000 });
      // The first read takes a SHARED lock, and SQLite rolls back a hot journal (a crash mid-apply) first.
      conn.prepare("SELECT count(*) FROM sqlite_schema").get();
      const head = readAtSync(fd, 0, 100);
      const h = parseDbHeader(head, path);
      if (h.walMode) {
        // Something opened the replica read-write and switched it to WAL; our protocol needs rollback mode.
        const row = conn.prepare("PRAGMA journal_mode=DELETE").get() as Record<string, unknown> | undefined;
        if (String(row?.journal_mode) !== "delete") {
          throw new DatabaseError(
            `replica ${path} is in WAL mode and cannot be switched back; close the applications that write it`,
          );
        }
      }
      return new ReplicaDb(path, realPath, conn, fd, opts.logger ?? rootLog);
    } catch (err) {
      try {
        conn?.close();
      } catch { /* closing a failed connection */ }
      fd.close();
      if (err instanceof DatabaseError) throw err;
      throw new DatabaseError(`replica ${path} cannot be opened by SQLite: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }

  /** The journal SQLite would look for. */
  get journalPath(): string {
    return `${this.realPath}-journal`;
  }

  /** Page size, change counter, size and inode, read from the file now. */
  info(): ReplicaInfo {
    const h = parseDbHeader(readAtSync(this.#fd, 0, 100), this.path);
    const st = this.#fd.statSync();
    return {
      pageSize: h.pageSize,
      changeCounter: h.changeCounter,
      pages: Math.floor(st.size / h.pageSize),
      ino: st.ino ?? null,
    };
  }

  /**
   * The pages of the database file at `otherPath` (same page size) that differ from the replica, ascending,
   * plus every page past the replica's end. Reads both files sequentially without taking a lock: only this
   * process writes the replica, and the apply re-checks the change counter under the lock.
   */
  async diff(otherPath: string, pageSize: number): Promise<{ pgnos: number[]; commit: number }> {
    const other = await Deno.open(otherPath, { read: true });
    try {
      const otherSize = (await other.stat()).size;
      const mySize = this.#fd.statSync().size;
      if (otherSize % pageSize !== 0) {
        throw new CorruptionError(`${otherPath} is not a whole number of ${pageSize}-byte pages`);
      }
      const commit = otherSize / pageSize;
      const lock = lockPgno(pageSize);
      const pgnos: number[] = [];
      const per = Math.max(1, Math.floor(CHUNK / pageSize));
      for (let first = 1; first <= commit; first += per) {
        const n = Math.min(per, commit - first + 1);
        const a = await readAt(other, (first - 1) * pageSize, n * pageSize);
        const b = (first - 1) * pageSize < mySize
          ? readAtSync(this.#fd, (first - 1) * pageSize, n * pageSize)
          : new Uint8Array(0);
        for (let i = 0; i < n; i++) {
          const p = first + i;
          if (p === lock) continue;
          const off = i * pageSize;
          if (p === 1 || off + pageSize > b.length || !sameBytes(a, b, off, pageSize)) pgnos.push(p);
        }
      }
      return { pgnos, commit };
    } finally {
      other.close();
    }
  }

  /** Takes SQLite's EXCLUSIVE lock on the replica, waiting for readers; returns the milliseconds waited. */
  async #lock(signal: AbortSignal | undefined): Promise<number> {
    const started = performance.now();
    let warned = started;
    while (true) {
      if (signal?.aborted) throw new InterruptedError("replicate stopped while waiting for readers");
      try {
        this.#conn.exec("BEGIN EXCLUSIVE");
        return performance.now() - started;
      } catch (err) {
        if (!isBusy(err)) {
          throw new DatabaseError(`cannot lock replica ${this.path}: ${messageOf(err)}`, { cause: err });
        }
      }
      if (performance.now() - warned > 10_000) {
        warned = performance.now();
        this.#logger.warn("replica is busy: waiting for readers to finish their transactions", {
          replica: this.path,
          waitedMs: Math.round(warned - started),
        });
      }
      // Let signals and timers run between attempts (each attempt blocks for up to the busy timeout).
      await sleep(5);
    }
  }

  #unlock(): void {
    try {
      this.#conn.exec("COMMIT");
    } catch {
      try {
        this.#conn.exec("ROLLBACK");
      } catch { /* no transaction open */ }
    }
  }

  /**
   * Applies `batch` in place under SQLite's EXCLUSIVE lock with a hot journal (see the module doc). On any
   * failure the replica is left in its previous state (rolled back here, or by SQLite's next read-write
   * opener if the process dies) and the error is rethrown.
   */
  async apply(batch: PageBatch, opts: ApplyOptions = {}): Promise<ApplyResult> {
    if (this.#closed) throw new DatabaseError(`replica ${this.path} is closed`);
    const ps = batch.pageSize;
    const lockWaitMs = await this.#lock(opts.signal);
    let journalCreated = false;
    let dbTouched = false;
    let committed = false;
    try {
      const h = parseDbHeader(readAtSync(this.#fd, 0, 100), this.path);
      if (h.pageSize !== ps) {
        throw new DatabaseError(
          `replica ${this.path} has ${h.pageSize}-byte pages but the backup has ${ps}-byte pages`,
        );
      }
      if (h.walMode) {
        throw new DatabaseError(
          `replica ${this.path} was switched to WAL mode by another program; readers must open it read-only`,
        );
      }
      if (opts.expectChangeCounter !== undefined && h.changeCounter !== opts.expectChangeCounter) {
        throw new ConflictError(
          `replica ${this.path} was changed by another program (change counter ${h.changeCounter}, expected ` +
            `${opts.expectChangeCounter}); it will be rebuilt from the backup`,
        );
      }
      const size = this.#fd.statSync().size;
      if (size % ps !== 0) {
        throw new CorruptionError(
          `replica ${this.path} is ${size} bytes, not a whole number of ${ps}-byte pages`,
        );
      }
      const oldPages = size / ps;
      const changeCounter = (h.changeCounter + 1) >>> 0;

      const toJournal = journalSet(batch.pgnos, oldPages, batch.commit, ps);
      journalCreated = true;
      await this.#writeJournal(toJournal, oldPages, ps);

      dbTouched = true;
      const written = await this.#writePages(batch, changeCounter, opts.crashAfterPages);
      const newSize = batch.commit * ps;
      if (newSize !== size) this.#fd.truncateSync(newSize);
      this.#fd.syncSync();

      await opts.beforeCommit?.({ changeCounter });

      // The commit point: once the journal is gone, the new state is the database.
      await Deno.remove(this.journalPath);
      journalCreated = false;
      await fsyncDir(dirOf(this.journalPath));
      committed = true;
      this.#unlock();
      return {
        previousChangeCounter: h.changeCounter,
        changeCounter,
        pagesWritten: written,
        journalPages: toJournal.length,
        lockWaitMs,
        bytes: newSize,
      };
    } catch (err) {
      if (!committed) {
        if (err instanceof SimulatedCrash) {
          // A killed process leaves the journal and drops its locks; SQLite's next opener must recover.
          this.#unlock();
          throw err;
        }
        try {
          if (dbTouched) await this.#rollback();
          else if (journalCreated) await Deno.remove(this.journalPath).catch(() => {});
        } catch (rbErr) {
          this.#logger.error(
            "could not roll back the replica; SQLite will do it on the next read-write open",
            {
              replica: this.path,
              error: messageOf(rbErr),
            },
          );
        }
        this.#unlock();
      }
      throw localIoError(err, this.path, "apply to");
    }
  }

  async #writeJournal(pgnos: number[], oldPages: number, ps: number): Promise<void> {
    const nonce = crypto.getRandomValues(new Uint32Array(1))[0];
    const f = await Deno.open(this.journalPath, { write: true, create: true, truncate: true, mode: 0o644 });
    try {
      let buf: Uint8Array[] = [encodeJournalHeader({
        records: pgnos.length,
        nonce,
        originalPages: oldPages,
        pageSize: ps,
        sectorSize: JOURNAL_SECTOR_SIZE,
      })];
      let len = buf[0].length;
      const flush = async () => {
        await writeAll(f, concat(buf, len));
        buf = [];
        len = 0;
      };
      for (const p of pgnos) {
        const old = readAtSync(this.#fd, (p - 1) * ps, ps);
        if (old.length !== ps) throw new CorruptionError(`replica ${this.path}: page ${p} is short`);
        const rec = encodeJournalRecord(p, old, nonce);
        buf.push(rec);
        len += rec.length;
        if (len >= CHUNK) await flush();
      }
      if (len > 0) await flush();
      await f.sync();
    } finally {
      f.close();
    }
    await fsyncDir(dirOf(this.journalPath));
  }

  async #writePages(
    batch: PageBatch,
    changeCounter: number,
    crashAfter: number | undefined,
  ): Promise<number> {
    const ps = batch.pageSize;
    let i = 0;
    let wrotePage1 = false;
    let runStart = 0;
    let run: Uint8Array[] = [];
    let runLen = 0;
    const flush = () => {
      if (run.length === 0) return;
      writeAtSync(this.#fd, (runStart - 1) * ps, concat(run, runLen));
      run = [];
      runLen = 0;
    };
    for await (const [pgno, data] of batch.pages()) {
      if (pgno !== batch.pgnos[i] || data.length !== ps) {
        throw new CorruptionError(
          `page stream for ${this.path} does not match its page list at entry ${i} (page ${pgno})`,
        );
      }
      let page = data;
      if (pgno === 1) {
        page = data.slice();
        patchHeader(page, { changeCounter, pageCount: batch.commit });
        wrotePage1 = true;
      }
      if (run.length > 0 && (pgno !== runStart + run.length || runLen >= CHUNK)) flush();
      if (run.length === 0) runStart = pgno;
      run.push(page);
      runLen += page.length;
      i++;
      if (crashAfter !== undefined && i >= crashAfter) {
        flush();
        throw new SimulatedCrash();
      }
    }
    flush();
    if (i !== batch.pgnos.length) {
      throw new CorruptionError(
        `page stream for ${this.path} ended after ${i} of ${batch.pgnos.length} pages`,
      );
    }
    if (!wrotePage1) {
      const head = readAtSync(this.#fd, 0, 100);
      patchHeader(head, { changeCounter, pageCount: batch.commit });
      writeAtSync(this.#fd, 0, head);
    }
    return i + (wrotePage1 ? 0 : 1);
  }

  /** Undoes a partial apply from our own journal while the lock is still held, then removes the journal. */
  async #rollback(): Promise<void> {
    const j = await Deno.open(this.journalPath, { read: true });
    try {
      const h = parseJournalHeader(await readAt(j, 0, 28));
      if (!h) throw new CorruptionError(`${this.journalPath} has no valid header`);
      const recSize = h.pageSize + 8;
      for (let k = 0; k < h.records; k++) {
        const rec = await readAt(j, h.sectorSize + k * recSize, recSize);
        if (rec.length !== recSize) break;
        const pgno = new DataView(rec.buffer, rec.byteOffset).getUint32(0);
        writeAtSync(this.#fd, (pgno - 1) * h.pageSize, rec.subarray(4, 4 + h.pageSize));
      }
      this.#fd.truncateSync(h.originalPages * h.pageSize);
      this.#fd.syncSync();
    } finally {
      j.close();
    }
    await Deno.remove(this.journalPath);
    await fsyncDir(dirOf(this.journalPath));
  }

  /** Closes the SQLite connection, then the descriptor (in that order: see the module doc). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    try {
      this.#fd.close();
    } catch { /* already closed */ }
  }
}

/**
 * A {@link PageBatch} that reads the listed pages from a database file (the in-place re-bootstrap: the
 * pages of a fresh restore that differ from the replica). The file is opened for each pass.
 */
export function fileBatch(
  path: string,
  pageSize: number,
  pgnos: readonly number[],
  commit: number,
): PageBatch {
  return {
    pageSize,
    commit,
    pgnos,
    async *pages(): AsyncGenerator<[number, Uint8Array]> {
      const f = await Deno.open(path, { read: true });
      try {
        for (const p of pgnos) yield [p, await readAt(f, (p - 1) * pageSize, pageSize)];
      } finally {
        f.close();
      }
    },
  };
}

/** Reads up to `length` bytes at `offset` with synchronous calls (see "Deno's async file calls" above). */
function readAtSync(f: Deno.FsFile, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  f.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = f.readSync(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/** Writes all of `data` at `offset` with synchronous calls. */
function writeAtSync(f: Deno.FsFile, offset: number, data: Uint8Array): void {
  f.seekSync(offset, Deno.SeekMode.Start);
  let off = 0;
  while (off < data.length) off += f.writeSync(data.subarray(off));
}

function sameBytes(a: Uint8Array, b: Uint8Array, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (a[i] !== b[i]) return false;
  return true;
}

function concat(parts: Uint8Array[], len: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
