/**
 * Fast decoding of one snapshot LTX file straight into a database file, for the common restore whose plan is
 * a single snapshot. Two forms:
 * - {@link decodeSnapshotFast}: sequential, over any chunk stream;
 * - {@link decodeSnapshotParallel}: a local file split in two at a frame boundary taken from its page index;
 *   the caller's thread decodes the first half while a Worker (`worker.ts`) decodes the second, each writing
 *   its own region of the output and hashing its own bytes. The file checksum is still verified over the
 *   whole file: the two CRCs are joined with {@link crc64Combine} (the "shift by n zero bytes" operator).
 *
 * Both enforce every rule of the full decoder (`LtxDecoder` + `decodeDatabaseTo`) for block-encoded
 * snapshots: header, page order 1…commit without the lock page, compressed sizes, exact decompression, end
 * marker, page index equal to the frames read, index size, file checksum, trailer, post-apply checksum. They
 * never report a problem themselves: any broken rule (and a legacy frame-encoded page) throws
 * {@link FastPathDeclined} or the LZ4 kernel's CorruptionError, and the restore starts over with the full
 * decoder, so errors read exactly as always and a fast path can never accept what the full decoder rejects.
 * Each page is decompressed and hashed in the LZ4/CRC kernel and copied once, into a 4 MiB output chunk.
 *
 * @module
 */

import { InterruptedError } from "../errors.ts";
import { Crc64, kernelBytes, pageChecksum } from "../ltx/checksum.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import { decompressBlockInKernel, lz4BlockBound } from "../ltx/lz4.ts";
import {
  CHECKSUM_FLAG,
  HEADER_FLAG_NO_CHECKSUM,
  HEADER_SIZE,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  type LtxTrailer,
  PAGE_FLAG_SIZE,
  PAGE_HEADER_SIZE,
  parseHeaderBytes,
  readUvarint,
  TRAILER_SIZE,
  trailerProblem,
} from "../ltx/types.ts";

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

/** Output chunk: large sequential writes, one allocation per 4 MiB. */
const OUT_CHUNK = 4 << 20;

/** Size of each read of a local file. */
export const LOCAL_READ = 2 << 20;

