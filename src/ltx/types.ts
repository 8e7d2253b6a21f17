/**
 * LTX v3 file-format constants, the header/trailer/index types, and the small pure helpers shared by the
 * encoder, decoder and compactor: header (de)serialisation and validation, lock page, uvarints, file names.
 *
 * Layout (all fixed-width integers big-endian): 100-byte header, page frames, a 6-byte zero page header,
 * the uvarint page index, u64 index size, 16-byte trailer. See `../shared/reference/ltx-litestream.md` §1.
 *
 * @module
 */

/** Size of the LTX header in bytes. */
export const HEADER_SIZE = 100;
/** Size of the LTX trailer in bytes (post-apply checksum + file checksum). */
export const TRAILER_SIZE = 16;
/** Size of a page header in bytes (u32 pgno + u16 flags). */
export const PAGE_HEADER_SIZE = 6;
/** Header flag: database checksums are not tracked (pre/post-apply checksums are zero). Litestream v0.5 sets it. */
export const HEADER_FLAG_NO_CHECKSUM = 0x2;
/** Page flag: the page data is a u32 BE compressed size followed by a raw LZ4 block (ltx ≥ v0.5.2). */
export const PAGE_FLAG_SIZE = 0x1;
/** The bits a header may carry. */
export const HEADER_FLAG_MASK = HEADER_FLAG_NO_CHECKSUM;
/** The bits a page header may carry. */
export const PAGE_FLAG_MASK = PAGE_FLAG_SIZE;
/** The 4-byte magic at the start of every LTX file (all versions). */
export const LTX_MAGIC = "LTX1";
/** Bit 63, set on every non-zero LTX checksum so that it is never zero. */
export const CHECKSUM_FLAG = 1n << 63n;
/** SQLite's PENDING_BYTE: the page holding it (the lock page) is never stored. */
export const PENDING_BYTE = 0x40000000;
/** Largest SQLite page size. */
export const MAX_PAGE_SIZE = 65536;

/** The 100-byte LTX header. TXIDs, offsets and timestamps are JS numbers; checksums and the node id bigints. */
export interface LtxHeader {
  /** Header flags; only {@link HEADER_FLAG_NO_CHECKSUM} is valid. */
  flags: number;
  /** Database page size in bytes (power of two, 512…65536). */
  pageSize: number;
  /** Database size in pages after applying this file. */
  commit: number;
  /** First transaction ID covered (1 means the file is a snapshot). */
  minTXID: number;
  /** Last transaction ID covered. */
  maxTXID: number;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  /** Database checksum before applying the file; 0 when NoChecksum or snapshot. */
  preApplyChecksum: bigint;
  /** Offset in the source WAL of the first frame read (0 if not from a WAL). */
  walOffset: number;
  /** Bytes of WAL consumed. */
  walSize: number;
  /** WAL header salt-1. */
  walSalt1: number;
  /** WAL header salt-2. */
  walSalt2: number;
  /** Node id of the writer, 0 if unset. */
  nodeID: bigint;
}

/** The 16-byte LTX trailer. */
export interface LtxTrailer {
  /** Database checksum after applying the file; 0 when NoChecksum. */
  postApplyChecksum: bigint;
  /** CHECKSUM_FLAG | CRC-64/GO-ISO over the header, frames with decompressed pages, index and post-apply. */
  fileChecksum: bigint;
}

/** One entry of the page index: where a page frame sits in the file. */
export interface PageIndexEntry {
  /** Page number. */
  pgno: number;
  /** Absolute file offset of the frame's 6-byte page header. */
  offset: number;
  /** Whole frame length: page header, optional size field and payload. */
  size: number;
}

/** The lock page (the one holding SQLite's PENDING_BYTE) for a page size: never stored in LTX files. */
export function lockPgno(pageSize: number): number {
  return Math.floor(PENDING_BYTE / pageSize) + 1;
}

/** Whether the header describes a snapshot (a file that starts at TXID 1 and holds every page). */
export function isSnapshot(h: LtxHeader): boolean {
  return h.minTXID === 1;
}

/** Whether `n` is a valid SQLite page size: a power of two from 512 to 65536. */
export function isValidPageSize(n: number): boolean {
  for (let s = 512; s <= MAX_PAGE_SIZE; s *= 2) if (n === s) return true;
  return false;
}

/** A TXID as 16 lowercase hex digits, as in LTX file names. */
export function formatTxid(txid: number): string {
  return txid.toString(16).padStart(16, "0");
}

/** Parses 16 hex digits as a TXID; null when malformed or above 2^53−1 (walrust keeps TXIDs as numbers). */
export function parseTxid(s: string): number | null {
  if (!/^[0-9a-f]{16}$/.test(s)) return null;
  const v = Number.parseInt(s, 16);
  return Number.isSafeInteger(v) ? v : null;
}

/** The LTX file name of a TXID range: `%016x-%016x.ltx`. */
export function formatLtxFilename(min: number, max: number): string {
  return `${formatTxid(min)}-${formatTxid(max)}.ltx`;
}

