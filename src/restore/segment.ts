/**
 * Decoding a run of snapshot frames ("segment") straight into database pages, with the whole per-page loop in
 * WebAssembly: {@link SegmentDecoder} reads the LTX bytes into its own wasm memory, a `frames` kernel parses
 * each frame header, checks it, hashes it, decompresses the page with the strict LZ4 kernel of `lz4.ts`
 * directly into an output region of the same memory, hashes the page with the CRC kernel of `checksum.ts`
 * (and its page checksum when the file tracks them), and the output regions go to the sink as they are,
 * without a copy. JavaScript runs once per 2 MiB read and once per 4 MiB written, not once per page, so
 * nothing hot is left for V8's optimising compilers (which cost a 256 MB restore ~120 ms of a second core
 * while the per-page loop was JavaScript) and no page is copied in or out of kernel memory.
 *
 * The rules are those of the full decoder for block-encoded snapshot frames: page order from the segment's
 * first page, never the lock page (its zeros are written where it falls) nor beyond commit, compressed sizes
 * within the LZ4 bound, exact decompression. Anything else (a legacy frame-encoded page, a block the strict
 * kernel refuses) throws {@link FastPathDeclined}: the restore then starts over with the full decoder, which
 * reports the problem exactly as always. The caller checks where the segment ended, the page index against
 * the frames returned, and the checksums.
 *
 * @module
 */

import { InterruptedError } from "../errors.ts";
import {
  type Crc64,
  CRC_KERNEL,
  CRC_TABLES_SIZE,
  instantiateKernel,
  kernelBytes,
  type KernelFunction,
} from "../ltx/checksum.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import { LZ4_KERNEL, lz4BlockBound } from "../ltx/lz4.ts";
import { lockPgno, PAGE_HEADER_SIZE } from "../ltx/types.ts";

/**
 * A fast path will not decide this file (a legacy frame-encoded page, or any rule broken): the restore
 * starts over with the full decoder, which reports the problem exactly as always.
 */
export class FastPathDeclined extends Error {
  /** Records why, for the debug log. */
  constructor(reason: string) {
    super(reason);
    this.name = "FastPathDeclined";
  }
}

/** A run of frames to decode: where it starts and what it must hold. */
export interface SegmentSpec {
  /** Page size. */
  pageSize: number;
  /** Database size in pages (header `commit`). */
  commit: number;
  /** The page number the first frame must have. */
  first: number;
  /** Whether to accumulate page checksums (header without the NoChecksum flag). */
  checksums: boolean;
  /** Object name, for the debug log. */
  name: string;
}

/** What {@link SegmentDecoder.decode} found. */
export interface SegmentResult {
  /** Page numbers of the frames read, in order. */
  pgnos: number[];
  /** Frame offsets (absolute). */
  offsets: number[];
  /** Frame sizes. */
  sizes: number[];
  /** The page number a following frame would have to have. */
  next: number;
  /** Whether the segment ended with the end marker (pgno 0, flags 0). */
  ended: boolean;
  /** XOR of the page checksums (without the flag), when `checksums`. */
  xor: bigint;
  /** Bytes fed to the CRC (page headers, sizes, decompressed pages, end marker). */
  hashed: number;
  /** Absolute offset of the first byte not decoded (after the end marker when `ended`). */
  consumed: number;
  /** The bytes read after the end marker (empty when the input ended there). */
  leftover: Uint8Array;
}

/** Where a segment's bytes come from: `read` fills the front of `into` and answers how many (0 at the end). */
export interface FrameSource {
  /** Reads at most `into.length` bytes into `into`; at most one call is outstanding. */
  read(into: Uint8Array): Promise<number>;
}

/** A sink that hands every chunk to {@link releaseChunk} once written (or once its write failed). */
export interface ReleasingSink extends ByteSink {
  /** Marks the sink: a producer may lend it memory it reuses after the release. */
  readonly releasesChunks: true;
}

const releaseWaiters = new WeakMap<Uint8Array, () => void>();

/**
 * Called by a {@link ReleasingSink} when it is done with a chunk: the decoder that lent it may reuse the
 * memory. Chunks nobody waits for are ignored, so a sink may call it for every chunk it wrote.
 */
