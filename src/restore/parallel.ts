/**
 * Fast decoding of one snapshot LTX file straight into a database file, for the common restore whose plan is
 * a single snapshot. Two forms:
 * - {@link decodeSnapshotFast}: sequential, over any chunk stream;
 * - {@link decodeSnapshotParallel}: a local file cut into segments of ~16 MiB at frame boundaries taken from
 *   its page index; the caller's thread claims segments from the start of the file while a Worker
 *   (`worker.ts`) claims them from the end, each writing its own region of the output and hashing its own
 *   bytes, so the faster thread does more and neither waits for the other. The file checksum is still
 *   verified over the whole file: the segments' CRCs are joined with {@link crc64Combine} (the "shift by n
 *   zero bytes" operator).
 *
 * Both enforce every rule of the full decoder (`LtxDecoder` + `decodeDatabaseTo`) for block-encoded
 * snapshots: header, page order 1…commit without the lock page, compressed sizes, exact decompression, end
 * marker, page index equal to the frames read, index size, file checksum, trailer, post-apply checksum. They
 * never report a problem themselves: any broken rule (and a legacy frame-encoded page) throws
 * {@link FastPathDeclined}, and the restore starts over with the full decoder, so errors read exactly as
 * always and a fast path can never accept what the full decoder rejects. The frames themselves are decoded
 * by `segment.ts` (the per-page loop in WebAssembly, pages written from its memory without a copy).
 *
 * @module
 */

import { Crc64 } from "../ltx/checksum.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import {
  CHECKSUM_FLAG,
  HEADER_FLAG_NO_CHECKSUM,
  HEADER_SIZE,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  type LtxTrailer,
  PAGE_HEADER_SIZE,
  parseHeaderBytes,
  readUvarint,
  TRAILER_SIZE,
  trailerProblem,
} from "../ltx/types.ts";
import {
  FastPathDeclined,
  fileRangeSource,
  type FrameSource,
  type ReleasingSink,
  SegmentDecoder,
  type SegmentResult,
  type SegmentSpec,
} from "./segment.ts";
import { DECODE_WORKER_NAME, decodeWorkerEntry, decodeWorkerFile } from "./worker_entry.ts";

/** Exact reads over chunks: a view into the current chunk when it holds the bytes, else a copy. */
export class ChunkReader {
  readonly #iter: AsyncIterator<Uint8Array>;
  /** The current chunk; `pos` is the next unread byte in it. */
  buf: Uint8Array = new Uint8Array(0);
  /** Next unread byte of {@link buf}. */
  pos = 0;
  /** Absolute offset of the next unread byte. */
  offset: number;

  /** Reads `source`, whose first byte is at absolute offset `start`. */
  constructor(source: AsyncIterable<Uint8Array>, start = 0) {
    this.#iter = source[Symbol.asyncIterator]();
    this.offset = start;
  }

