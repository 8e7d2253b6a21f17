/**
 * LZ4 for LTX pages and Litestream v0.3 files: raw blocks, a strict block decoder in WebAssembly for LTX
 * pages, a bounds-checked pure-TS block decoder, and an LZ4 frame decoder (stored blocks, block/content
 * checksums via xxh32).
 *
 * Compression is lz4-wasm's, called through its raw wasm exports ({@link compressBlockInto}): the page is
 * copied into wasm memory once and the block copied straight to its destination, where the published JS
 * wrapper allocates a fresh result for every call and the caller copied it again.
 *
 * Decompression of LTX pages ({@link decompressBlock}, {@link decompressBlockInKernel}) runs a small LZ4
 * decoder assembled at load time (see `instantiateKernel` in `checksum.ts`) in the kernel memory shared with
 * the CRC, so the decoder hashes the page where it was written. It copies 8 or 16 bytes at a time (the
 * kernel buffers have slack for that) and enforces the same rules as {@link decodeBlockInto}: no zero or
 * out-of-window match offset, no output past the expected size, the block must end with a literals-only
 * sequence whose unused match nibble is zero. Those checks matter because LTX's file checksum covers only
 * the decompressed page. On the benchmark database (`bench/ltx_throughput.ts`) it decodes ~2.6 GB/s of
 * pages into kernel memory, against ~1 GB/s for lz4-wasm's decompress, which also needed a separate
 * strictness pass ({@link strictBlockProblem}). Whenever the kernel rejects a block, the lz4-wasm path
 * ({@link decompressBlockLz4Wasm}) runs on it and produces the error, so messages are exactly as before.
 *
 * Every failure is a {@link CorruptionError}; lz4-wasm throws strings and wasm `RuntimeError: unreachable`,
 * which are normalised here. No allocation is ever sized by a field read from the input: output sizes come
 * from the caller (`size`, `maxSize`) and grow only with bytes actually produced.
 *
 * @module
 */

import { compress as wasmCompress, decompress as wasmDecompress } from "lz4-wasm";
// The same module instance the wrapper above uses (one wasm memory): its raw exports, for compressBlockInto.
// deno.json maps "lz4-wasm" to the JS entry only, so the wasm file is named by its full (locked) specifier.
// deno-lint-ignore no-import-prefix
import * as lz4Wasm from "npm:lz4-wasm@0.9.2/lz4_wasm_bg.wasm";
import { CorruptionError, messageOf } from "../errors.ts";
import {
  instantiateKernel,
  KERNEL_LAYOUT,
  kernelBytes,
  type KernelFunction,
  kernelMemory,
} from "./checksum.ts";

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

/** lz4-wasm's raw exports (wasm-bindgen ABI: results are written to a caller-provided 16-byte slot). */
interface Lz4WasmExports {
  memory: WebAssembly.Memory;
  compress(ret: number, ptr: number, len: number): void;
  __wbindgen_malloc(size: number): number;
  __wbindgen_free(ptr: number, size: number): void;
}
// Held in constants: loading them from the module namespace object on every call was measurably slower.
const { memory: rawMemory, compress: rawCompress, __wbindgen_malloc: rawMalloc, __wbindgen_free: rawFree } =
  lz4Wasm as unknown as Lz4WasmExports;
// A permanent, 8-byte aligned result slot (wasm-bindgen's glue borrows one from its shadow stack per call).
const RET = (rawMalloc(24) + 7) & ~7;
let rawBytes = new Uint8Array(rawMemory.buffer);
let rawWords = new Int32Array(rawMemory.buffer);

/** Renews the views on lz4-wasm's memory after it grew (growing detaches the old buffer: length 0). */
function renewRawViews(): void {
  if (rawBytes.length === 0) {
    rawBytes = new Uint8Array(rawMemory.buffer);
    rawWords = new Int32Array(rawMemory.buffer);
  }
}

/**
 * Compresses `page` into a raw LZ4 block written at `dst[at…]` and returns its length: the same bytes as
 * {@link compressBlock}, without allocating. `dst` must have {@link lz4BlockBound}`(page.length)` bytes of
 * room from `at` (RangeError otherwise).
 */