export function releaseChunk(chunk: Uint8Array): void {
  const done = releaseWaiters.get(chunk);
  if (done) {
    releaseWaiters.delete(chunk);
    done();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Memory layout (byte addresses) of a SegmentDecoder's own memory.

/** CRC registers (inverted, little-endian u64), as the CRC kernel keeps them. */
const FILE_STATE = CRC_TABLES_SIZE;
const RAW_STATE = FILE_STATE + 8;
const PAGE_STATE = FILE_STATE + 16;
/** XOR of the page checksums (u64), when the file tracks them. */
const XOR_STATE = FILE_STATE + 24;
/** The page number, big-endian, fed to the page checksum. */
const PGNO_AT = FILE_STATE + 32;
/** The frames kernel's state (u32 fields). */
const S = FILE_STATE + 64;
const S_NEXT = S;
const S_COMMIT = S + 4;
const S_LOCK = S + 8;
const S_PS = S + 12;
const S_BOUND = S + 16;
const S_COUNT = S + 20;
const S_ZERO = S + 24;
const S_P = S + 28;
const S_D = S + 32;
const S_CHECKSUMS = S + 36;
/** Frames decoded by the last call: (pgno, size) u32 pairs. */
const FRAMES = 65536;
const FRAMES_CAP = 16384;
/** Room before each input region for the unfinished frame of the previous one (≥ 10 + LZ4 bound of 64 KiB). */
const CARRY = 128 << 10;
/** Bytes per read. */
const IN_CHUNK = 2 << 20;
/** Bytes of output per write (rounded down to whole pages). */
const OUT_CHUNK = 4 << 20;
/** Behind every region: the LZ4 kernel may read and write 15 bytes past its ends. */
const SLACK = 64 << 10;
const INPUT_BASE = FRAMES + FRAMES_CAP * 8;
const INPUT_STRIDE = CARRY + IN_CHUNK + SLACK;
const OUTPUT_BASE = INPUT_BASE + 2 * INPUT_STRIDE;
const OUTPUT_STRIDE = OUT_CHUNK + SLACK;
/** Output regions: one being filled while the others are written. */
const OUTPUT_REGIONS = 4;
const WASM_PAGES = Math.ceil((OUTPUT_BASE + OUTPUT_REGIONS * OUTPUT_STRIDE) / 65536);

const dataStart = (region: number) => INPUT_BASE + region * INPUT_STRIDE + CARRY;
const outStart = (region: number) => OUTPUT_BASE + region * OUTPUT_STRIDE;

/** Statuses of the frames kernel. */
const NEED_INPUT = 1;
const NEED_OUTPUT = 2;
const END = 3;
const FRAMES_FULL = 4;
const DECLINES: Record<number, string> = {
  10: "not a block-encoded page",
  11: "compressed size out of range",
  12: "page out of order",
  13: "LZ4 block refused by the strict kernel",
};

/** WAT: the big-endian u32 at `$p + at`. */
const be32 = (at: number) =>
  `local.get $p i32.load8_u offset=${at} i32.const 24 i32.shl
   local.get $p i32.load8_u offset=${at + 1} i32.const 16 i32.shl i32.or
   local.get $p i32.load8_u offset=${at + 2} i32.const 8 i32.shl i32.or
   local.get $p i32.load8_u offset=${at + 3} i32.or`;

/** WAT: leave the loop with status `st` (from inside one `if` in the loop: depth 2). */
const leave = (st: number) => `i32.const ${st} local.set $st br 2`;

/**
 * `frames(p, pe, d, de)`: decodes the complete frames in [p, pe) into pages at [d, de) until the input runs
 * short (NEED_INPUT), the output is full (NEED_OUTPUT), the end marker was hashed (END), the frame list is
 * full (FRAMES_FULL) or a rule is broken (a DECLINES code). Returns the status; where it stopped in the input
 * and output, the next page number and the frames decoded are in the state fields.
 */
const FRAMES_KERNEL: KernelFunction = {
  name: "frames",
  params: [["$p", "i32"], ["$pe", "i32"], ["$d", "i32"], ["$de", "i32"]],
  result: "i32",
  locals: [
    ["$ps", "i32"],
    ["$pgno", "i32"],
    ["$fl", "i32"],
    ["$cs", "i32"],
    ["$next", "i32"],
    ["$n", "i32"],
    ["$st", "i32"],
    ["$commit", "i32"],
    ["$lock", "i32"],
    ["$bound", "i32"],
    ["$chk", "i32"],
  ],
  body: `
  i32.const 0 i32.load offset=${S_PS} local.set $ps
  i32.const 0 i32.load offset=${S_NEXT} local.set $next
  i32.const 0 i32.load offset=${S_COMMIT} local.set $commit
  i32.const 0 i32.load offset=${S_LOCK} local.set $lock
  i32.const 0 i32.load offset=${S_BOUND} local.set $bound
  i32.const 0 i32.load offset=${S_COUNT} local.set $n
  i32.const 0 i32.load offset=${S_CHECKSUMS} local.set $chk
  block loop
    ;; the lock page's zeros, owed since the page before it
    i32.const 0 i32.load offset=${S_ZERO} if
      local.get $de local.get $d i32.sub local.get $ps i32.lt_u if i32.const ${NEED_OUTPUT} local.set $st br 3 end
      local.get $d i32.const 0 local.get $ps memory.fill
      local.get $d local.get $ps i32.add local.set $d
      i32.const 0 i32.const 0 i32.store offset=${S_ZERO}
    end
    local.get $n i32.const ${FRAMES_CAP} i32.ge_u if ${leave(FRAMES_FULL)} end
    local.get $pe local.get $p i32.sub i32.const ${PAGE_HEADER_SIZE} i32.lt_u if ${leave(NEED_INPUT)} end
    ${be32(0)} local.set $pgno
    local.get $p i32.load8_u offset=4 i32.const 8 i32.shl local.get $p i32.load8_u offset=5 i32.or local.set $fl
    local.get $pgno local.get $fl i32.or i32.eqz if ;; the end marker
      local.get $p i32.const ${PAGE_HEADER_SIZE} i32.const ${FILE_STATE} call crc
      local.get $p i32.const ${PAGE_HEADER_SIZE} i32.add local.set $p
      ${leave(END)}
    end
    local.get $fl i32.const 1 i32.ne if ${leave(10)} end
    local.get $pe local.get $p i32.sub i32.const 10 i32.lt_u if ${leave(NEED_INPUT)} end
    ${be32(6)} local.set $cs
    local.get $cs i32.eqz local.get $cs local.get $bound i32.gt_u i32.or if ${leave(11)} end
    local.get $pe local.get $p i32.sub i32.const 10 i32.sub local.get $cs i32.lt_u if ${leave(NEED_INPUT)} end
    local.get $pgno local.get $next i32.ne local.get $pgno local.get $commit i32.gt_u i32.or if ${
    leave(12)
  } end
    local.get $de local.get $d i32.sub local.get $ps i32.lt_u if ${leave(NEED_OUTPUT)} end
    local.get $p i32.const 10 i32.const ${FILE_STATE} call crc
    local.get $p i32.const 10 i32.add
    local.get $p i32.const 10 i32.add local.get $cs i32.add
    local.get $d
    local.get $d local.get $ps i32.add
    call lz4_block local.get $ps i32.ne if ${leave(13)} end
    local.get $d local.get $ps i32.const ${FILE_STATE} call crc
    local.get $chk if ;; the page checksum: crc(be32(pgno) ‖ page), flag bit cleared, XORed in
      i32.const 0 local.get $pgno i32.const 24 i32.shr_u i32.store8 offset=${PGNO_AT}
      i32.const 0 local.get $pgno i32.const 16 i32.shr_u i32.store8 offset=${PGNO_AT + 1}
      i32.const 0 local.get $pgno i32.const 8 i32.shr_u i32.store8 offset=${PGNO_AT + 2}
      i32.const 0 local.get $pgno i32.store8 offset=${PGNO_AT + 3}
      i32.const 0 i64.const -1 i64.store offset=${PAGE_STATE}
      i32.const ${PGNO_AT} i32.const 4 i32.const ${PAGE_STATE} call crc
      local.get $d local.get $ps i32.const ${PAGE_STATE} call crc
      i32.const 0
      i32.const 0 i64.load offset=${XOR_STATE}
      i32.const 0 i64.load offset=${PAGE_STATE} i64.const -1 i64.xor i64.const 0x7fffffffffffffff i64.and
      i64.xor i64.store offset=${XOR_STATE}
    end
    local.get $n i32.const 3 i32.shl local.get $pgno i32.store offset=${FRAMES}
    local.get $n i32.const 3 i32.shl local.get $cs i32.const 10 i32.add i32.store offset=${FRAMES + 4}
    local.get $n i32.const 1 i32.add local.set $n
    local.get $p local.get $cs i32.add i32.const 10 i32.add local.set $p
    local.get $d local.get $ps i32.add local.set $d
    local.get $pgno i32.const 1 i32.add local.tee $next
    local.get $lock i32.eq if
      local.get $next i32.const 1 i32.add local.set $next
      local.get $lock local.get $commit i32.le_u if i32.const 0 i32.const 1 i32.store offset=${S_ZERO} end
    end
    br 0
  end end
  i32.const 0 local.get $p i32.store offset=${S_P}
  i32.const 0 local.get $d i32.store offset=${S_D}
  i32.const 0 local.get $next i32.store offset=${S_NEXT}
  i32.const 0 local.get $n i32.store offset=${S_COUNT}
  local.get $st`,
};

/**
 * Appends the `count` frames the kernel listed (pgno, size pairs at FRAMES; wasm memory is little-endian,
 * as every platform Deno runs on) to `res`, the first at absolute offset `at`; returns the offset after them.
 * A function of its own: the hot loop stays small for the optimising compiler.
 */
function collectFrames(words: Uint32Array, count: number, res: SegmentResult, at: number): number {
  const first = FRAMES >> 2;
  for (let k = 0; k < count; k++) {
    const size = words[first + 2 * k + 1];
    res.pgnos.push(words[first + 2 * k]);
    res.offsets.push(at);
    res.sizes.push(size);
    at += size;
  }
  return at;
}

/**
 * Decodes segments in its own WebAssembly memory (~22 MB: two 2 MiB input regions with room for a carried
 * frame, four 4 MiB output regions, the CRC tables). One per thread and restore: a chunk lent to a sink that
 * never releases it (an abandoned restore) then pins only this decoder's memory.
 */
export class SegmentDecoder {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #words: Uint32Array;
  readonly #frames: (p: number, pe: number, d: number, de: number) => number;
  readonly #crc: (p: number, n: number, s: number) => void;
  /** Per output region: resolves when the sink released the chunk lent from it. */
  readonly #released: (Promise<void> | null)[] = new Array(OUTPUT_REGIONS).fill(null);
  #region = OUTPUT_REGIONS - 1;

  constructor() {
    const memory = new WebAssembly.Memory({ initial: WASM_PAGES, maximum: WASM_PAGES });
    this.#bytes = new Uint8Array(memory.buffer);
    this.#view = new DataView(memory.buffer);
    this.#words = new Uint32Array(memory.buffer);
    this.#bytes.set(kernelBytes.subarray(0, CRC_TABLES_SIZE), 0);
    const k = instantiateKernel([CRC_KERNEL, LZ4_KERNEL, FRAMES_KERNEL], memory);
    this.#frames = k.frames as (p: number, pe: number, d: number, de: number) => number;
    this.#crc = k.crc as (p: number, n: number, s: number) => void;
  }

  /** The next output region, once the sink released what it was lent from it. */
  async #takeRegion(): Promise<number> {
    this.#region = (this.#region + 1) % OUTPUT_REGIONS;
    const pending = this.#released[this.#region];
    if (pending) {
      await pending;
      this.#released[this.#region] = null;
    }
    return this.#region;
  }

  /** Hands `len` bytes of output region `region` to the sink: lent to a releasing sink, else copied. */
  async #emit(sink: ByteSink, region: number, len: number): Promise<void> {
    if (len === 0) return;
    const chunk = this.#bytes.subarray(outStart(region), outStart(region) + len);
    if ((sink as Partial<ReleasingSink>).releasesChunks !== true) return await sink.write(chunk.slice());
    this.#released[region] = new Promise<void>((resolve) => releaseWaiters.set(chunk, resolve));
    await sink.write(chunk);
  }

  /**
   * Decodes frames from `source` (whose first byte is at absolute offset `start`) until the end marker or
   * the end of the input, feeding `crc` (and `raw` with every byte read, when given) and writing the pages
   * (the first is page `spec.first`; a zeroed lock page where it falls) to `sink` in 4 MiB chunks.
   */
  async decode(
    source: FrameSource,
    start: number,
    spec: SegmentSpec,
    crc: Crc64,
    raw: Crc64 | null,
    sink: ByteSink,
  ): Promise<SegmentResult> {
    const { pageSize: ps, commit, checksums } = spec;
    const lock = lockPgno(ps);
    if (spec.first === lock && lock <= commit) throw new FastPathDeclined("segment starts at the lock page");
    const b = this.#bytes;
    const v = this.#view;
    v.setUint32(S_NEXT, spec.first, true);
    v.setUint32(S_COMMIT, commit, true);
    v.setUint32(S_LOCK, lock, true);
    v.setUint32(S_PS, ps, true);
    v.setUint32(S_BOUND, lz4BlockBound(ps), true);
    v.setUint32(S_ZERO, 0, true);
    v.setUint32(S_CHECKSUMS, checksums ? 1 : 0, true);
    v.setBigUint64(XOR_STATE, 0n, true);
    crc.saveRegister(v, FILE_STATE);
    raw?.saveRegister(v, RAW_STATE);
    const res: SegmentResult = {
      pgnos: [],
      offsets: [],
      sizes: [],
      next: spec.first,
      ended: false,
      xor: 0n,
      hashed: 0,
      consumed: start,
      leftover: new Uint8Array(0),
    };
    const cap = Math.max(ps, Math.floor(OUT_CHUNK / ps) * ps);
    let region = await this.#takeRegion();
    let d = outStart(region);
    let de = d + cap;
    let cur = 0;
    let p = dataStart(cur);
    let pe = p;
    let base = start; // absolute offset of dataStart(cur)
    let frameAt = start; // absolute offset of the next frame
    const readInto = (r: number) => source.read(b.subarray(dataStart(r), dataStart(r) + IN_CHUNK));
    let inflight: Promise<number> | null = readInto(cur);
    try {
      outer: while (true) {
        const n = inflight === null ? 0 : await inflight;
        inflight = null;
        if (n > 0 && raw) this.#crc(dataStart(cur), n, RAW_STATE);
        pe = dataStart(cur) + n;
        if (n > 0) inflight = readInto(1 - cur);
        while (true) {
          v.setUint32(S_COUNT, 0, true);
          const status = this.#frames(p, pe, d, de);
          p = v.getUint32(S_P, true);
          d = v.getUint32(S_D, true);
          frameAt = collectFrames(this.#words, v.getUint32(S_COUNT, true), res, frameAt);
          if (status === NEED_OUTPUT) {
            await this.#emit(sink, region, d - outStart(region));
            region = await this.#takeRegion();
            d = outStart(region);
            de = d + cap;
          } else if (status === END) {
            res.ended = true;
            break outer;
          } else if (status === NEED_INPUT) {
            if (inflight === null) break outer; // the input ended
            // The unfinished frame moves in front of the next region's bytes.
            const left = pe - p;
            const next = 1 - cur;
            b.copyWithin(dataStart(next) - left, p, pe);
            base += pe - dataStart(cur);
            cur = next;
            p = dataStart(cur) - left;
            continue outer;
          } else if (status !== FRAMES_FULL) {
            throw new FastPathDeclined(DECLINES[status] ?? `frames kernel status ${status}`);
          }
        }
      }
      res.consumed = base + (p - dataStart(cur));
      if (res.ended) {
        // Bytes already read past the end marker belong to the caller (the page index and trailer).
        const after = b.slice(p, pe);
        const n = inflight === null ? 0 : await inflight;
        inflight = null;
        if (n > 0 && raw) this.#crc(dataStart(1 - cur), n, RAW_STATE);
        const more = b.subarray(dataStart(1 - cur), dataStart(1 - cur) + n);
        res.leftover = new Uint8Array(after.length + more.length);
        res.leftover.set(after);
        res.leftover.set(more, after.length);
      }
      await this.#emit(sink, region, d - outStart(region));
    } finally {
      if (inflight !== null) await inflight.catch(() => 0);
    }
    res.next = v.getUint32(S_NEXT, true);
    res.xor = v.getBigUint64(XOR_STATE, true);
    res.hashed = res.pgnos.length * (10 + ps) + (res.ended ? PAGE_HEADER_SIZE : 0);
    crc.loadRegister(v, FILE_STATE);
    raw?.loadRegister(v, RAW_STATE);
    return res;
  }
}

/**
 * Bytes [`start`, `end`) of a local file as a {@link FrameSource}; `close` releases the file. Each read
 * counts its bytes with `onBytes` and stops with {@link InterruptedError} once `signal` aborted.
 */
export async function fileRangeSource(
  path: string,
  start: number,
  end: number,
  signal?: AbortSignal,
  onBytes?: (n: number) => void,
): Promise<FrameSource & { close(): void }> {
  const file = await Deno.open(path, { read: true });
  try {
    await file.seek(start, Deno.SeekMode.Start);
  } catch (err) {
    file.close();
    throw err;
  }
  let pos = start;
  return {
    async read(into: Uint8Array): Promise<number> {
      if (signal?.aborted) throw new InterruptedError("restore interrupted");
      const want = Math.min(into.length, end - pos);
      let got = 0;
      while (got < want) {
        const n = await file.read(into.subarray(got, want));
        if (n === null || n === 0) break;
        got += n;
      }
      pos += got;
      onBytes?.(got);
      return got;
    },
    close(): void {
      try {
        file.close();
      } catch { /* already closed */ }
    },
  };
}
