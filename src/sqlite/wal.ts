/**
 * SQLite WAL reader: validates the header and every frame (salts and the running checksum) and returns the
 * pages of committed transactions only, as offsets into the WAL file (the caller reads the page bytes with
 * {@link readPage} while it still holds the read lock that pins the WAL).
 *
 * Format (https://www.sqlite.org/fileformat2.html#walformat; Litestream wal_reader.go):
 * a 32-byte header (magic, version, page size, checkpoint seq, salt1, salt2, checksum1, checksum2; all stored
 * big-endian) followed by frames of a 24-byte header (pgno, commit = db size in pages for the last frame of a
 * transaction else 0, salt1, salt2, checksum1, checksum2) and one page. The checksum is a running
 * Fibonacci-style sum over 32-bit words, little-endian words for magic 0x377f0682 and big-endian for
 * 0x377f0683, seeded by the header's checksum and continued over each frame's first 8 bytes and its page.
 * The first frame whose salts or checksum do not match ends the valid part of the WAL.
 *
 * @module
 */

import { DatabaseError, messageOf } from "../errors.ts";

/** Size of the WAL header. */
export const WAL_HEADER_SIZE = 32;
/** Size of a WAL frame header (the page follows it). */
export const WAL_FRAME_HEADER_SIZE = 24;
/** WAL magic meaning "checksum words are little-endian". */
export const WAL_MAGIC_LE = 0x377f0682;
/** WAL magic meaning "checksum words are big-endian". */
export const WAL_MAGIC_BE = 0x377f0683;
/** The only WAL format version SQLite writes. */
export const WAL_VERSION = 3007000;
/** Litestream's bound on the WAL bytes consumed by one sync (MaxSyncWALBytes). */
export const DEFAULT_MAX_WAL_READ_BYTES = 64 * 1024 * 1024;

/**
 * Frames are read in chunks of about this many bytes: a few large reads instead of one syscall per frame, into
 * one scratch buffer shared by every call (see {@link chunkBuffer}).
 */
const READ_CHUNK_BYTES = 256 * 1024;

/** A long scan yields to the event loop after this many chunks, so other databases' timers still run. */
const CHUNKS_PER_YIELD = 32;

/** The parsed 32-byte WAL header. */
export interface WalHeader {
  /** Whether checksum words are big-endian (magic 0x377f0683). */
  bigEndian: boolean;
  /** Format version (3007000). */
  version: number;
  /** Page size in bytes. */
  pageSize: number;
  /** Checkpoint sequence number. */
  checkpointSeq: number;
  /** Salt 1: incremented by SQLite on every WAL restart. */
  salt1: number;
  /** Salt 2: a new random value on every WAL restart. */
  salt2: number;
  /** Header checksum, first word (seed of the running frame checksum). */
  checksum1: number;
  /** Header checksum, second word. */
  checksum2: number;
}

/**
 * A position in one WAL generation: a frame boundary, the salts of the generation, and the running checksum
 * after the last frame before `offset` (the header checksum when `offset` is 32). Enough to resume reading
 * mid-WAL without re-reading what was consumed.
 */
export interface WalPosition {
  /** Byte offset of the next frame (32 = first frame). */
  offset: number;
  /** WAL header salt 1 of the generation this position belongs to. */
  salt1: number;
  /** WAL header salt 2 of the generation this position belongs to. */
  salt2: number;
  /** Running checksum word 1 after the frame that ends right before `offset`. */
  checksum1: number;
  /** Running checksum word 2 after the frame that ends right before `offset`. */
  checksum2: number;
}

