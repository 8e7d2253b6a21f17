/**
 * Building LTX files from the database: the page sources (the database file and the WAL), and the three kinds
 * of file the replication loop writes:
 *
 * - an incremental L0 (`T-T`): the pages committed in the WAL since the last position, plus "growth" pages
 *   (`prevCommit+1 … commit`) that are not in the WAL, read from the database file (Litestream db.go
 *   `writeLTXFromWAL`);
 * - a full L0 (`T-T`, every page 1…commit except the lock page): when the position cannot be verified;
 * - a level-9 snapshot (`1-T`): the same pages, consistent with TXID T.
 *
 * Full files are "the database file overlaid with every committed WAL frame up to the position". That is
 * consistent as long as the caller holds the read lock and has read the WAL up to at least the lock's read
 * mark: a checkpoint can then only copy frames at or before the position into the database file, and every
 * page those frames touch is taken from the WAL instead.
 *
 * **Never open and close the database file while SQLite has it open in this process**: closing any file
 * descriptor of the database inode drops every POSIX lock the process holds on it, including SQLite's
 * shared lock (measured: /proc/locks is empty after a `Deno.open(db).close()`), after which another process
 * may checkpoint and delete the WAL under us. {@link DbFile} keeps one descriptor open for the life of the
 * replicator and is closed only after the SQLite connection.
 *
 * @module
 */

import { DatabaseError, localIoError } from "../errors.ts";
import type { LtxEncoder } from "../ltx/encoder.ts";
import { lockPgno } from "../ltx/types.ts";
import { type DbHeader, parseDbHeader } from "../sqlite/db_header.ts";
import { readPageSync } from "../sqlite/wal.ts";

/**
 * Reads up to `length` bytes at `offset`, synchronously: pages of a local file are read one at a time, and
 * Deno's async file calls each take a trip through its blocking thread pool that costs more than the read
 * (see the note in `../sqlite/wal.ts`).
 */
function readAtSync(f: Deno.FsFile, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  const got = readIntoSync(f, offset, buf);
  return got === length ? buf : buf.subarray(0, got);
}

/** Fills `buf` from `offset` as far as the file goes; returns the bytes read. */
function readIntoSync(f: Deno.FsFile, offset: number, buf: Uint8Array): number {
  f.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = f.readSync(buf.subarray(got));
    if (n === null || n === 0) break;
    got += n;
  }
  return got;
}

/** A read-only descriptor of the database file, kept open for the replicator's lifetime (see module doc). */
export class DbFile {
  /** The database path. */
  readonly path: string;
  #f: Deno.FsFile;
  #closed = false;

  private constructor(path: string, f: Deno.FsFile) {
    this.path = path;
    this.#f = f;
  }

  /** Opens `path` read-only. Open it before or after SQLite does, but close it only after SQLite closed. */
  static open(path: string): Promise<DbFile> {
    try {
      return Promise.resolve(new DbFile(path, Deno.openSync(path, { read: true })));
    } catch (err) {
      const e = localIoError(err, path, "open database");
      return Promise.reject(
        e instanceof DatabaseError ? e : new DatabaseError(`cannot open database ${path}`, { cause: e }),
      );
    }
  }

