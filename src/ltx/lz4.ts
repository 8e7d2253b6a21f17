/**
 * LZ4 for LTX pages and Litestream v0.3 files: raw blocks (compressed with lz4-wasm), a bounds-checked
 * pure-TS block decoder, and an LZ4 frame decoder (stored blocks, block/content checksums via xxh32).
 *
 * Every failure is a {@link CorruptionError}; lz4-wasm throws strings and wasm `RuntimeError: unreachable`,
 * which are normalised here. No allocation is ever sized by a field read from the input: output sizes come
 * from the caller (`size`, `maxSize`) and grow only with bytes actually produced.
 *
 * @module
 */

import { compress as wasmCompress, decompress as wasmDecompress } from "lz4-wasm";
import { CorruptionError, messageOf } from "../errors.ts";

/** Worst-case size of an LZ4 block for `n` input bytes (liblz4 `LZ4_COMPRESSBOUND`). */
export function lz4BlockBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

let scratch = new Uint8Array(lz4BlockBound(65536) + 4);

/** A malformed LZ4 stream, with the byte offset (relative to the start of the LZ4 data) where it was seen. */
export class Lz4FormatError extends Error {
  /** Offset relative to the start of the block or frame. */
  readonly at: number;
  /** Creates the error. */
  constructor(message: string, at: number) {
    super(message);
    this.name = "Lz4FormatError";
    this.at = at;
  }
}

function corrupt(
  message: string,
  name: string | undefined,
  offset: number,
  cause?: unknown,
): CorruptionError {
  return new CorruptionError(message, { object: name, offset, cause });
}

/**
 * Compresses `page` into a raw LZ4 block (no size prefix). Always compresses, even when the result is
 * larger than the input, as Go ltx does (there is no stored mode in the block encoding).
 */
export function compressBlock(page: Uint8Array): Uint8Array {
  // lz4-wasm returns a fresh copy: 4-byte LE uncompressed size + raw block.
  return wasmCompress(page).subarray(4);
}

/**
 * Decompresses a raw LZ4 block that must expand to exactly `size` bytes (lz4-wasm: the fastest decoder
 * here). Throws {@link CorruptionError} naming `name` and `offset` (the block's position in its file, when
 * given) for anything else; lz4-wasm's thrown strings and wasm traps are normalised.
 */
export function decompressBlock(block: Uint8Array, size: number, name?: string, offset = 0): Uint8Array {
  // lz4-wasm wants the 4-byte LE uncompressed size in front; `size` comes from the caller, never the input.
  // A reused scratch buffer avoids an off-heap allocation per page (V8 allocates every typed array above
  // 64 bytes outside its heap, which dominated the per-page cost).
  const need = block.length + 4;
  if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
  const input = scratch.subarray(0, need);
  input[0] = size & 0xff;
  input[1] = (size >>> 8) & 0xff;
  input[2] = (size >>> 16) & 0xff;
  input[3] = (size >>> 24) & 0xff;
  input.set(block, 4);
  let out: Uint8Array;
  try {
    out = wasmDecompress(input);
  } catch (err) {
    throw corrupt(`LZ4 block: ${lz4ErrorText(err)}`, name, offset, err);
  }
  if (out.length !== size) {
    throw corrupt(`LZ4 block decompresses to ${out.length} bytes, expected ${size}`, name, offset);
  }
  const bad = strictBlockProblem(block);
  if (bad >= 0) {
    throw corrupt(
      "LZ4 block: malformed sequence (zero match offset or non-canonical end of block)",
      name,
      offset + bad,
    );
  }
  return out;
}

/**
 * Walks the sequences of a block that lz4-wasm already decoded and returns the offset of the first thing
 * that lz4-wasm tolerates but the LZ4 format forbids, else -1: a zero match offset, a block ending right
 * after a match, or a final literals-only token whose (unused) match nibble is not zero. Every LZ4 encoder
 * writes canonical blocks; LTX's file checksum covers only the decompressed page, so without this check a
 * flipped bit in such a spot could go unnoticed. Costs a small fraction of a decompression (no copying).
 */
