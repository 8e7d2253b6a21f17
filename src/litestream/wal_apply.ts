/**
 * Applies one SQLite WAL (one Litestream v0.3 WAL index: its segments concatenated in offset order) to a
 * database file in pure TypeScript — the equivalent of putting it beside the database as `-wal` and running
 * `PRAGMA wal_checkpoint(TRUNCATE)`, which is what Litestream's restore does.
 *
 * Rules (SQLite's WAL recovery, made strict where a v0.3 shadow WAL can only be wrong if it is corrupt):
 * - The 32-byte header must have the magic `0x377f0682` (little-endian checksum words) or `0x377f0683`
 *   (big-endian), version 3007000, the database's page size and a valid header checksum.
 * - Every frame must carry the header's salts and continue the running checksum. Litestream's shadow WAL holds
 *   only frames it verified, so a mismatch is corruption (SQLite would silently stop there and lose the rest).
 * - Pages of a transaction are written only when its commit frame (non-zero "db size") arrives; after the last
 *   commit the file is truncated to `dbSize × pageSize`, as SQLite's checkpoint does.
 * - Frames after the last commit (and a trailing partial frame) are ignored like SQLite ignores them; the count
 *   is returned so the caller can warn.
 *
 * Memory: the pages of the transaction in progress are buffered up to `maxTxnBytes` (default 32 MiB); a larger
 * transaction is spooled to a temp file, so any WAL applies in bounded memory.
 *
 * @module
 */

import { CorruptionError, localIoError } from "../errors.ts";
import { writeAll } from "../util/fs.ts";
import { ByteReader, type ByteSource } from "./byte_reader.ts";

/** WAL header size in bytes. */
export const WAL_HEADER_SIZE = 32;
/** WAL frame header size in bytes. */
export const WAL_FRAME_HEADER_SIZE = 24;
/** Magic with little-endian checksum words. */
export const WAL_MAGIC_LE = 0x377f0682;
/** Magic with big-endian checksum words. */
export const WAL_MAGIC_BE = 0x377f0683;
/** The only WAL format version. */
export const WAL_VERSION = 3007000;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * SQLite's WAL checksum over `b[start, end)` (a multiple of 8 bytes), continuing from `(s0, s1)`. Words are
 * read in the byte order the WAL magic selects. Returns the new `[s0, s1]`.
 */