  /** The database header as stored in the file (in WAL mode: as of the last checkpoint). */
  header(): Promise<DbHeader> {
    try {
      return Promise.resolve(parseDbHeader(readAtSync(this.#f, 0, 100), this.path));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The file size in bytes. */
  size(): Promise<number> {
    try {
      return Promise.resolve(this.#f.statSync().size);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Page `pgno`; zeros when the file is shorter (SQLite reads a page past the end of the file as zeros, which
   * only happens for pages it has never written).
   */
  readPage(pgno: number, pageSize: number): Promise<Uint8Array> {
    try {
      return Promise.resolve(this.readPageSync(pgno, pageSize));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * {@link readPage}, synchronously; into `into` (`pageSize` bytes) when given, which is then returned. A
   * page past the end of the file reads as zeros.
   */
  readPageSync(pgno: number, pageSize: number, into?: Uint8Array): Uint8Array {
    const out = into?.length === pageSize ? into : new Uint8Array(pageSize);
    out.fill(0, readIntoSync(this.#f, (pgno - 1) * pageSize, out));
    return out;
  }

  /**
   * Database size in pages when the WAL has no committed frame: the file size (a complete checkpoint
   * truncates the file to the database size, as Litestream assumes in `writeLTXFromDB`).
   */
  async pageCount(pageSize: number): Promise<number> {
    return Math.ceil((await this.size()) / pageSize);
  }

  /** Closes the descriptor. Call only after the SQLite connection to the same file has been closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#f.close();
    } catch { /* already closed */ }
  }
}

/** Where the pages of one LTX file come from. */
export interface PageSources {
  /** The database file. */
  db: DbFile;
  /** The open WAL (null when no page comes from it). */
  wal: Deno.FsFile | null;
  /** pgno → offset of the page data in the WAL, for pages taken from the WAL. */
  walPages: Map<number, number>;
  /** Page size. */
  pageSize: number;
}

/**
 * Page `pgno` read into `into` (the encode loops reuse one buffer: `encodePage` has consumed a page when it
 * resolves, and a fresh 4 KiB buffer per page left a whole database's worth of garbage behind each snapshot
 * before the collector caught up — ~220 MB of resident memory for a 256 MB database).
 */
function pageOf(src: PageSources, pgno: number, into: Uint8Array): Uint8Array {
  const off = src.walPages.get(pgno);
  if (off !== undefined) {
    if (!src.wal) throw new Error("page sources: WAL pages given without an open WAL");
    return readPageSync(src.wal, off, src.pageSize, into);
  }
  return src.db.readPageSync(pgno, src.pageSize, into);
}

/**
 * Pages are read synchronously and the encoder usually resolves at once, so a long file would hold the
 * event loop (other databases, uploads, signals) for its whole duration: every this many pages the encode
 * loops give it a turn.
 */
const PAGES_PER_YIELD = 256;

function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/** Encodes every page 1…commit except the lock page: a full L0 or an L9 snapshot. Returns the page count. */
export async function encodeFullDatabase(enc: LtxEncoder, src: PageSources, commit: number): Promise<number> {
  const lock = lockPgno(src.pageSize);
  const page = new Uint8Array(src.pageSize);
  let n = 0;
  for (let pgno = 1; pgno <= commit; pgno++) {
    if (pgno === lock) continue;
    await enc.encodePage(pgno, pageOf(src, pgno, page));
    if (++n % PAGES_PER_YIELD === 0) await yieldToEventLoop();
  }
  return n;
}

/**
 * The page numbers of an incremental file, ascending: the WAL pages plus the growth pages
 * `prevCommit+1 … commit` not in the WAL, never the lock page and never a page past `commit`.
 */
export function incrementalPgnos(
  walPages: Map<number, number>,
  prevCommit: number,
  commit: number,
  pageSize: number,
): number[] {
  const lock = lockPgno(pageSize);
  const set = new Set<number>();
  for (const p of walPages.keys()) if (p <= commit && p !== lock) set.add(p);
  for (let p = prevCommit + 1; p <= commit; p++) if (p !== lock) set.add(p);
  return [...set].sort((a, b) => a - b);
}

/** Encodes an incremental file (see {@link incrementalPgnos}). Returns the page count. */
export async function encodeIncremental(
  enc: LtxEncoder,
  src: PageSources,
  prevCommit: number,
  commit: number,
): Promise<number> {
  const page = new Uint8Array(src.pageSize);
  let n = 0;
  for (const pgno of incrementalPgnos(src.walPages, prevCommit, commit, src.pageSize)) {
    await enc.encodePage(pgno, pageOf(src, pgno, page));
    if (++n % PAGES_PER_YIELD === 0) await yieldToEventLoop();
  }
  return n;
}