export function strictBlockProblem(block: Uint8Array): number {
  let i = 0;
  const n = block.length;
  while (i < n) {
    const t = i;
    const token = block[i++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        b = block[i++];
        lit += b;
      } while (b === 255 && i < n);
    }
    i += lit;
    if (i >= n) return (token & 15) !== 0 ? t : -1;
    if (block[i] === 0 && block[i + 1] === 0) return i;
    i += 2;
    if ((token & 15) === 15) {
      let b: number;
      do {
        b = block[i++];
      } while (b === 255 && i < n);
    }
    // A block must end with a literals-only sequence, never right after a match.
    if (i >= n) return t;
  }
  return -1;
}

/** lz4-wasm throws strings for bad input and `RuntimeError: unreachable` when its Rust code panics. */
function lz4ErrorText(err: unknown): string {
  const m = messageOf(err);
  return m === "unreachable" ? "malformed block (decoder trap)" : m;
}

/**
 * The same contract as {@link decompressBlock} with the pure-TS decoder: used for frames and as a
 * cross-check in tests; it reports the exact offset of the problem inside the block.
 */
export function decompressBlockJs(block: Uint8Array, size: number, name?: string, offset = 0): Uint8Array {
  const out = new Uint8Array(size);
  let end: number;
  try {
    end = decodeBlockInto(block, 0, block.length, out, 0, size, 0);
  } catch (err) {
    if (err instanceof Lz4FormatError) {
      throw corrupt(`LZ4 block: ${err.message}`, name, offset + err.at, err);
    }
    throw corrupt(`LZ4 block: ${messageOf(err)}`, name, offset, err);
  }
  if (end !== size) {
    throw corrupt(`LZ4 block decompresses to ${end} bytes, expected ${size}`, name, offset);
  }
  return out;
}

/**
 * Decodes the raw LZ4 block `src[sPos, sEnd)` into `dst` starting at `dPos`, never writing at or past
 * `dEnd` and never copying a match from before `windowStart` (earlier output of the same frame may be
 * referenced when blocks are linked). Returns the new output position. Throws {@link Lz4FormatError}.
 */
export function decodeBlockInto(
  src: Uint8Array,
  sPos: number,
  sEnd: number,
  dst: Uint8Array,
  dPos: number,
  dEnd: number,
  windowStart: number,
): number {
  const sStart = sPos;
  if (sEnd > src.length || dEnd > dst.length) throw new Lz4FormatError("bounds outside the buffers", 0);
  if (sPos >= sEnd) throw new Lz4FormatError("empty block", 0);
  while (true) {
    const tPos = sPos;
    const token = src[sPos++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (sPos >= sEnd) throw new Lz4FormatError("truncated literal length", sPos - sStart);
        b = src[sPos++];
        lit += b;
      } while (b === 255);
    }
    if (lit > sEnd - sPos) throw new Lz4FormatError("literals run past the end of the block", sPos - sStart);
    if (lit > dEnd - dPos) throw new Lz4FormatError("output larger than expected", sPos - sStart);
    if (lit < 32) {
      for (let k = 0; k < lit; k++) dst[dPos + k] = src[sPos + k];
    } else {
      dst.set(src.subarray(sPos, sPos + lit), dPos);
    }
    sPos += lit;
    dPos += lit;
    if (sPos === sEnd) {
      // The last sequence has literals only; a non-zero match nibble would be an undetectable bit flip.
      if ((token & 15) !== 0) throw new Lz4FormatError("final sequence has a match length", tPos - sStart);
      return dPos;
    }
    if (sEnd - sPos < 2) throw new Lz4FormatError("truncated match offset", sPos - sStart);
    const off = src[sPos] | (src[sPos + 1] << 8);
    if (off === 0 || off > dPos - windowStart) {
      throw new Lz4FormatError(`invalid match offset ${off}`, sPos - sStart);
    }
    sPos += 2;
    let ml = token & 15;
    if (ml === 15) {
      let b: number;
      do {
        if (sPos >= sEnd) throw new Lz4FormatError("truncated match length", sPos - sStart);
        b = src[sPos++];
        ml += b;
      } while (b === 255);
    }
    ml += 4;
    if (ml > dEnd - dPos) throw new Lz4FormatError("output larger than expected", sPos - sStart);
    let m = dPos - off;
    if (off >= ml && ml >= 32) {
      dst.copyWithin(dPos, m, m + ml);
      dPos += ml;
    } else {
      // Overlapping copies repeat the last `off` bytes: byte by byte is the definition.
      const end = dPos + ml;
      while (dPos < end) dst[dPos++] = dst[m++];
    }
    if (sPos >= sEnd) throw new Lz4FormatError("block ends with a match instead of literals", sPos - sStart);
  }
}