  async #fill(): Promise<boolean> {
    while (true) {
      const r = await this.#iter.next();
      if (r.done) return false;
      if (r.value.length > 0) {
        this.buf = r.value;
        this.pos = 0;
        return true;
      }
    }
  }

  /** Consumes `n` bytes of the current chunk (the caller checked they are there). */
  skip(n: number): void {
    this.pos += n;
    this.offset += n;
  }

  /** Exactly `n` bytes, consumed; use them before the next read. Declines when the input ends first. */
  async read(n: number): Promise<Uint8Array> {
    if (this.buf.length - this.pos >= n) {
      const v = this.buf.subarray(this.pos, this.pos + n);
      this.skip(n);
      return v;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.pos >= this.buf.length && !(await this.#fill())) throw new FastPathDeclined("truncated");
      const take = Math.min(n - got, this.buf.length - this.pos);
      out.set(this.buf.subarray(this.pos, this.pos + take), got);
      this.pos += take;
      got += take;
    }
    this.offset += n;
    return out;
  }

  /** Whether the input has no more bytes. */
  async atEnd(): Promise<boolean> {
    return this.pos >= this.buf.length && !(await this.#fill());
  }

  /** The rest of the input (a copy); declines when it exceeds `limit` bytes. */
  async readToEnd(limit: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    do {
      const part = this.buf.subarray(this.pos);
      total += part.length;
      if (total > limit) throw new FastPathDeclined("too many bytes after the pages");
      parts.push(part.slice());
      this.skip(part.length);
    } while (await this.#fill());
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /** Releases the source. */
  async close(): Promise<void> {
    try {
      await this.#iter.return?.();
    } catch { /* abandoned anyway */ }
  }
}

/**
 * Checks the bytes after the end marker (`rest`: page index, index size, trailer) against the frames read,
 * exactly as `LtxDecoder` does, and returns the trailer. `fileCrc(prefix)` gives the CRC of the whole file up
 * to and including `prefix` (the bytes of `rest` the checksum covers).
 */
export function checkTail(
  h: LtxHeader,
  rest: Uint8Array,
  frames: { pgnos: number[]; offsets: number[]; sizes: number[] },
  fileCrc: (covered: Uint8Array) => bigint,
  dbsum: bigint,
): LtxTrailer {
  const n = frames.pgnos.length;
  if (rest.length < 1 + 8 + TRAILER_SIZE) throw new FastPathDeclined("truncated after the pages");
  if (rest.length > n * 30 + 1 + 8 + TRAILER_SIZE) {
    throw new FastPathDeclined("too many bytes after the pages");
  }
  const view = new DataView(rest.buffer, rest.byteOffset, rest.length);
  const sizeAt = rest.length - TRAILER_SIZE - 8;
  if (view.getBigUint64(sizeAt) !== BigInt(sizeAt)) throw new FastPathDeclined("index size");
  let q = 0;
  for (let i = 0; i < n; i++) {
    const a = readUvarint(rest, q);
    const b = a && a.next <= sizeAt ? readUvarint(rest, a.next) : null;
    const c = b && b.next <= sizeAt ? readUvarint(rest, b.next) : null;
    if (!a || !b || !c || c.next > sizeAt) throw new FastPathDeclined("malformed index entry");
    if (a.value !== frames.pgnos[i] || b.value !== frames.offsets[i] || c.value !== frames.sizes[i]) {
      throw new FastPathDeclined("index entry differs from the frame");
    }
    q = c.next;
  }
  if (q >= sizeAt || rest[q] !== 0 || q + 1 !== sizeAt) throw new FastPathDeclined("index terminator");
  const trailer: LtxTrailer = {
    postApplyChecksum: view.getBigUint64(rest.length - 16),
    fileChecksum: view.getBigUint64(rest.length - 8),
  };
  if (trailer.fileChecksum !== (CHECKSUM_FLAG | fileCrc(rest.subarray(0, rest.length - 8)))) {
    throw new FastPathDeclined("file checksum");
  }
  if (trailerProblem(h, trailer) !== null) throw new FastPathDeclined("trailer");
  const checksums = (h.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
  if (checksums && trailer.postApplyChecksum !== dbsum) throw new FastPathDeclined("post-apply checksum");
  return trailer;
}

/** Parses and checks a snapshot header (declines otherwise). */
function snapshotHeader(hb: Uint8Array): LtxHeader {
  const parsed = parseHeaderBytes(hb);
  if (!parsed.ok) throw new FastPathDeclined(parsed.problem);
  if (!isSnapshot(parsed.header)) throw new FastPathDeclined("not a snapshot");
  return parsed.header;
}

/** The rest of a {@link ChunkReader}'s input as a {@link FrameSource} (each read copies one chunk's bytes). */
function readerSource(r: ChunkReader): FrameSource {
  return {
    async read(into: Uint8Array): Promise<number> {
      if (await r.atEnd()) return 0;
      const n = Math.min(into.length, r.buf.length - r.pos);
      into.set(r.buf.subarray(r.pos, r.pos + n));
      r.skip(n);
      return n;
    },
  };
}

/**
 * Decodes a snapshot LTX file streamed from `source` into `sink` (sequentially). `checkHeader` checks the
 * header against the object's name. The last chunk is written only after the whole file verified.
 */
export async function decodeSnapshotFast(
  source: AsyncIterable<Uint8Array>,
  name: string,
  checkHeader: (h: LtxHeader) => void,
  sink: ByteSink,
): Promise<LtxHeader> {
  const r = new ChunkReader(source);
  try {
    const hb = await r.read(HEADER_SIZE);
    const h = snapshotHeader(hb);
    checkHeader(h);
    const crc = new Crc64().update(hb);
    const checksums = (h.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
    // Hold back the last chunk until the file verified: a sink that keeps chunks sees it only then. It
    // releases what it is lent when the sink below does.
    let held: Uint8Array | null = null;
    const holding: ByteSink = {
      async write(chunk: Uint8Array): Promise<void> {
        if (held) await sink.write(held);
        held = chunk;
      },
    };
    if ((sink as Partial<ReleasingSink>).releasesChunks === true) {
      Object.assign(holding, { releasesChunks: true });
    }
    const seg = await new SegmentDecoder().decode(
      readerSource(r),
      HEADER_SIZE,
      {
        pageSize: h.pageSize,
        commit: h.commit,
        first: lockPgno(h.pageSize) === 1 ? 2 : 1,
        checksums,
        name,
      },
      crc,
      null,
      holding,
    );
    if (!seg.ended) throw new FastPathDeclined("truncated");
    if (seg.next <= h.commit) throw new FastPathDeclined("snapshot ends before its last page");
    const limit = seg.pgnos.length * 30 + 1 + 8 + TRAILER_SIZE;
    if (seg.leftover.length > limit) throw new FastPathDeclined("too many bytes after the pages");
    const tail = await r.readToEnd(limit - seg.leftover.length);
    const rest = new Uint8Array(seg.leftover.length + tail.length);
    rest.set(seg.leftover);
    rest.set(tail, seg.leftover.length);
    checkTail(h, rest, seg, (covered) => crc.update(covered).digest(), CHECKSUM_FLAG | seg.xor);
    if (held) await sink.write(held);
    return h;
  } finally {
    await r.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// CRC-64 combination

// Reflected ISO polynomial (x^64 + x^4 + x^3 + x + 1).
const POLY = 0xd800000000000000n;

function gf2Times(mat: bigint[], vec: bigint): bigint {
  let sum = 0n;
  for (let i = 0; vec !== 0n; i++, vec >>= 1n) {
    if (vec & 1n) sum ^= mat[i];
  }
  return sum;
}

function gf2Square(mat: bigint[]): bigint[] {
  return mat.map((row) => gf2Times(mat, row));
}

/** Operators for 2^k zero bytes, k = 0, 1, …: built once, on first use. */
const zeroBytePowers: bigint[][] = [];

function zeroBytesOperator(k: number): bigint[] {
  if (zeroBytePowers.length === 0) {
    // One zero bit: the register shifts right, the polynomial enters when the low bit falls out.
    let op: bigint[] = [POLY];
    for (let i = 1; i < 64; i++) op.push(1n << BigInt(i - 1));
    for (let i = 0; i < 3; i++) op = gf2Square(op); // 8 bits
    zeroBytePowers.push(op);
  }
  while (zeroBytePowers.length <= k) {
    zeroBytePowers.push(gf2Square(zeroBytePowers[zeroBytePowers.length - 1]));
  }
  return zeroBytePowers[k];
}

/**
 * The CRC-64/GO-ISO of `A ‖ B` from `crcA` = crc64(A), `crcB` = crc64(B) and `lenB` = |B| (zlib's
 * crc32_combine for this polynomial): init and final XOR (all ones) cancel, leaving crcA advanced over
 * `lenB` zero bytes, XOR crcB.
 */
export function crc64Combine(crcA: bigint, crcB: bigint, lenB: number): bigint {
  let c = crcA;
  let n = lenB;
  for (let k = 0; n > 0; k++) {
    if (n % 2 === 1) c = gf2Times(zeroBytesOperator(k), c);
    n = Math.floor(n / 2);
  }
  return c ^ crcB;
}

// ---------------------------------------------------------------------------------------------------------
// Parallel decode of a local snapshot

/** Smallest local snapshot worth a Worker (its start-up costs ~50–100 ms of a busy second core). */
export const PARALLEL_MIN_BYTES = 48 << 20;

/** Default size of the runs of frames the two threads take turns to claim. */
export const SEGMENT_BYTES = 16 << 20;

/** One run of frames: bytes [start, end) of the LTX file, whose first frame is page `first`. */
export interface Segment {
  /** Offset of its first frame. */
  start: number;
  /** End offset (exclusive); the last segment ends after the end marker. */
  end: number;
  /** Page number of its first frame. */
  first: number;
}

/**
 * Claims the next unclaimed segment from the bottom (this thread: 0, 1, 2, …) or the top (the Worker: n−1,
 * n−2, …) of the shared counter pair `state[0]` = `lo | hi << 16` (segments lo…hi−1 are unclaimed); −1
 * when none is left. One compare-and-swap per claim, so each segment goes to exactly one thread, and the
 * bottom thread's segments are always a prefix of the file (it writes them through one sequential sink).
 */
export function claimSegment(state: Int32Array, fromTop: boolean): number {
  while (true) {
    const s = Atomics.load(state, 0);
    const lo = s & 0xffff;
    const hi = s >>> 16;
    if (lo >= hi) return -1;
    const next = fromTop ? lo | ((hi - 1) << 16) : (lo + 1) | (hi << 16);
    if (Atomics.compareExchange(state, 0, s, next) === s) return fromTop ? hi - 1 : lo;
  }
}

/** A counter pair for {@link claimSegment} with segments 0…n−1 unclaimed (n < 65536). */
export function segmentClaims(n: number): Int32Array {
  if (!Number.isInteger(n) || n < 1 || n > 0xffff) throw new RangeError(`segment count ${n}`);
  const state = new Int32Array(new SharedArrayBuffer(4));
  state[0] = n << 16;
  return state;
}

/** The message a decode Worker receives. */
export interface WorkerRequest {
  /** LTX file path. */
  ltxPath: string;
  /** Output database path (opened for writing by the worker; it writes only its own pages). */
  outPath: string;
  /** Every segment of the file, in order. */
  segments: Segment[];
  /** The claim counters shared with the main thread ({@link claimSegment}, from the top). */
  claims: Int32Array;
  /** Segment rules (`first` is taken from each segment). */
  spec: SegmentSpec;
  /** Also return each segment's CRC-64 over its raw bytes (checked against a recorded digest). */
  rawCrc: boolean;
}

/** One segment the Worker decoded. */
export interface WorkerPart {
  /** Index into the request's segments. */
  index: number;
  /** What the segment held. */
  result: SegmentResult;
  /** CRC-64 of the segment's hashed bytes (from a fresh CRC). */
  crc: bigint;
  /** Offset where its input ended. */
  consumed: number;
  /** CRC-64 of the segment's raw bytes (when asked for). */
  raw?: bigint;
}

/** The message a decode Worker answers with: the segments it claimed and decoded, in any order. */
export type WorkerReply =
  | { ok: true; parts: WorkerPart[] }
  | { ok: false; declined: string };

/** Reads `n` bytes at `offset` of an open file (fewer only at end of file). */
async function readAt(f: Deno.FsFile, offset: number, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  await f.seek(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < n) {
    const k = await f.read(buf.subarray(got));
    if (k === null || k === 0) break;
    got += k;
  }
  return buf.subarray(0, got);
}

/** What {@link decodeSnapshotParallel} needs from its caller. */
export interface ParallelOptions {
  /** The LTX file. */
  ltxPath: string;
  /** Its name for errors. */
  name: string;
  /** The output file path (already created, empty); the worker opens it to write its pages. */
  outPath: string;
  /** Checks the header against the object's name (throws). */
  checkHeader: (h: LtxHeader) => void;
  /** Sink writing the output from offset 0 (this thread's pages: a prefix of the database). */
  sink: ByteSink;
  /** Starts the decode Worker (injectable for tests). */
  spawn?: () => Worker;
  /** Aborting stops the decode with an InterruptedError. */
  signal?: AbortSignal;
  /** Called with the byte count of each chunk of the file read (the Worker's part: once, at its end). */
  onBytes?: (n: number) => void;
  /** Target size of a segment ({@link SEGMENT_BYTES}; tests use small ones). */
  segmentBytes?: number;
  /**
   * Told how many segments each thread decoded, and why the Worker failed if it did (for the debug log and
   * tests).
   */
  onSegments?: (mine: number, theirs: number, workerProblem?: string) => void;
  /**
   * The CRC-64 recorded for the file's raw bytes (a directory replica's sidecar): each thread folds it over
   * the bytes of its own segments as it reads them, and a different result declines the fast path (the
   * sequential path then reports the mismatch with the recorded SHA-256).
   */
  crc64?: bigint;
}

/**
 * The decode Worker of `worker.ts` (from source or a compiled executable; a bundle starts itself). Declines
 * when the process may not read the Worker's module (scoped `--allow-read`): Deno would print the failed
 * start on stderr, and one thread restores just as correctly.
 */
export function spawnDecodeWorker(): Worker {
  const entry = decodeWorkerEntry(import.meta.url);
  const path = decodeWorkerFile(entry);
  if (path !== null && Deno.permissions.querySync({ name: "read", path }).state !== "granted") {
    throw new FastPathDeclined(`the decode Worker needs read access to ${path}`);
  }
  return new Worker(entry, { type: "module", name: DECODE_WORKER_NAME });
}

/** Runs one request on a Worker; declines when the worker cannot start or fails. */
function runWorker(w: Worker, req: WorkerRequest): Promise<WorkerReply> {
  return new Promise((resolve) => {
    w.onmessage = (e: MessageEvent<WorkerReply>) => resolve(e.data);
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      resolve({ ok: false, declined: `worker failed: ${e.message}` });
    };
    w.onmessageerror = () => resolve({ ok: false, declined: "worker reply unreadable" });
    w.postMessage(req);
  });
}

/**
 * Decodes a local snapshot LTX file into the output with two threads. The page index (read first, from the
 * end of the file) gives frame boundaries for segments ({@link splitSegments}); this thread claims them from
 * the bottom, a Worker from the top ({@link claimSegment}), each writing its own pages of the output. Then
 * everything is checked as in the sequential path: each segment's page order and exact extent, the index
 * against the frames, the file checksum (the segments' CRCs and the tail's, combined), the trailer and the
 * post-apply checksum. Writes through `sink` are complete when this resolves; the worker's writes are on
 * disk (unsynced) in the same file.
 */
export async function decodeSnapshotParallel(opts: ParallelOptions): Promise<LtxHeader> {
  const { ltxPath, name } = opts;
  const f = await Deno.open(ltxPath, { read: true });
  let hb: Uint8Array;
  let rest: Uint8Array;
  let endMarker: number;
  let entries: { pgno: number; offset: number }[];
  try {
    const size = (await f.stat()).size;
    hb = await readAt(f, 0, HEADER_SIZE);
    if (hb.length < HEADER_SIZE || size < HEADER_SIZE + PAGE_HEADER_SIZE + 1 + 8 + TRAILER_SIZE) {
      throw new FastPathDeclined("too short");
    }
    const h0 = snapshotHeader(hb);
    const sizeField = await readAt(f, size - TRAILER_SIZE - 8, 8);
    const indexSize = Number(new DataView(sizeField.buffer, sizeField.byteOffset, 8).getBigUint64(0));
    const maxIndex = h0.commit * 30 + 1;
    if (!Number.isSafeInteger(indexSize) || indexSize < 1 || indexSize > maxIndex) {
      throw new FastPathDeclined("index size");
    }
    const restStart = size - TRAILER_SIZE - 8 - indexSize;
    endMarker = restStart - PAGE_HEADER_SIZE;
    if (endMarker < HEADER_SIZE) throw new FastPathDeclined("index size");
    rest = await readAt(f, restStart, size - restStart);
    // The index, only to choose the split; checkTail validates it against the frames afterwards.
    entries = [];
    let q = 0;
    while (q < indexSize && rest[q] !== 0) {
      const a = readUvarint(rest, q);
      const b = a ? readUvarint(rest, a.next) : null;
      const c = b ? readUvarint(rest, b.next) : null;
      if (!a || !b || !c) throw new FastPathDeclined("malformed index entry");
      entries.push({ pgno: a.value, offset: b.value });
      q = c.next;
    }
  } finally {
    f.close();
  }
  const h = snapshotHeader(hb);
  opts.checkHeader(h);
  const ps = h.pageSize;
  const lock = lockPgno(ps);
  const checksums = (h.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
  const segments = splitSegments(entries, endMarker, lock === 1 ? 2 : 1, opts.segmentBytes ?? SEGMENT_BYTES);
  const claims = segmentClaims(segments.length);
  const rawCheck = opts.crc64 !== undefined;
  const worker = (opts.spawn ?? spawnDecodeWorker)();
  try {
    const spec = { pageSize: ps, commit: h.commit, first: 0, checksums, name };
    const second = runWorker(worker, {
      ltxPath,
      outPath: opts.outPath,
      segments,
      claims,
      spec,
      rawCrc: rawCheck,
    });
    let workerProblem: string | undefined;
    void second.then((b) => {
      if (!b.ok) workerProblem = b.declined;
    });
    // This thread takes segments from the bottom, the Worker from the top, until they meet: whichever is
    // faster (the Worker needs ~50–100 ms to start) decodes more. This thread's segments are a prefix of
    // the file, so one CRC runs over them in order and the sink writes sequentially.
    const crc = new Crc64().update(hb);
    const raw = new Crc64().update(hb);
    const mine: SegmentResult[] = [];
    const decoder = new SegmentDecoder();
    for (let i = claimSegment(claims, false); i >= 0; i = claimSegment(claims, false)) {
      const seg = segments[i];
      const source = await fileRangeSource(ltxPath, seg.start, seg.end, opts.signal, opts.onBytes);
      try {
        const res = await decoder.decode(
          source,
          seg.start,
          { ...spec, first: seg.first },
          crc,
          rawCheck ? raw : null,
          opts.sink,
        );
        checkSegmentEnd(segments, i, res, res.consumed, h.commit);
        mine.push(res);
      } finally {
        source.close();
      }
    }
    // Nothing claimed from the top: the Worker has nothing to report (and may not even have started).
    const theirs = Atomics.load(claims, 0) >>> 16 === segments.length ? [] : await second.then((b) => {
      if (!b.ok) throw new FastPathDeclined(b.declined);
      return b.parts;
    });
    theirs.sort((x, y) => x.index - y.index);
    if (mine.length + theirs.length !== segments.length) throw new FastPathDeclined("segments missing");
    let fileCrc = crc.digest();
    let rawCrc = raw.digest();
    let xor = mine.reduce((x, m) => x ^ m.xor, 0n);
    let workerBytes = 0;
    const results = [...mine];
    theirs.forEach((part, k) => {
      const i = mine.length + k;
      if (part.index !== i) throw new FastPathDeclined("segments out of order");
      checkSegmentEnd(segments, i, part.result, part.consumed, h.commit);
      fileCrc = crc64Combine(fileCrc, part.crc, part.result.hashed);
      if (rawCheck) {
        if (part.raw === undefined) throw new FastPathDeclined("segment without its raw CRC");
        rawCrc = crc64Combine(rawCrc, part.raw, segments[i].end - segments[i].start);
      }
      xor ^= part.result.xor;
      workerBytes += segments[i].end - segments[i].start;
      results.push(part.result);
    });
    opts.onBytes?.(HEADER_SIZE + workerBytes + rest.length);
    opts.onSegments?.(mine.length, theirs.length, workerProblem);
    const frames = {
      pgnos: results.flatMap((x) => x.pgnos),
      offsets: results.flatMap((x) => x.offsets),
      sizes: results.flatMap((x) => x.sizes),
    };
    const crcPages = fileCrc;
    checkTail(
      h,
      rest,
      frames,
      (covered) => crc64Combine(crcPages, new Crc64().update(covered).digest(), covered.length),
      CHECKSUM_FLAG | xor,
    );
    if (rawCheck && crc64Combine(rawCrc, new Crc64().update(rest).digest(), rest.length) !== opts.crc64) {
      throw new FastPathDeclined("the file's CRC-64 differs from its recorded digest");
    }
    return h;
  } finally {
    worker.terminate();
  }
}

/**
 * Cuts the frames [HEADER_SIZE, end marker] into segments of about `target` bytes at frame boundaries taken
 * from the page index (which is untrusted here: each boundary must lie strictly inside the frames and after
 * the previous one; the decoders then check every frame against it and the index against the frames).
 */
export function splitSegments(
  entries: { pgno: number; offset: number }[],
  endMarker: number,
  firstPgno: number,
  target: number,
): Segment[] {
  const span = endMarker - HEADER_SIZE;
  const size = Math.max(target, Math.ceil(span / 0xfff0), 1);
  const starts: { start: number; first: number }[] = [{ start: HEADER_SIZE, first: firstPgno }];
  let want = HEADER_SIZE + size;
  for (const e of entries) {
    if (e.offset < want) continue;
    if (e.offset >= endMarker) break;
    if (e.offset <= starts[starts.length - 1].start || e.pgno < 2) {
      throw new FastPathDeclined("bad split point");
    }
    starts.push({ start: e.offset, first: e.pgno });
    want = e.offset + size;
  }
  return starts.map((x, i) => ({
    start: x.start,
    end: i + 1 < starts.length ? starts[i + 1].start : endMarker + PAGE_HEADER_SIZE,
    first: x.first,
  }));
}

/** Checks that segment `i` ended exactly where the next begins (the last: after the end marker). */
function checkSegmentEnd(
  segments: Segment[],
  i: number,
  res: SegmentResult,
  consumed: number,
  commit: number,
) {
  const seg = segments[i];
  if (consumed !== seg.end) throw new FastPathDeclined(`segment ${i} does not end at its boundary`);
  if (i + 1 < segments.length) {
    if (res.ended || res.next !== segments[i + 1].first) {
      throw new FastPathDeclined(`segment ${i} does not continue into segment ${i + 1}`);
    }
  } else {
    if (!res.ended) throw new FastPathDeclined("last segment does not end with the end marker");
    if (res.next <= commit) throw new FastPathDeclined("snapshot ends before its last page");
  }
}