export function walChecksum(
  bigEndian: boolean,
  s0: number,
  s1: number,
  b: Uint8Array,
  start = 0,
  end = b.length,
): [number, number] {
  if ((end - start) % 8 !== 0) throw new RangeError("walChecksum: length must be a multiple of 8");
  if (!bigEndian && LITTLE_ENDIAN_HOST && (b.byteOffset + start) % 4 === 0) {
    const w = new Uint32Array(b.buffer, b.byteOffset + start, (end - start) / 4);
    for (let i = 0; i < w.length; i += 2) {
      s0 = (s0 + w[i] + s1) >>> 0;
      s1 = (s1 + w[i + 1] + s0) >>> 0;
    }
    return [s0, s1];
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = !bigEndian;
  for (let i = start; i < end; i += 8) {
    s0 = (s0 + dv.getUint32(i, le) + s1) >>> 0;
    s1 = (s1 + dv.getUint32(i + 4, le) + s0) >>> 0;
  }
  return [s0, s1];
}

/** A parsed WAL header. */
export interface WalHeaderInfo {
  /** Checksum words are big-endian (magic 0x377f0683). */
  bigEndian: boolean;
  /** Page size. */
  pageSize: number;
  /** Checkpoint sequence number. */
  checkpointSeq: number;
  /** Salt 1. */
  salt1: number;
  /** Salt 2. */
  salt2: number;
  /** Header checksum (also the starting value of the frame checksum chain). */
  checksum1: number;
  /** Header checksum, second word. */
  checksum2: number;
}

/** Parses and verifies a 32-byte WAL header; `fail` receives a reason and the byte offset of the defect. */
export function parseWalHeader(h: Uint8Array, fail: (msg: string, offset: number) => never): WalHeaderInfo {
  if (h.length < WAL_HEADER_SIZE) fail(`WAL header truncated (${h.length} of 32 bytes)`, 0);
  const dv = new DataView(h.buffer, h.byteOffset, WAL_HEADER_SIZE);
  const magic = dv.getUint32(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) {
    fail(`bad WAL magic 0x${magic.toString(16).padStart(8, "0")}`, 0);
  }
  const version = dv.getUint32(4);
  if (version !== WAL_VERSION) fail(`unsupported WAL version ${version}`, 4);
  const pageSize = dv.getUint32(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    fail(`invalid WAL page size ${pageSize}`, 8);
  }
  const bigEndian = magic === WAL_MAGIC_BE;
  const info: WalHeaderInfo = {
    bigEndian,
    pageSize,
    checkpointSeq: dv.getUint32(12),
    salt1: dv.getUint32(16),
    salt2: dv.getUint32(20),
    checksum1: dv.getUint32(24),
    checksum2: dv.getUint32(28),
  };
  const [c1, c2] = walChecksum(bigEndian, 0, 0, h, 0, 24);
  if (c1 !== info.checksum1 || c2 !== info.checksum2) fail("WAL header checksum mismatch", 24);
  return info;
}

/** Options of {@link applyWal}. */
export interface WalApplyOptions {
  /** What this WAL is, for errors (e.g. `generations/<id>/wal index 00000003`). */
  name: string;
  /** The database's page size; the WAL header must agree. */
  pageSize: number;
  /** A temp file path for spooling a transaction larger than `maxTxnBytes` (created only if needed). */
  spoolPath: string;
  /** Buffer at most this many bytes of an uncommitted transaction in memory (default 32 MiB). */
  maxTxnBytes?: number;
  /** Names the object holding a WAL byte offset (a segment key), so errors point at the right object. */
  locate?: (walOffset: number) => string | undefined;
}

/** What {@link applyWal} did. */
export interface WalApplyResult {
  /** Bytes of WAL read (header + frames, including ignored ones). */
  walBytes: number;
  /** Frames applied (those of committed transactions). */
  frames: number;
  /** Commit frames seen. */
  commits: number;
  /** Database size in pages after the last commit, or null if the WAL had no commit. */
  dbPages: number | null;
  /** Complete frames after the last commit, ignored (a transaction that was never committed). */
  ignoredFrames: number;
  /** Bytes of a trailing partial frame, ignored. */
  ignoredBytes: number;
  /** Salts from the WAL header. */
  salt1: number;
  /** Salts from the WAL header. */
  salt2: number;
}

/** Pages of the transaction in progress: in memory, or spooled to a temp file once too large. */
class TxnBuffer {
  #pages = new Map<number, Uint8Array>();
  #bytes = 0;
  #spool: Deno.FsFile | null = null;
  #spooled = 0;
  #frames = 0;
  readonly #pageSize: number;
  readonly #max: number;
  readonly #spoolPath: string;

  constructor(pageSize: number, max: number, spoolPath: string) {
    this.#pageSize = pageSize;
    this.#max = max;
    this.#spoolPath = spoolPath;
  }

  get frames(): number {
    return this.#frames;
  }

  async add(pgno: number, page: Uint8Array): Promise<void> {
    this.#frames++;
    if (this.#spool) {
      await this.#spoolWrite(pgno, page);
      return;
    }
    if (!this.#pages.has(pgno)) this.#bytes += page.length;
    this.#pages.set(pgno, page.slice());
    if (this.#bytes > this.#max) {
      try {
        this.#spool = await Deno.open(this.#spoolPath, {
          read: true,
          write: true,
          create: true,
          truncate: true,
        });
      } catch (err) {
        throw localIoError(err, this.#spoolPath, "create spool file");
      }
      for (const [p, data] of this.#pages) await this.#spoolWrite(p, data);
      this.#pages.clear();
      this.#bytes = 0;
    }
  }

  async #spoolWrite(pgno: number, page: Uint8Array): Promise<void> {
    const rec = new Uint8Array(4 + page.length);
    new DataView(rec.buffer).setUint32(0, pgno);
    rec.set(page, 4);
    try {
      await writeAll(this.#spool!, rec);
    } catch (err) {
      throw localIoError(err, this.#spoolPath, "write spool file");
    }
    this.#spooled++;
  }

  /** Writes the buffered pages to `db` (last write of a page wins) and empties the buffer. */
  async commit(db: Deno.FsFile): Promise<number> {
    const ps = this.#pageSize;
    const n = this.#frames;
    if (this.#spool) {
      const f = this.#spool;
      await f.seek(0, Deno.SeekMode.Start);
      const rec = new Uint8Array(4 + ps);
      const dv = new DataView(rec.buffer);
      for (let i = 0; i < this.#spooled; i++) {
        let got = 0;
        while (got < rec.length) {
          const k = await f.read(rec.subarray(got));
          if (k === null) throw new Error(`spool file ${this.#spoolPath} is shorter than written`);
          got += k;
        }
        await writePage(db, dv.getUint32(0), rec.subarray(4), ps);
      }
      f.close();
      this.#spool = null;
      this.#spooled = 0;
      await Deno.remove(this.#spoolPath).catch(() => {});
    } else {
      // Ascending page order keeps the writes sequential.
      for (const pgno of [...this.#pages.keys()].sort((a, b) => a - b)) {
        await writePage(db, pgno, this.#pages.get(pgno)!, ps);
      }
      this.#pages.clear();
      this.#bytes = 0;
    }
    this.#frames = 0;
    return n;
  }

  /** Drops an uncommitted transaction. */
  async discard(): Promise<void> {
    this.#pages.clear();
    this.#bytes = 0;
    this.#frames = 0;
    if (this.#spool) {
      try {
        this.#spool.close();
      } catch { /* already closed */ }
      this.#spool = null;
      this.#spooled = 0;
      await Deno.remove(this.#spoolPath).catch(() => {});
    }
  }
}

async function writePage(db: Deno.FsFile, pgno: number, page: Uint8Array, pageSize: number): Promise<void> {
  await db.seek((pgno - 1) * pageSize, Deno.SeekMode.Start);
  await writeAll(db, page);
}

/**
 * Applies the WAL read from `wal` to the open database file `db` (read-write). See the module doc for the
 * rules. Throws {@link CorruptionError} naming the object (via `locate`) and the byte offset in the WAL.
 */
export async function applyWal(
  db: Deno.FsFile,
  wal: ByteSource,
  opts: WalApplyOptions,
): Promise<WalApplyResult> {
  const r = new ByteReader(wal);
  const fail = (msg: string, offset: number): never => {
    const where = opts.locate?.(offset);
    throw new CorruptionError(`${opts.name}: ${msg}`, { object: where, offset });
  };
  const txn = new TxnBuffer(opts.pageSize, opts.maxTxnBytes ?? 32 << 20, opts.spoolPath);
  try {
    const hb = new Uint8Array(WAL_HEADER_SIZE);
    const hn = await r.readInto(hb, WAL_HEADER_SIZE);
    const h = parseWalHeader(hb.subarray(0, hn), fail);
    if (h.pageSize !== opts.pageSize) {
      fail(`WAL page size ${h.pageSize} differs from the database's ${opts.pageSize}`, 8);
    }
    const ps = h.pageSize;
    const frameSize = WAL_FRAME_HEADER_SIZE + ps;
    const frame = new Uint8Array(frameSize); // offset 0 of its own buffer: the page is 4-byte aligned
    const fdv = new DataView(frame.buffer);
    let s0 = h.checksum1, s1 = h.checksum2;
    let frames = 0, commits = 0, ignoredBytes = 0;
    let dbPages: number | null = null;
    for (;;) {
      const at = r.offset;
      const got = await r.readInto(frame, frameSize);
      if (got === 0) break;
      if (got < frameSize) {
        ignoredBytes = got;
        break;
      }
      const pgno = fdv.getUint32(0);
      const commit = fdv.getUint32(4);
      if (fdv.getUint32(8) !== h.salt1 || fdv.getUint32(12) !== h.salt2) {
        fail(`frame at WAL byte ${at} has salts that differ from the WAL header's`, at + 8);
      }
      [s0, s1] = walChecksum(h.bigEndian, s0, s1, frame, 0, 8);
      [s0, s1] = walChecksum(h.bigEndian, s0, s1, frame, WAL_FRAME_HEADER_SIZE, frameSize);
      if (s0 !== fdv.getUint32(16) || s1 !== fdv.getUint32(20)) {
        fail(`frame at WAL byte ${at} fails its checksum`, at + 16);
      }
      if (pgno === 0) fail(`frame at WAL byte ${at} has page number 0`, at);
      await txn.add(pgno, frame.subarray(WAL_FRAME_HEADER_SIZE));
      if (commit !== 0) {
        frames += await txn.commit(db);
        commits++;
        dbPages = commit;
      }
    }
    const ignoredFrames = txn.frames;
    await txn.discard();
    if (dbPages !== null) await db.truncate(dbPages * ps);
    return {
      walBytes: r.offset,
      frames,
      commits,
      dbPages,
      ignoredFrames,
      ignoredBytes,
      salt1: h.salt1,
      salt2: h.salt2,
    };
  } catch (err) {
    await txn.discard();
    throw err;
  } finally {
    await r.cancel().catch(() => {});
  }
}