// ---------------------------------------------------------------------------------------------------------
// xxHash32

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  acc = (acc + Math.imul(lane, P2)) | 0;
  acc = rotl(acc, 13);
  return Math.imul(acc, P1);
}

/** xxHash32 of `b` (seed 0 unless given), as used by LZ4 frames. */
export function xxh32(b: Uint8Array, seed = 0): number {
  const n = b.length;
  let i = 0;
  let h: number;
  const u32 = (p: number) => b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24);
  if (n >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = n - 16;
    while (i <= limit) {
      v1 = round(v1, u32(i));
      v2 = round(v2, u32(i + 4));
      v3 = round(v3, u32(i + 8));
      v4 = round(v4, u32(i + 12));
      i += 16;
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + n) | 0;
  while (i + 4 <= n) {
    h = (h + Math.imul(u32(i), P3)) | 0;
    h = Math.imul(rotl(h, 17), P4);
    i += 4;
  }
  while (i < n) {
    h = (h + Math.imul(b[i], P5)) | 0;
    h = Math.imul(rotl(h, 11), P1);
    i++;
  }
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------------------
// Frames

/** Magic number of an LZ4 frame (little-endian on disk: 04 22 4D 18). */
export const LZ4_FRAME_MAGIC = 0x184d2204;
const BLOCK_MAX = [0, 0, 0, 0, 65536, 262144, 1048576, 4194304];

/** Where a frame's decompressed bytes go: a fixed buffer (an LTX page) or a growing one (v0.3 files). */
export interface FrameOutput {
  /** The buffer; bytes `[0, len)` are output. May be replaced by `reserve`. */
  buf: Uint8Array;
  /** Bytes produced so far. */
  len: number;
  /**
   * Makes room for `n` more bytes. `exact` (a stored block) means all `n` must fit, else it throws
   * {@link Lz4FormatError}; otherwise `n` is an upper bound and the block decoder stops at `buf.length`.
   * Growth is limited by the caller's maximum, never by a size read from the input.
   */
  reserve(n: number, exact: boolean, at: number): void;
}

/**
 * The LZ4 frame parser as a coroutine: it yields how many bytes it needs next and receives exactly those
 * bytes, so the same code runs over an in-memory buffer ({@link decodeFrame}) and over a stream (the LTX
 * decoder's legacy pages). `pos` counts bytes consumed, for error offsets. Returns when the frame ends.
 */
export function* frameParser(out: FrameOutput): Generator<number, void, Uint8Array> {
  let pos = 0;
  const take = function* (n: number): Generator<number, Uint8Array, Uint8Array> {
    const b = yield n;
    pos += n;
    return b;
  };
  const magic = yield* take(4);
  const m = (magic[0] | (magic[1] << 8) | (magic[2] << 16) | (magic[3] << 24)) >>> 0;
  if (m !== LZ4_FRAME_MAGIC) throw new Lz4FormatError(`bad LZ4 frame magic 0x${m.toString(16)}`, 0);
  const fd = yield* take(2);
  const flg = fd[0];
  const bd = fd[1];
  if (flg >>> 6 !== 1) throw new Lz4FormatError(`unsupported LZ4 frame version ${flg >>> 6}`, 4);
  if ((flg & 0x02) !== 0) throw new Lz4FormatError("reserved FLG bit set", 4);
  if ((bd & 0x8f) !== 0) throw new Lz4FormatError("reserved BD bits set", 5);
  const blockMax = BLOCK_MAX[(bd >>> 4) & 7];
  if (blockMax === 0) throw new Lz4FormatError(`invalid block maximum size id ${(bd >>> 4) & 7}`, 5);
  const independent = (flg & 0x20) !== 0;
  const blockChecksum = (flg & 0x10) !== 0;
  const hasContentSize = (flg & 0x08) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  if ((flg & 0x01) !== 0) throw new Lz4FormatError("LZ4 dictionaries are not supported", 4);
  const descriptor = [flg, bd];
  let contentSize = -1;
  if (hasContentSize) {
    const cs = yield* take(8);
    descriptor.push(...cs);
    const v = new DataView(cs.buffer, cs.byteOffset, 8).getBigUint64(0, true);
    contentSize = v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  const hc = (yield* take(1))[0];
  const expectHc = (xxh32(Uint8Array.from(descriptor)) >>> 8) & 0xff;
  if (hc !== expectHc) throw new Lz4FormatError("LZ4 frame header checksum mismatch", pos - 1);
  const frameStart = out.len;
  while (true) {
    const at = pos;
    const bs = yield* take(4);
    const word = (bs[0] | (bs[1] << 8) | (bs[2] << 16) | (bs[3] << 24)) >>> 0;
    if (word === 0) break; // end mark
    const stored = (word & 0x80000000) !== 0;
    const size = word & 0x7fffffff;
    if (size > blockMax) {
      throw new Lz4FormatError(`LZ4 block size ${size} exceeds the frame's maximum ${blockMax}`, at);
    }
    const data = yield* take(size);
    if (blockChecksum) {
      const c = yield* take(4);
      const want = (c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24)) >>> 0;
      if (xxh32(data) !== want) throw new Lz4FormatError("LZ4 block checksum mismatch", pos - 4);
    }
    if (stored) {
      out.reserve(size, true, at);
      out.buf.set(data, out.len);
      out.len += size;
    } else {
      out.reserve(Math.min(blockMax, lz4MaxExpansion(size)), false, at);
      const blockStart = out.len;
      try {
        out.len = decodeBlockInto(
          data,
          0,
          size,
          out.buf,
          blockStart,
          Math.min(out.buf.length, blockStart + blockMax),
          independent ? blockStart : Math.max(frameStart, blockStart - 65536),
        );
      } catch (err) {
        if (err instanceof Lz4FormatError) throw new Lz4FormatError(err.message, at + 4 + err.at);
        throw err;
      }
    }
  }
  const produced = out.len - frameStart;
  if (contentChecksum) {
    const c = yield* take(4);
    const want = (c[0] | (c[1] << 8) | (c[2] << 16) | (c[3] << 24)) >>> 0;
    if (xxh32(out.buf.subarray(frameStart, out.len)) !== want) {
      throw new Lz4FormatError("LZ4 content checksum mismatch", pos - 4);
    }
  }
  if (contentSize >= 0 && contentSize !== produced) {
    throw new Lz4FormatError(`LZ4 frame content size ${contentSize} but ${produced} bytes decoded`, 6);
  }
}

/** Upper bound of what `n` compressed bytes can expand to (each byte of a match length adds ≤ 255). */
function lz4MaxExpansion(n: number): number {
  return n * 255 + 16;
}

/** A frame output of exactly `size` bytes (an LTX page): producing more is corruption. */
export function fixedFrameOutput(size: number): FrameOutput {
  const o: FrameOutput = {
    buf: new Uint8Array(size),
    len: 0,
    reserve(n: number, exact: boolean, at: number): void {
      if (exact && n > size - o.len) throw new Lz4FormatError(`output larger than ${size} bytes`, at);
    },
  };
  return o;
}

/** A growing frame output capped at `maxSize` bytes. */
export function growingFrameOutput(maxSize: number): FrameOutput {
  const o: FrameOutput = {
    buf: new Uint8Array(Math.min(maxSize, 1 << 16)),
    len: 0,
    reserve(n: number, exact: boolean, at: number): void {
      if (exact && n > maxSize - o.len) {
        throw new Lz4FormatError(`decompressed data exceeds the limit of ${maxSize} bytes`, at);
      }
      const want = Math.min(o.len + n, maxSize);
      if (want <= o.buf.length) return;
      let cap = Math.max(o.buf.length, 1);
      while (cap < want) cap *= 2;
      const next = new Uint8Array(Math.min(cap, maxSize));
      next.set(o.buf.subarray(0, o.len));
      o.buf = next;
    },
  };
  return o;
}

/**
 * Decodes one or more concatenated LZ4 frames (skippable frames are skipped) from `bytes`, producing at
 * most `maxSize` bytes; for Litestream v0.3 snapshots/WAL segments and legacy LTX pages. Content and block
 * checksums are verified when present. Throws {@link CorruptionError} naming `name` and the byte offset.
 */
export function decodeFrame(bytes: Uint8Array, maxSize: number, name?: string): Uint8Array {
  const out = growingFrameOutput(maxSize);
  let pos = 0;
  let frames = 0;
  try {
    while (pos < bytes.length || frames === 0) {
      if (bytes.length - pos >= 4) {
        const m = (bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16) | (bytes[pos + 3] << 24)) >>>
          0;
        if ((m & 0xfffffff0) === 0x184d2a50) {
          // Skippable frame: magic, u32 LE size, payload.
          if (bytes.length - pos < 8) throw new Lz4FormatError("truncated skippable frame", 0);
          const size = new DataView(bytes.buffer, bytes.byteOffset + pos + 4, 4).getUint32(0, true);
          if (size > bytes.length - pos - 8) throw new Lz4FormatError("truncated skippable frame", 4);
          pos += 8 + size;
          continue;
        }
      }
      pos += runFrameOverBuffer(bytes, pos, out);
      frames++;
    }
  } catch (err) {
    if (err instanceof Lz4FormatError) throw corrupt(`LZ4 frame: ${err.message}`, name, pos + err.at, err);
    throw err;
  }
  return out.buf.subarray(0, out.len);
}