/** Exact reads over chunks: a view into the current chunk when it holds the bytes, else a copy. */
export class ChunkReader {
  readonly #iter: AsyncIterator<Uint8Array>;
  /** The current chunk; `pos` is the next unread byte in it (read directly by the hot loop). */
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
 * Reads bytes [`start`, `end`) of a local file in `bufSize` chunks, one read in flight while the consumer
 * works on the previous chunk; three buffers rotate (the consumer is done with a chunk two reads later).
 */
export async function* readRange(
  path: string,
  start: number,
  end: number,
  bufSize: number = LOCAL_READ,
): AsyncGenerator<Uint8Array> {
  const file = await Deno.open(path, { read: true });
  try {
    await file.seek(start, Deno.SeekMode.Start);
    const size = Math.max(1, Math.min(bufSize, end - start));
    const bufs = [new Uint8Array(size), new Uint8Array(size), new Uint8Array(size)];
    let turn = 0;
    let pos = start;
    const readInto = (buf: Uint8Array): Promise<{ n: number | null } | { err: unknown }> =>
      file.read(buf.subarray(0, Math.min(buf.length, end - pos))).then((n) => ({ n }), (err) => ({ err }));
    let pending = pos < end ? readInto(bufs[0]) : Promise.resolve({ n: null });
    try {
      while (true) {
        const r = await pending;
        if ("err" in r) throw r.err;
        if (r.n === null || r.n === 0) return;
        const chunk = bufs[turn].subarray(0, r.n);
        pos += r.n;
        turn = (turn + 1) % bufs.length;
        pending = pos < end ? readInto(bufs[turn]) : Promise.resolve({ n: null });
        yield chunk;
      }
    } finally {
      await pending;
    }
  } finally {
    file.close();
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
  /** Object name, for the LZ4 kernel's errors. */
  name: string;
}

/** What {@link decodeSegment} found. */
export interface SegmentResult {
  /** Page numbers, frame offsets and frame sizes of the frames read, in order. */
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
}

/**
 * Decodes frames from `r` until the end marker or the end of input, feeding `crc` and writing the
 * database pages (the first at page `spec.first`; a zeroed lock page where it falls) as chunks to `sink`.
 * Snapshot rules: each frame is exactly the next page, never the lock page nor beyond commit.
 */
export async function decodeSegment(
  r: ChunkReader,
  spec: SegmentSpec,
  crc: Crc64,
  sink: ByteSink,
): Promise<SegmentResult> {
  const { pageSize: ps, commit, checksums, name } = spec;
  const lock = lockPgno(ps);
  const bound = lz4BlockBound(ps);
  const cap = Math.max(ps, Math.floor(OUT_CHUNK / ps) * ps);
  let out = new Uint8Array(cap);
  let outLen = 0;
  const flush = async (): Promise<void> => {
    if (outLen === 0) return;
    await sink.write(outLen === out.length ? out : out.subarray(0, outLen));
    // A fresh chunk each time: the sink may still hold the last one, and a lock page relies on zeros.
    out = new Uint8Array(cap);
    outLen = 0;
  };
  const res: SegmentResult = {
    pgnos: [],
    offsets: [],
    sizes: [],
    next: spec.first,
    ended: false,
    xor: 0n,
    hashed: 0,
  };
  let next = spec.first;
  if (next === lock && lock <= commit) throw new FastPathDeclined("segment starts at the lock page");
  const kernel = kernelBytes;
  const frameHead = new Uint8Array(PAGE_HEADER_SIZE + 4);
  let xor = 0n;
  let hashed = 0;
  while (true) {
    const frameOffset = r.offset;
    let pgno: number;
    let flags: number;
    let block: Uint8Array;
    const buf = r.buf;
    const p = r.pos;
    if (buf.length - p >= PAGE_HEADER_SIZE + 4) {
      pgno = ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0;
      flags = (buf[p + 4] << 8) | buf[p + 5];
      if (pgno === 0 && flags === 0) {
        crc.update(buf.subarray(p, p + PAGE_HEADER_SIZE));
        r.skip(PAGE_HEADER_SIZE);
        res.ended = true;
        break;
      }
      if (flags !== PAGE_FLAG_SIZE) throw new FastPathDeclined("not a block-encoded page");
      const csize = ((buf[p + 6] << 24) | (buf[p + 7] << 16) | (buf[p + 8] << 8) | buf[p + 9]) >>> 0;
      if (csize === 0 || csize > bound) throw new FastPathDeclined("compressed size out of range");
      crc.update(buf.subarray(p, p + PAGE_HEADER_SIZE + 4));
      if (buf.length - p >= PAGE_HEADER_SIZE + 4 + csize) {
        // The whole frame is in this chunk (nearly every page): no await.
        block = buf.subarray(p + PAGE_HEADER_SIZE + 4, p + PAGE_HEADER_SIZE + 4 + csize);
        r.skip(PAGE_HEADER_SIZE + 4 + csize);
      } else {
        r.skip(PAGE_HEADER_SIZE + 4);
        block = await r.read(csize);
      }
    } else {
      if (await r.atEnd()) break; // end of this segment's input (the caller checks where)
      // The frame header straddles two chunks (rare): copy it out before the next read.
      frameHead.set(await r.read(PAGE_HEADER_SIZE));
      pgno = ((frameHead[0] << 24) | (frameHead[1] << 16) | (frameHead[2] << 8) | frameHead[3]) >>> 0;
      flags = (frameHead[4] << 8) | frameHead[5];
      if (pgno === 0 && flags === 0) {
        crc.update(frameHead.subarray(0, PAGE_HEADER_SIZE));
        res.ended = true;
        break;
      }
      if (flags !== PAGE_FLAG_SIZE) throw new FastPathDeclined("not a block-encoded page");
      frameHead.set(await r.read(4), PAGE_HEADER_SIZE);
      const csize = ((frameHead[6] << 24) | (frameHead[7] << 16) | (frameHead[8] << 8) | frameHead[9]) >>> 0;
      if (csize === 0 || csize > bound) throw new FastPathDeclined("compressed size out of range");
      crc.update(frameHead);
      block = await r.read(csize);
    }
    // Snapshot order: exactly the next page (never the lock page, never beyond commit).
    if (pgno !== next || pgno > commit) throw new FastPathDeclined("page out of order");
    const at = decompressBlockInKernel(block, ps, name, frameOffset + 10);
    crc.updateKernel(at, ps);
    hashed += PAGE_HEADER_SIZE + 4 + ps;
    if (outLen === out.length) await flush();
    out.set(kernel.subarray(at, at + ps), outLen);
    if (checksums) xor ^= pageChecksum(pgno, out.subarray(outLen, outLen + ps));
    outLen += ps;
    res.pgnos.push(pgno);
    res.offsets.push(frameOffset);
    res.sizes.push(r.offset - frameOffset);
    next = pgno + 1;
    if (next === lock) {
      next++;
      if (lock <= commit) {
        if (outLen === out.length) await flush();
        outLen += ps; // the lock page is zeros: the fresh chunk already is
      }
    }
  }
  if (res.ended) hashed += PAGE_HEADER_SIZE;
  await flush();
  res.next = next;
  res.xor = xor;
  res.hashed = hashed;
  return res;
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
    // Hold back the last chunk until the file verified: a sink that keeps chunks sees it only then.
    let held: Uint8Array | null = null;
    const holding: ByteSink = {
      async write(chunk: Uint8Array): Promise<void> {
        if (held) await sink.write(held);
        held = chunk;
      },
    };
    const seg = await decodeSegment(
      r,
      {
        pageSize: h.pageSize,
        commit: h.commit,
        first: lockPgno(h.pageSize) === 1 ? 2 : 1,
        checksums,
        name,
      },
      crc,
      holding,
    );
    if (!seg.ended) throw new FastPathDeclined("truncated");
    if (seg.next <= h.commit) throw new FastPathDeclined("snapshot ends before its last page");
    const rest = await r.readToEnd(seg.pgnos.length * 30 + 1 + 8 + TRAILER_SIZE);
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

/** The message a decode Worker receives. */
export interface WorkerRequest {
  /** LTX file path. */
  ltxPath: string;
  /** Output database path (opened for writing by the worker; it writes only its own pages). */
  outPath: string;
  /** Frame bytes [start, end) of the LTX file this worker decodes (the last run ends with the end marker). */
  start: number;
  /** End offset (exclusive). */
  end: number;
  /** Segment rules. */
  spec: SegmentSpec;
}

/** The message a decode Worker answers with. */
export type WorkerReply =
  | { ok: true; result: SegmentResult; crc: bigint; consumed: number }
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
  /** Sink writing the output from offset 0 (the first half's pages). */
  sink: ByteSink;
  /** Starts the decode Worker (injectable for tests). */
  spawn?: () => Worker;
  /** Aborting stops the decode with {@link InterruptedError}. */
  signal?: AbortSignal;
  /** Called with the byte count of each chunk of the file read (the Worker's half: once, at its end). */
  onBytes?: (n: number) => void;
}

/**
 * `source`, counting its bytes and stopping with {@link InterruptedError} at the first chunk after `signal`
 * aborted.
 */
async function* abortable(
  source: AsyncIterable<Uint8Array>,
  signal: AbortSignal | undefined,
  onBytes: ((n: number) => void) | undefined,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    if (signal?.aborted) throw new InterruptedError("restore interrupted");
    onBytes?.(chunk.length);
    yield chunk;
  }
}

/** The decode Worker of `worker.ts`. */
export function spawnDecodeWorker(): Worker {
  return new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
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
 * end of the file) gives a frame boundary near the middle; this thread decodes the frames before it, a
 * Worker those after it (up to the end marker), each writing its own pages of the output. Then everything
 * is checked as in the sequential path: each half's page order and exact extent, the index against the
 * frames, the file checksum (the halves' CRCs and the tail's, combined), the trailer and the post-apply
 * checksum. Writes through `sink` are complete when this resolves; the worker's writes are on disk
 * (unsynced) in the same file.
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
  const middle = (HEADER_SIZE + endMarker) / 2;
  const k = entries.findIndex((e) => e.offset >= middle);
  if (k <= 0) throw new FastPathDeclined("no split point");
  const split = entries[k];
  if (split.offset <= HEADER_SIZE || split.offset >= endMarker || split.pgno < 2) {
    throw new FastPathDeclined("bad split point");
  }