/**
 * Parses an LTX file name (no directory part) into its TXID range; null when the name is not
 * `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$` or a TXID does not fit a safe integer.
 */
export function parseLtxFilename(name: string): { minTXID: number; maxTXID: number } | null {
  const m = /^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$/.exec(name);
  if (!m) return null;
  const minTXID = parseTxid(m[1]);
  const maxTXID = parseTxid(m[2]);
  if (minTXID === null || maxTXID === null) return null;
  return { minTXID, maxTXID };
}

/** A checksum as 16 lowercase hex digits. */
export function formatChecksum(c: bigint): string {
  return c.toString(16).padStart(16, "0");
}

/**
 * Why a header is invalid, or null when it is valid: the rules of Go ltx `Header.Validate`, plus walrust's
 * own limit that TXIDs, WAL offsets and timestamps are safe integers.
 */
export function headerProblem(h: LtxHeader): string | null {
  if (!Number.isInteger(h.flags) || h.flags < 0 || (h.flags & ~HEADER_FLAG_MASK) !== 0) {
    return `invalid flags: 0x${(h.flags >>> 0).toString(16).padStart(8, "0")}`;
  }
  if (!isValidPageSize(h.pageSize)) return `invalid page size: ${h.pageSize}`;
  if (!Number.isInteger(h.commit) || h.commit < 0 || h.commit > 0xffffffff) {
    return `invalid commit: ${h.commit}`;
  }
  if (!Number.isSafeInteger(h.minTXID) || h.minTXID < 0) {
    return `invalid minimum transaction id: ${h.minTXID}`;
  }
  if (!Number.isSafeInteger(h.maxTXID) || h.maxTXID < 0) {
    return `invalid maximum transaction id: ${h.maxTXID}`;
  }
  if (h.minTXID === 0) return "minimum transaction id required";
  if (h.maxTXID === 0) return "maximum transaction id required";
  if (h.minTXID > h.maxTXID) return `transaction ids out of order: (${h.minTXID},${h.maxTXID})`;
  if (!Number.isSafeInteger(h.timestamp)) return `invalid timestamp: ${h.timestamp}`;
  if (!Number.isSafeInteger(h.walOffset)) return `invalid wal offset: ${h.walOffset}`;
  if (!Number.isSafeInteger(h.walSize)) return `invalid wal size: ${h.walSize}`;
  if (h.walOffset < 0) return `wal offset cannot be negative: ${h.walOffset}`;
  if (h.walSize < 0) return `wal size cannot be negative: ${h.walSize}`;
  if (!isU32(h.walSalt1) || !isU32(h.walSalt2)) return "invalid wal salt";
  if ((h.walSalt1 !== 0 || h.walSalt2 !== 0) && h.walOffset === 0) {
    return "wal offset required if salt exists";
  }
  if (h.walOffset === 0 && h.walSize !== 0) return "wal offset required if wal size exists";
  if (h.preApplyChecksum < 0n || h.preApplyChecksum >= 1n << 64n) return "invalid pre-apply checksum";
  if (h.nodeID < 0n || h.nodeID >= 1n << 64n) return "invalid node id";
  if (isSnapshot(h)) {
    if (h.preApplyChecksum !== 0n) return "pre-apply checksum must be zero on snapshots";
  } else if ((h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0) {
    if (h.preApplyChecksum !== 0n) return "pre-apply checksum not allowed";
  } else {
    if (h.preApplyChecksum === 0n) return "pre-apply checksum required on non-snapshot files";
    if ((h.preApplyChecksum & CHECKSUM_FLAG) === 0n) return "invalid pre-apply checksum format";
  }
  return null;
}

/**
 * Why a trailer is invalid for a header, or null: Go ltx `Trailer.Validate` (NoChecksum ⇒ post-apply 0,
 * else post-apply non-zero with bit 63; file checksum non-zero with bit 63).
 */
export function trailerProblem(h: LtxHeader, t: LtxTrailer): string | null {
  if ((h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0) {
    if (t.postApplyChecksum !== 0n) return "post-apply checksum not allowed (header flag NoChecksum)";
  } else {
    if (t.postApplyChecksum === 0n) return "post-apply checksum required";
    if ((t.postApplyChecksum & CHECKSUM_FLAG) === 0n) return "invalid post-apply checksum format";
  }
  if (t.fileChecksum === 0n) return "file checksum required";
  if ((t.fileChecksum & CHECKSUM_FLAG) === 0n) return "invalid file checksum format";
  return null;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/** Writes `h` as the 100-byte big-endian header into `out` at `offset` (reserved bytes zeroed). */
export function writeHeader(h: LtxHeader, out: Uint8Array, offset = 0): void {
  const v = new DataView(out.buffer, out.byteOffset + offset, HEADER_SIZE);
  out.fill(0, offset, offset + HEADER_SIZE);
  out.set([0x4c, 0x54, 0x58, 0x31], offset); // "LTX1"
  v.setUint32(4, h.flags);
  v.setUint32(8, h.pageSize);
  v.setUint32(12, h.commit);
  v.setBigUint64(16, BigInt(h.minTXID));
  v.setBigUint64(24, BigInt(h.maxTXID));
  v.setBigInt64(32, BigInt(h.timestamp));
  v.setBigUint64(40, h.preApplyChecksum);
  v.setBigInt64(48, BigInt(h.walOffset));
  v.setBigInt64(56, BigInt(h.walSize));
  v.setUint32(64, h.walSalt1);
  v.setUint32(68, h.walSalt2);
  v.setBigUint64(72, h.nodeID);
}

/** The 100-byte encoding of `h`. */
export function encodeHeader(h: LtxHeader): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  writeHeader(h, out);
  return out;
}

/** Result of {@link parseHeaderBytes}: the header, or what is wrong and at which byte of the header. */
export type HeaderParse = { ok: true; header: LtxHeader } | { ok: false; problem: string; at: number };

/**
 * Parses and validates a 100-byte header. Values that do not fit walrust's number types (a TXID or WAL
 * offset above 2^53−1) are reported as problems, never silently rounded.
 */
export function parseHeaderBytes(b: Uint8Array): HeaderParse {
  if (b.length < HEADER_SIZE) return { ok: false, problem: "header truncated", at: b.length };
  if (b[0] !== 0x4c || b[1] !== 0x54 || b[2] !== 0x58 || b[3] !== 0x31) {
    return { ok: false, problem: "not an LTX file (bad magic, expected 'LTX1')", at: 0 };
  }
  const v = new DataView(b.buffer, b.byteOffset, HEADER_SIZE);
  const u64 = (off: number): number | null => {
    const x = v.getBigUint64(off);
    return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : null;
  };
  const i64 = (off: number): number | null => {
    const x = v.getBigInt64(off);
    return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : null;
  };
  const minTXID = u64(16);
  if (minTXID === null) return { ok: false, problem: "minimum transaction id exceeds 2^53-1", at: 16 };
  const maxTXID = u64(24);
  if (maxTXID === null) return { ok: false, problem: "maximum transaction id exceeds 2^53-1", at: 24 };
  const timestamp = i64(32);
  if (timestamp === null) return { ok: false, problem: "timestamp out of range", at: 32 };
  const walOffset = i64(48);
  if (walOffset === null) return { ok: false, problem: "wal offset out of range", at: 48 };
  const walSize = i64(56);
  if (walSize === null) return { ok: false, problem: "wal size out of range", at: 56 };
  const header: LtxHeader = {
    flags: v.getUint32(4),
    pageSize: v.getUint32(8),
    commit: v.getUint32(12),
    minTXID,
    maxTXID,
    timestamp,
    preApplyChecksum: v.getBigUint64(40),
    walOffset,
    walSize,
    walSalt1: v.getUint32(64),
    walSalt2: v.getUint32(68),
    nodeID: v.getBigUint64(72),
  };
  const problem = headerProblem(header);
  if (problem !== null) {
    return { ok: false, problem: `invalid header: ${problem}`, at: problemOffset(problem) };
  }
  return { ok: true, header };
}

/** The header byte offset a validation problem most likely refers to (for error messages). */
function problemOffset(problem: string): number {
  if (problem.startsWith("invalid flags")) return 4;
  if (problem.startsWith("invalid page size")) return 8;
  if (problem.includes("transaction id")) return 16;
  if (problem.includes("pre-apply")) return 40;
  if (problem.includes("salt")) return 64;
  if (problem.includes("wal")) return 48;
  return 0;
}

/** Appends `v` (a non-negative safe integer) as a Go `binary.AppendUvarint` to `out` at `pos`; returns the new pos. */
export function putUvarint(out: Uint8Array, pos: number, v: number): number {
  // Division, not bit operators: values can exceed 2^32 (file offsets).
  while (v >= 0x80) {
    out[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  out[pos++] = v;
  return pos;
}

/** The uvarint encoding of `v`. */
export function encodeUvarint(v: number): Uint8Array {
  const out = new Uint8Array(10);
  return out.slice(0, putUvarint(out, 0, v));
}

/**
 * Reads a uvarint at `pos`. Returns the value and the position after it, or null when the bytes end
 * first, the varint is longer than 10 bytes / overflows 64 bits, or the value exceeds 2^53−1.
 */
export function readUvarint(b: Uint8Array, pos: number): { value: number; next: number } | null {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= b.length) return null;
    const byte = b[pos + i];
    if (i === 9 && byte > 1) return null; // overflows 64 bits (Go: "varint overflows a 64-bit integer")
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (!Number.isSafeInteger(value)) return null;
      return { value, next: pos + i + 1 };
    }
    scale *= 0x80;
  }
  return null;
}

/** Bytes of uvarint needed for `v`. */
export function uvarintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}