/** Runs one frame parser over `bytes` from `start`; returns the bytes consumed. Offsets in errors are relative. */
function runFrameOverBuffer(bytes: Uint8Array, start: number, out: FrameOutput): number {
  const gen = frameParser(out);
  let pos = start;
  let step = gen.next();
  while (!step.done) {
    const n = step.value;
    if (n > bytes.length - pos) {
      throw new Lz4FormatError("truncated LZ4 frame", bytes.length - start);
    }
    const chunk = bytes.subarray(pos, pos + n);
    pos += n;
    step = gen.next(chunk);
  }
  return pos - start;
}

/**
 * Decodes a single LZ4 frame that must expand to exactly `size` bytes from an in-memory buffer (a legacy
 * LTX page, flags 0x0000); trailing bytes after the frame are an error.
 */
export function decodePageFrame(bytes: Uint8Array, size: number, name?: string, offset = 0): Uint8Array {
  const out = fixedFrameOutput(size);
  let used: number;
  try {
    used = runFrameOverBuffer(bytes, 0, out);
  } catch (err) {
    if (err instanceof Lz4FormatError) throw corrupt(`LZ4 frame: ${err.message}`, name, offset + err.at, err);
    throw err;
  }
  if (used !== bytes.length) throw corrupt("trailing bytes after the LZ4 frame", name, offset + used);
  if (out.len !== size) {
    throw corrupt(`LZ4 frame decompresses to ${out.len} bytes, expected ${size}`, name, offset);
  }
  return out.buf;
}