export function compressBlockInto(page: Uint8Array, dst: Uint8Array, at: number): number {
  const n = page.length;
  if (dst.length - at < lz4BlockBound(n)) {
    throw new RangeError(
      `compressBlockInto: need ${lz4BlockBound(n)} bytes of room, have ${dst.length - at}`,
    );
  }
  // The input buffer is owned (and freed) by the Rust side; the result vector is ours to free.
  const p = rawMalloc(n);
  renewRawViews();
  rawBytes.set(page, p);
  rawCompress(RET, p, n);
  renewRawViews();
  const out = rawWords[RET >> 2];
  const len = rawWords[(RET >> 2) + 1];
  dst.set(rawBytes.subarray(out + 4, out + len), at); // skip lz4-wasm's 4-byte size prefix
  rawFree(out, len);
  return len - 4;
}

// WAT: a rule was broken.
const FAIL = "i32.const -1 return";

/** WAT: `$len += ` the 255-extension bytes at `$s`, each one required to exist before `$se`. */
const EXTEND = (len: string) => `
      loop
        local.get $s local.get $se i32.ge_u if ${FAIL} end
        local.get $s i32.load8_u local.set $b
        local.get $s i32.const 1 i32.add local.set $s
        local.get ${len} local.get $b i32.add local.set ${len}
        local.get $b i32.const 255 i32.eq br_if 0
      end`;

/**
 * `lz4_block(s, se, d, de)`: decodes the block in kernel memory [s, se) to [d, de) with the rules of
 * {@link decodeBlockInto} (window = the output); returns the bytes produced, or -1 for any violation.
 * Literals are copied 16 bytes and matches 8 bytes at a time (reads and writes may run 15 bytes past the
 * ends, into the layout's slack); matches with offset 1 are a fill, offsets 2…7 go byte by byte.
 */
export const LZ4_KERNEL: KernelFunction = {
  name: "lz4_block",
  params: [["$s", "i32"], ["$se", "i32"], ["$d", "i32"], ["$de", "i32"]],
  result: "i32",
  locals: [["$ds", "i32"], ["$tok", "i32"], ["$lit", "i32"], ["$b", "i32"], ["$off", "i32"], ["$ml", "i32"], [
    "$m",
    "i32",
  ], ["$e", "i32"]],
  body: `
  local.get $d local.set $ds
  local.get $s local.get $se i32.ge_u if ${FAIL} end ;; empty block
  loop
    local.get $s i32.load8_u local.set $tok
    local.get $s i32.const 1 i32.add local.set $s
    local.get $tok i32.const 4 i32.shr_u local.tee $lit
    i32.const 15 i32.eq if ${EXTEND("$lit")} end
    local.get $lit local.get $se local.get $s i32.sub i32.gt_u if ${FAIL} end ;; literals past the block
    local.get $lit local.get $de local.get $d i32.sub i32.gt_u if ${FAIL} end ;; output too large
    local.get $d local.get $lit i32.add local.set $e
    local.get $s local.set $m
    loop
      local.get $d local.get $m i64.load i64.store
      local.get $d local.get $m i64.load offset=8 i64.store offset=8
      local.get $m i32.const 16 i32.add local.set $m
      local.get $d i32.const 16 i32.add local.tee $d
      local.get $e i32.lt_u br_if 0
    end
    local.get $e local.set $d
    local.get $s local.get $lit i32.add local.tee $s
    local.get $se i32.eq if
      local.get $tok i32.const 15 i32.and if ${FAIL} end ;; final sequence with a match length
      local.get $d local.get $ds i32.sub return
    end
    local.get $se local.get $s i32.sub i32.const 2 i32.lt_u if ${FAIL} end ;; truncated offset
    local.get $s i32.load16_u local.tee $off i32.eqz if ${FAIL} end
    local.get $off local.get $d local.get $ds i32.sub i32.gt_u if ${FAIL} end ;; before the window
    local.get $s i32.const 2 i32.add local.set $s
    local.get $tok i32.const 15 i32.and local.tee $ml
    i32.const 15 i32.eq if ${EXTEND("$ml")} end
    local.get $ml i32.const 4 i32.add local.tee $ml
    local.get $de local.get $d i32.sub i32.gt_u if ${FAIL} end ;; output too large
    local.get $d local.get $off i32.sub local.set $m
    local.get $d local.get $ml i32.add local.set $e
    local.get $off i32.const 8 i32.ge_u if ;; each 8-byte step reads only bytes already written
      loop
        local.get $d local.get $m i64.load i64.store
        local.get $m i32.const 8 i32.add local.set $m
        local.get $d i32.const 8 i32.add local.tee $d
        local.get $e i32.lt_u br_if 0
      end
    else
      local.get $off i32.const 1 i32.eq if
        local.get $d local.get $m i32.load8_u local.get $ml memory.fill
      else
        loop
          local.get $d local.get $m i32.load8_u i32.store8
          local.get $m i32.const 1 i32.add local.set $m
          local.get $d i32.const 1 i32.add local.tee $d
          local.get $e i32.lt_u br_if 0
        end
      end
    end
    local.get $e local.set $d
    local.get $s local.get $se i32.ge_u if ${FAIL} end ;; the block ends with a match
    br 0
  end
  ${FAIL}`,
};