/** The result of {@link readCommittedFrames}. */
export type WalReadResult =
  | {
    kind: "ok";
    /** The WAL header (unchanged for the whole read). */
    header: WalHeader;
    /** Where reading started. */
    start: WalPosition;
    /** Right after the last commit frame read (equals `start` when no new transaction was committed). */
    end: WalPosition;
    /**
     * pgno → file offset of the page data, committed frames only, last write wins, pgno ≤ `commit`. Pages
     * dropped by a shrink inside this read (e.g. VACUUM) are simply absent, as in Litestream: a database that
     * shrinks and grows again rewrites the pages it grows into.
     */
    pages: Map<number, number>;
    /** Database size in pages after the last commit read, 0 if no commit frame was read. */
    commit: number;
    /** Number of frames between `start` and `end`. */
    frames: number;
    /** True when reading stopped at a commit boundary because `maxBytes` was reached: call again from `end`. */
    more: boolean;
  }
  | {
    kind: "restarted";
    /** The current WAL header, or null when the WAL is missing, empty or has no valid header. */
    header: WalHeader | null;
  };

/** Options of {@link readCommittedFrames}. */
export interface ReadFramesOptions {
  /** Stop at the first commit boundary once this many WAL bytes were consumed (default: unlimited). */
  maxBytes?: number;
  /**
   * Test hook: called after the frames were read and before the header is read again, so a test can change
   * the WAL in between and check that the read is reported as restarted.
   */
  beforeHeaderRecheck?: () => void | Promise<void>;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function bswap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/** Running checksum state (mutable, to avoid an allocation per frame). */
interface ChecksumState {
  s0: number;
  s1: number;
}

/** Continues the WAL checksum over `len` bytes of `b` at `off` (`len` a multiple of 8). */
function accumulate(bigEndian: boolean, st: ChecksumState, b: Uint8Array, off: number, len: number): void {
  let s0 = st.s0;
  let s1 = st.s1;
  const abs = b.byteOffset + off;
  if ((abs & 3) === 0) {
    // Aligned: read whole words through a typed array (several times faster than DataView).
    const w = new Uint32Array(b.buffer, abs, len >>> 2);
    const n = w.length;
    if (bigEndian !== HOST_LITTLE_ENDIAN) {
      for (let i = 0; i < n; i += 2) {
        s0 = (s0 + w[i] + s1) >>> 0;
        s1 = (s1 + w[i + 1] + s0) >>> 0;
      }
    } else {
      for (let i = 0; i < n; i += 2) {
        s0 = (s0 + bswap32(w[i]) + s1) >>> 0;
        s1 = (s1 + bswap32(w[i + 1]) + s0) >>> 0;
      }
    }
  } else {
    const v = new DataView(b.buffer, abs, len);
    const le = !bigEndian;
    for (let i = 0; i < len; i += 8) {
      s0 = (s0 + v.getUint32(i, le) + s1) >>> 0;
      s1 = (s1 + v.getUint32(i + 4, le) + s0) >>> 0;
    }
  }
  st.s0 = s0;
  st.s1 = s1;
}

/**
 * SQLite's WAL checksum over `bytes` (length a multiple of 8), continuing from `(s0, s1)`.
 * `bigEndian` selects how the 32-bit words are read (magic 0x377f0683 → true).
 */
export function walChecksum(bigEndian: boolean, s0: number, s1: number, bytes: Uint8Array): [number, number] {
  if (bytes.length % 8 !== 0) throw new RangeError(`WAL checksum input must be a multiple of 8 bytes`);
  const st = { s0: s0 >>> 0, s1: s1 >>> 0 };
  accumulate(bigEndian, st, bytes, 0, bytes.length);
  return [st.s0, st.s1];
}

function u32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

/**
 * Parses a 32-byte WAL header. Returns null when it is short, has an unknown magic or version, an invalid page
 * size, or a checksum mismatch: SQLite treats such a WAL as empty, and so do we.
 */
export function parseWalHeader(bytes: Uint8Array): WalHeader | null {
  if (bytes.length < WAL_HEADER_SIZE) return null;
  const magic = u32(bytes, 0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return null;
  const bigEndian = magic === WAL_MAGIC_BE;
  const version = u32(bytes, 4);
  if (version !== WAL_VERSION) return null;
  const pageSize = u32(bytes, 8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const checksum1 = u32(bytes, 24);
  const checksum2 = u32(bytes, 28);
  const [c1, c2] = walChecksum(bigEndian, 0, 0, bytes.subarray(0, 24));
  if (c1 !== checksum1 || c2 !== checksum2) return null;
  return {
    bigEndian,
    version,
    pageSize,
    checkpointSeq: u32(bytes, 12),
    salt1: u32(bytes, 16),
    salt2: u32(bytes, 20),
    checksum1,
    checksum2,
  };
}

/**
 * Encodes a WAL header with a correct checksum (for tests and fixtures). Fields default to a little-endian
 * WAL, version 3007000, checkpoint seq 0.
 */
export function encodeWalHeader(h: {
  bigEndian?: boolean;
  pageSize: number;
  checkpointSeq?: number;
  salt1: number;
  salt2: number;
  version?: number;
}): { bytes: Uint8Array; header: WalHeader } {
  const bigEndian = h.bigEndian ?? false;
  const b = new Uint8Array(WAL_HEADER_SIZE);
  putU32(b, 0, bigEndian ? WAL_MAGIC_BE : WAL_MAGIC_LE);
  putU32(b, 4, h.version ?? WAL_VERSION);
  putU32(b, 8, h.pageSize);
  putU32(b, 12, h.checkpointSeq ?? 0);
  putU32(b, 16, h.salt1);
  putU32(b, 20, h.salt2);
  const [c1, c2] = walChecksum(bigEndian, 0, 0, b.subarray(0, 24));
  putU32(b, 24, c1);
  putU32(b, 28, c2);
  return {
    bytes: b,
    header: {
      bigEndian,
      version: h.version ?? WAL_VERSION,
      pageSize: h.pageSize,
      checkpointSeq: h.checkpointSeq ?? 0,
      salt1: h.salt1 >>> 0,
      salt2: h.salt2 >>> 0,
      checksum1: c1,
      checksum2: c2,
    },
  };
}

/**
 * Encodes one WAL frame (for tests and fixtures): the frame header with the running checksum continued from
 * `prev` (the header's checksum for the first frame), then the page. Returns the bytes and the new checksum.
 */
export function encodeWalFrame(
  header: WalHeader,
  prev: { checksum1: number; checksum2: number },
  pgno: number,
  commit: number,
  page: Uint8Array,
): { bytes: Uint8Array; checksum1: number; checksum2: number } {
  if (page.length !== header.pageSize) {
    throw new RangeError(`page is ${page.length} bytes, WAL page size is ${header.pageSize}`);
  }
  const b = new Uint8Array(WAL_FRAME_HEADER_SIZE + page.length);
  putU32(b, 0, pgno);
  putU32(b, 4, commit);
  putU32(b, 8, header.salt1);
  putU32(b, 12, header.salt2);
  b.set(page, WAL_FRAME_HEADER_SIZE);
  const st = { s0: prev.checksum1 >>> 0, s1: prev.checksum2 >>> 0 };
  accumulate(header.bigEndian, st, b, 0, 8);
  accumulate(header.bigEndian, st, b, WAL_FRAME_HEADER_SIZE, page.length);
  putU32(b, 16, st.s0);
  putU32(b, 20, st.s1);
  return { bytes: b, checksum1: st.s0, checksum2: st.s1 };
}

/** The WAL size in bytes of a header plus `frames` frames: `32 + frames·(24 + pageSize)`. */
export function walSize(pageSize: number, frames: number): number {
  return WAL_HEADER_SIZE + frames * (WAL_FRAME_HEADER_SIZE + pageSize);
}

/** The position of the first frame of the WAL generation described by `header`. */
export function walStartPosition(header: WalHeader): WalPosition {
  return {
    offset: WAL_HEADER_SIZE,
    salt1: header.salt1,
    salt2: header.salt2,
    checksum1: header.checksum1,
    checksum2: header.checksum2,
  };
}

/**
 * Rebuilds the {@link WalPosition} at `offset` of the WAL generation with salts `(salt1, salt2)`, e.g. from an
 * LTX header's WAL offset + size and salts: the running checksum at a frame boundary is the checksum stored in
 * the frame header just before it (the header checksum at offset 32). Returns null when the WAL has no valid
 * header, belongs to another generation, is shorter, or the offset is not a frame boundary.
 */
export function walPositionAt(
  walPath: string,
  offset: number,
  salt1: number,
  salt2: number,
): Promise<WalPosition | null> {
  try {
    return Promise.resolve(walPositionAtSync(walPath, offset, salt1, salt2));
  } catch (err) {
    return Promise.reject(err);
  }
}

function walPositionAtSync(
  walPath: string,
  offset: number,
  salt1: number,
  salt2: number,
): WalPosition | null {
  const f = openWal(walPath);
  if (!f) return null;
  try {
    const hb = new Uint8Array(WAL_HEADER_SIZE);
    const header = parseWalHeader(hb.subarray(0, readFullAt(f, 0, hb)));
    if (!header || header.salt1 !== salt1 >>> 0 || header.salt2 !== salt2 >>> 0) return null;
    const frameSize = WAL_FRAME_HEADER_SIZE + header.pageSize;
    if (offset < WAL_HEADER_SIZE || (offset - WAL_HEADER_SIZE) % frameSize !== 0) return null;
    if (offset === WAL_HEADER_SIZE) return walStartPosition(header);
    const prev = new Uint8Array(WAL_FRAME_HEADER_SIZE);
    if (readFullAt(f, offset - frameSize, prev) < WAL_FRAME_HEADER_SIZE) return null;
    if (u32(prev, 8) !== header.salt1 || u32(prev, 12) !== header.salt2) return null;
    return {
      offset,
      salt1: header.salt1,
      salt2: header.salt2,
      checksum1: u32(prev, 16),
      checksum2: u32(prev, 20),
    };
  } catch (err) {
    throw walIoError(err, walPath);
  } finally {
    f.close();
  }
}

/*
 * I/O here is synchronous on purpose. The WAL is a local file and a sync reads a few KiB of it (at most a chunk
 * at a time); Deno runs every async file operation on its blocking thread pool, and with a hundred databases
 * syncing every second those round trips (open, seek, read, stat, close: each a hop to another thread and
 * back) cost more CPU than the reads themselves, and their concurrent buffers fragment the allocator
 * (measured with bench/replication_compare.ts). A read of a page-cache-resident file takes microseconds, so
 * blocking the event loop for it is cheaper than scheduling it.
 */

/** Reads into `buf` at file offset `offset` until it is full or the file ends; returns the byte count. */
function readFullAt(f: Deno.FsFile, offset: number, buf: Uint8Array): number {
  f.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = f.readSync(buf.subarray(got));
    if (n === null || n === 0) break;
    got += n;
  }
  return got;
}

function openWal(walPath: string): Deno.FsFile | null {
  try {
    return Deno.openSync(walPath, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw walIoError(err, walPath);
  }
}

/**
 * The chunk buffer of {@link readCommittedFrames}: one per process, grown on demand and never shrunk. Sharing
 * it between databases is safe because a chunk is read and fully parsed (only offsets are kept) without an
 * `await` in between; a per-call buffer would be a large short-lived allocation on every sync, which glibc
 * serves from its main heap and does not give back.
 */
let chunkScratch = new Uint8Array(0);

function chunkBuffer(size: number): Uint8Array {
  if (chunkScratch.length < size) chunkScratch = new Uint8Array(size);
  return chunkScratch.subarray(0, size);
}

function walIoError(err: unknown, walPath: string): DatabaseError {
  if (err instanceof DatabaseError) return err;
  if (err instanceof Deno.errors.PermissionDenied) {
    return new DatabaseError(`cannot read WAL ${walPath}: permission denied; check its owner and mode`, {
      cause: err,
    });
  }
  return new DatabaseError(`cannot read WAL ${walPath}: ${messageOf(err)}`, { cause: err, transient: true });
}

/** Reads and validates the WAL header; null when the WAL is missing, shorter than 32 bytes or invalid. */
export function readWalHeader(path: string): Promise<WalHeader | null> {
  try {
    return Promise.resolve(readWalHeaderSync(path));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** {@link readWalHeader}, synchronously (a 32-byte read of a local file). */
export function readWalHeaderSync(path: string): WalHeader | null {
  const f = openWal(path);
  if (!f) return null;
  try {
    const buf = new Uint8Array(WAL_HEADER_SIZE);
    const n = readFullAt(f, 0, buf);
    return parseWalHeader(buf.subarray(0, n));
  } catch (err) {
    throw walIoError(err, path);
  } finally {
    f.close();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Reads the committed frames of the WAL at `walPath`, starting at `from` (null = the first frame).
 *
 * Returns `{kind: "restarted"}` when `from` no longer describes this WAL: the salts differ (the WAL was
 * restarted or truncated by a checkpoint), the file is shorter than `from.offset`, the frame before
 * `from.offset` no longer carries `from`'s checksum, or the header changed while the frames were being read.
 * A missing, empty or header-less WAL is also reported as restarted, with `header: null`.
 *
 * Otherwise returns the pages of every complete transaction after `from`, up to the first invalid frame
 * (torn write, old salts, bad checksum) or, with `maxBytes`, the first commit boundary after that many bytes.
 */
export async function readCommittedFrames(
  walPath: string,
  from: WalPosition | null,
  opts: ReadFramesOptions = {},
): Promise<WalReadResult> {
  const maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY;
  const f = openWal(walPath);
  if (!f) return { kind: "restarted", header: null };
  try {
    const size = f.statSync().size;
    const headerBytes = new Uint8Array(WAL_HEADER_SIZE);
    const hn = readFullAt(f, 0, headerBytes);
    const header = parseWalHeader(headerBytes.subarray(0, hn));
    if (!header) return { kind: "restarted", header: null };
    const frameSize = WAL_FRAME_HEADER_SIZE + header.pageSize;

    const st: ChecksumState = { s0: header.checksum1, s1: header.checksum2 };
    let startOffset = WAL_HEADER_SIZE;
    if (from) {
      if (from.salt1 !== header.salt1 || from.salt2 !== header.salt2) return { kind: "restarted", header };
      if (size < from.offset) return { kind: "restarted", header };
      if (from.offset < WAL_HEADER_SIZE || (from.offset - WAL_HEADER_SIZE) % frameSize !== 0) {
        return { kind: "restarted", header };
      }
      if (from.offset > WAL_HEADER_SIZE) {
        // Resume mid-WAL from the stored running checksum, after checking that the frame before `from` is still
        // the one we consumed (same salts and stored checksum); otherwise the WAL was rewritten under us.
        const prev = new Uint8Array(WAL_FRAME_HEADER_SIZE);
        const pn = readFullAt(f, from.offset - frameSize, prev);
        if (
          pn < WAL_FRAME_HEADER_SIZE || u32(prev, 8) !== header.salt1 || u32(prev, 12) !== header.salt2 ||
          u32(prev, 16) !== from.checksum1 >>> 0 || u32(prev, 20) !== from.checksum2 >>> 0
        ) {
          return { kind: "restarted", header };
        }
        st.s0 = from.checksum1 >>> 0;
        st.s1 = from.checksum2 >>> 0;
        startOffset = from.offset;
      }
    }
    const start: WalPosition = {
      offset: startOffset,
      salt1: header.salt1,
      salt2: header.salt2,
      checksum1: st.s0,
      checksum2: st.s1,
    };

    const pages = new Map<number, number>();
    const txn = new Map<number, number>();
    let end = start;
    let commit = 0;
    let maxPage = 0;
    let more = false;
    // Size the first read to what the file held at stat time (a sync usually finds a few frames), and
    // switch to full-size chunks if the WAL turns out to be larger.
    const maxFrames = Math.max(1, Math.floor(READ_CHUNK_BYTES / frameSize));
    const knownFrames = Math.ceil(Math.max(0, size - startOffset) / frameSize);
    let frames = Math.min(maxFrames, Math.max(1, knownFrames));
    let chunkOffset = startOffset;
    let chunks = 0;
    reading: while (true) {
      if (++chunks % CHUNKS_PER_YIELD === 0) await new Promise((r) => setTimeout(r, 0));
      // From here to the end of the loop body nothing awaits: the shared buffer is ours (see chunkBuffer).
      const buf = chunkBuffer(frames * frameSize);
      const n = readFullAt(f, chunkOffset, buf);
      const whole = Math.floor(n / frameSize);
      for (let i = 0; i < whole; i++) {
        const p = i * frameSize;
        const pgno = u32(buf, p);
        const frameCommit = u32(buf, p + 4);
        if (pgno === 0) break reading;
        if (u32(buf, p + 8) !== header.salt1 || u32(buf, p + 12) !== header.salt2) break reading;
        const s0 = st.s0;
        const s1 = st.s1;
        accumulate(header.bigEndian, st, buf, p, 8);
        accumulate(header.bigEndian, st, buf, p + WAL_FRAME_HEADER_SIZE, header.pageSize);
        if (st.s0 !== u32(buf, p + 16) || st.s1 !== u32(buf, p + 20)) {
          st.s0 = s0;
          st.s1 = s1;
          break reading;
        }
        const frameOffset = chunkOffset + p;
        txn.set(pgno, frameOffset + WAL_FRAME_HEADER_SIZE);
        if (frameCommit !== 0) {
          for (const [pg, off] of txn) {
            pages.set(pg, off);
            if (pg > maxPage) maxPage = pg;
          }
          txn.clear();
          if (maxPage > frameCommit) {
            // The database is smaller than some page we hold (VACUUM, auto-vacuum, or a transaction that wrote
            // pages before truncating): those pages no longer exist and must not come back if it grows again.
            for (const pg of pages.keys()) if (pg > frameCommit) pages.delete(pg);
            maxPage = frameCommit;
          }
          commit = frameCommit;
          end = {
            offset: frameOffset + frameSize,
            salt1: header.salt1,
            salt2: header.salt2,
            checksum1: st.s0,
            checksum2: st.s1,
          };
          if (end.offset - startOffset >= maxBytes) {
            more = true;
            break reading;
          }
        }
      }
      // Stop at the end of the file as of the stat: frames appended since are read by the next call.
      if (n < buf.length || chunkOffset + n >= size) break;
      chunkOffset += buf.length;
      frames = maxFrames;
    }

    // A checkpoint that restarted the WAL while we were reading would leave us with a mix of generations;
    // the salts stop that for frames, but re-reading the header is what tells us it happened at all.
    await opts.beforeHeaderRecheck?.();
    const again = new Uint8Array(WAL_HEADER_SIZE);
    const an = readFullAt(f, 0, again);
    if (an !== WAL_HEADER_SIZE || !sameBytes(again, headerBytes)) {
      return { kind: "restarted", header: parseWalHeader(again.subarray(0, an)) };
    }
    return {
      kind: "ok",
      header,
      start,
      end,
      pages,
      commit,
      frames: (end.offset - startOffset) / frameSize,
      more,
    };
  } catch (err) {
    throw walIoError(err, walPath);
  } finally {
    f.close();
  }
}

/**
 * Reads one page at `offset` (a value from {@link WalReadResult} `pages`). Throws a transient
 * {@link DatabaseError} when the file is shorter (it was truncated: the caller did not hold the read lock).
 */
export function readPage(f: Deno.FsFile, offset: number, pageSize: number): Promise<Uint8Array> {
  try {
    return Promise.resolve(readPageSync(f, offset, pageSize));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** {@link readPage}, synchronously (one page of a local file; see the note on I/O above). */
export function readPageSync(
  f: Deno.FsFile,
  offset: number,
  pageSize: number,
  into: Uint8Array = new Uint8Array(pageSize),
): Uint8Array {
  const buf = into.length === pageSize ? into : new Uint8Array(pageSize);
  const n = readFullAt(f, offset, buf);
  if (n !== pageSize) {
    throw new DatabaseError(
      `WAL page at byte ${offset} is incomplete (${n} of ${pageSize} bytes): the WAL was truncated while being read`,
      { transient: true },
    );
  }
  return buf;
}