  const worker = (opts.spawn ?? spawnDecodeWorker)();
  try {
    const second = runWorker(worker, {
      ltxPath,
      outPath: opts.outPath,
      start: split.offset,
      end: endMarker + PAGE_HEADER_SIZE,
      spec: { pageSize: ps, commit: h.commit, first: split.pgno, checksums, name },
    });
    const crc = new Crc64().update(hb);
    const r = new ChunkReader(
      abortable(readRange(ltxPath, HEADER_SIZE, split.offset), opts.signal, opts.onBytes),
      HEADER_SIZE,
    );
    let a: SegmentResult;
    try {
      a = await decodeSegment(
        r,
        {
          pageSize: ps,
          commit: h.commit,
          first: lock === 1 ? 2 : 1,
          checksums,
          name,
        },
        crc,
        opts.sink,
      );
    } finally {
      await r.close();
    }
    const b = await second;
    if (!b.ok) throw new FastPathDeclined(b.declined);
    opts.onBytes?.(HEADER_SIZE + (b.consumed - split.offset) + rest.length);
    if (a.ended || r.offset !== split.offset || a.next !== split.pgno) {
      throw new FastPathDeclined("first half does not end at the split");
    }
    if (!b.result.ended || b.consumed !== endMarker + PAGE_HEADER_SIZE) {
      throw new FastPathDeclined("second half does not end at the end marker");
    }
    if (b.result.next <= h.commit) throw new FastPathDeclined("snapshot ends before its last page");
    const frames = {
      pgnos: a.pgnos.concat(b.result.pgnos),
      offsets: a.offsets.concat(b.result.offsets),
      sizes: a.sizes.concat(b.result.sizes),
    };
    const crcPages = crc64Combine(crc.digest(), b.crc, b.result.hashed);
    checkTail(
      h,
      rest,
      frames,
      (covered) => crc64Combine(crcPages, new Crc64().update(covered).digest(), covered.length),
      CHECKSUM_FLAG | (a.xor ^ b.result.xor),
    );
    return h;
  } finally {
    worker.terminate();
  }
}