const lz4Kernel = instantiateKernel([LZ4_KERNEL], kernelMemory).lz4_block as (
  s: number,
  se: number,
  d: number,
  de: number,
) => number;

/**
 * Runs the strict LZ4 kernel alone: decodes `block` into kernel memory at `KERNEL_LAYOUT.output` and returns
 * whether it is a valid block expanding to exactly `size` bytes (no error details; see
 * {@link decompressBlock} for those). False as well for a negative size, or a block or size larger than
 * the kernel's buffers, which no page can need.
 */
export function lz4KernelDecode(block: Uint8Array, size: number): boolean {
  const { input, inputSize, output, outputSize } = KERNEL_LAYOUT;
  if (block.length > inputSize || !(size >= 0 && size <= outputSize)) return false;
  kernelBytes.set(block, input);
  return lz4Kernel(input, input + block.length, output, output + size) === size;
}

/**
 * Decompresses a raw LZ4 block that must expand to exactly `size` bytes (at most
 * `KERNEL_LAYOUT.outputSize`, else RangeError) into kernel memory and returns its address there
 * (`KERNEL_LAYOUT.output`). The bytes stay valid until the next kernel call: hash them
 * (`Crc64.updateKernel`) and copy them out at once. Same checks and errors as {@link decompressBlock}.
 */
export function decompressBlockInKernel(block: Uint8Array, size: number, name?: string, offset = 0): number {
  const { output, outputSize } = KERNEL_LAYOUT;
  if (size > outputSize) throw new RangeError(`decompressBlockInKernel: ${size} bytes exceed ${outputSize}`);
  if (lz4KernelDecode(block, size)) return output;
  // Rejected: the lz4-wasm path reports the problem exactly as before the kernel existed. Should it accept
  // a block the kernel refused, its output is used, so the kernel can never make decoding stricter.
  kernelBytes.set(decompressBlockLz4Wasm(block, size, name, offset), output);
  return output;
}

/**
 * Decompresses a raw LZ4 block that must expand to exactly `size` bytes (the strict kernel decoder; see the
 * module docs). Throws {@link CorruptionError} naming `name` and `offset` (the block's position in its
 * file, when given) for anything else.
 */
export function decompressBlock(block: Uint8Array, size: number, name?: string, offset = 0): Uint8Array {
  if (lz4KernelDecode(block, size)) {
    const { output } = KERNEL_LAYOUT;
    return kernelBytes.slice(output, output + size);
  }
  return decompressBlockLz4Wasm(block, size, name, offset);
}

/**
 * {@link decompressBlock} with lz4-wasm's decompressor plus the {@link strictBlockProblem} pass (the
 * original path): reports the errors for blocks the kernel rejects, and is the kernel's oracle in tests.
 */
export function decompressBlockLz4Wasm(
  block: Uint8Array,
  size: number,
  name?: string,
  offset = 0,
): Uint8Array {
  // lz4-wasm wants the 4-byte LE uncompressed size in front; `size` comes from the caller, never the input.
  // A reused scratch buffer avoids an off-heap allocation per call.
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
    if (ml < 32) {
      // Short matches (most of them): a plain loop beats a call. It also gives overlapping copies their
      // meaning, repeating the last `off` bytes.
      const end = dPos + ml;
      while (dPos < end) dst[dPos++] = dst[m++];
    } else if (off >= ml) {
      dst.copyWithin(dPos, m, m + ml);
      dPos += ml;
    } else if (off === 1) {
      dst.fill(dst[m], dPos, dPos + ml); // a run of one byte (zeroed free space in SQLite pages)
      dPos += ml;
    } else {
      // A long overlapping match repeats a pattern of `off` bytes: copy whole periods, doubling each time.
      const end = dPos + ml;
      let period = off;
      while (dPos < end) {
        const n = Math.min(period, end - dPos);
        dst.copyWithin(dPos, dPos - period, dPos - period + n);
        dPos += n;
        period += n;
      }
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
