/**
 * Streaming LTX v3 encoder, writing files the way Litestream v0.5.16+ does: page flags 0x0001 (u32 BE
 * compressed size + raw LZ4 block), the uvarint page index, and the trailer with the CRC-64/GO-ISO file
 * checksum over the *decompressed* pages. The header is written as given (walrust passes flags NoChecksum
 * with zero pre/post-apply checksums, as Litestream does); files with database checksums can be written too.
 *
 * Output is batched into chunks of up to ~1 MB before reaching the sink; a block page is compressed straight
 * into the chunk (`compressBlockInto`, no intermediate copy) and hashed by the CRC kernel of `checksum.ts`,
 * so encoding costs little more than lz4-wasm's compression itself. The encoder enforces the rules of
 * Go ltx `Encoder.EncodePage`; breaking them is a caller bug and throws `RangeError` (exit code 1), not a
 * corruption error.
 *
 * @module
 */

import { Crc64, pageChecksum } from "./checksum.ts";
import { compressBlock, compressBlockInto, LZ4_FRAME_MAGIC, lz4BlockBound, xxh32 } from "./lz4.ts";
import {
  CHECKSUM_FLAG,
  encodeHeader,
  HEADER_FLAG_NO_CHECKSUM,
  headerProblem,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  type LtxTrailer,
  PAGE_FLAG_SIZE,
  PAGE_HEADER_SIZE,
  putUvarint,
  TRAILER_SIZE,
  trailerProblem,
  uvarintSize,
} from "./types.ts";

/** Where encoded bytes go. `write` may keep the chunk: the encoder never reuses a chunk it handed over. */
export interface ByteSink {
  /** Writes one chunk; resolves when the sink accepted it (backpressure). */
  write(chunk: Uint8Array): Promise<void>;
}

/** Page encodings the encoder can write. */
export type PageEncoding = "block" | "frame";

/** Options of {@link LtxEncoder} beyond the contract. */
export interface LtxEncoderOptions {
  /**
   * `"block"` (default): flags 0x0001, readable by ltx ≥ v0.5.2 (Litestream ≥ v0.5.16). `"frame"`: flags 0,
   * one LZ4 frame per page (content checksum on, stored block when incompressible), the encoding of
   * ltx v0.5.0/v0.5.1 (Litestream v0.5.0–v0.5.15); used by tests and for maximum compatibility.
   */
  pageEncoding?: PageEncoding;
  /** Largest chunk handed to the sink (default 1 MiB). */
  chunkSize?: number;
}

const DEFAULT_CHUNK = 1 << 20;
const RESOLVED: Promise<void> = Promise.resolve();
const INITIAL_CHUNK = 64 * 1024;

/**
 * Streaming encoder: construct with the header, call `encodePage` in the required order, then `finish`.
 * Holds one output chunk plus the page index in memory.
 */
export class LtxEncoder {
  #sink: ByteSink;
  #header: LtxHeader;
  #crc = new Crc64();
  #chunkSize: number;
  #buf: Uint8Array;
  #len = 0;
  #total = 0; // bytes encoded (handed over + buffered)
  #frame: boolean;
  #lock: number;
  #bound: number; // LZ4 bound of a page: room a block may need
  #snapshot: boolean;
  #checksums: boolean;
  #dbsum = CHECKSUM_FLAG;
  #prev = 0;
  #pgnos: number[] = [];
  #offsets: number[] = [];
  #sizes: number[] = [];
  #state: "pages" | "finishing" | "done" | "failed" = "pages";

  /** Starts a file with `header` (validated; RangeError if invalid). Nothing is written until a chunk fills. */
  constructor(sink: ByteSink, header: LtxHeader, options: LtxEncoderOptions = {}) {
    const problem = headerProblem(header);
    if (problem !== null) throw new RangeError(`LTX encoder: invalid header: ${problem}`);
    this.#sink = sink;
    this.#header = { ...header };
    this.#chunkSize = Math.max(options.chunkSize ?? DEFAULT_CHUNK, 4096);
    this.#frame = options.pageEncoding === "frame";
    this.#lock = lockPgno(header.pageSize);
    this.#bound = lz4BlockBound(header.pageSize);
    this.#snapshot = isSnapshot(header);
    this.#checksums = (header.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
    this.#buf = new Uint8Array(Math.min(INITIAL_CHUNK, this.#chunkSize));
    const hb = encodeHeader(header);
    this.#crc.update(hb);
    this.#append(hb);
  }

  /** Bytes encoded so far (after `finish()` resolves: the file size, all of it handed to the sink). */
  get bytesWritten(): number {
    return this.#total;
  }

  /** Pages encoded so far. */
  get pageCount(): number {
    return this.#pgnos.length;
  }

  /** Room for `n` more bytes in the current chunk: grows small chunks, flushes full ones. */
  async #ensure(n: number): Promise<void> {
    if (this.#len + n <= this.#buf.length) return;
    if (this.#buf.length < this.#chunkSize) {
      let cap = this.#buf.length * 2;
      while (cap < this.#len + n && cap < this.#chunkSize) cap *= 2;
      cap = Math.min(cap, this.#chunkSize);
      if (this.#len + n <= cap) {
        const next = new Uint8Array(cap);
        next.set(this.#buf.subarray(0, this.#len));
        this.#buf = next;
        return;
      }
    }
    await this.#flush();
    if (n > this.#buf.length) this.#buf = new Uint8Array(Math.max(n, this.#chunkSize));
  }

  async #flush(): Promise<void> {
    if (this.#len === 0) return;
    const chunk = this.#buf.subarray(0, this.#len);
    // The sink may keep `chunk`, so the next bytes go to a new buffer.
    this.#buf = new Uint8Array(this.#chunkSize);
    this.#len = 0;
    await this.#sink.write(chunk);
  }

  /** Appends without flushing (the caller ensured room, or this is the constructor's header). */
  #append(b: Uint8Array): void {
    if (this.#len + b.length > this.#buf.length) {
      const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + b.length));
      next.set(this.#buf.subarray(0, this.#len));
      this.#buf = next;
    }
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    this.#total += b.length;
  }

  #checkPage(pgno: number, data: Uint8Array): void {
    const h = this.#header;
    if (this.#state !== "pages") {
      throw new RangeError(`LTX encoder: encodePage after finish (${this.#state})`);
    }
    if (!Number.isInteger(pgno) || pgno < 1 || pgno > 0xffffffff) {
      throw new RangeError(`LTX encoder: invalid page number ${pgno}`);
    }
    if (data.length !== h.pageSize) {
      throw new RangeError(`LTX encoder: page ${pgno} has ${data.length} bytes, expected ${h.pageSize}`);
    }
    if (pgno > h.commit) throw new RangeError(`LTX encoder: page ${pgno} is beyond commit ${h.commit}`);
    if (pgno === this.#lock) throw new RangeError(`LTX encoder: page ${pgno} is the lock page`);
    if (this.#snapshot) {
      const expected = this.#prev + 1 === this.#lock ? this.#prev + 2 : this.#prev + 1;
      if (pgno !== expected) {
        throw new RangeError(`LTX encoder: snapshot page ${pgno} out of order, expected ${expected}`);
      }
    } else if (pgno <= this.#prev) {
      throw new RangeError(`LTX encoder: page ${pgno} out of order after page ${this.#prev}`);
    }
  }

  /**
   * Encodes one page. Pages must be ascending; a snapshot must hold every page 1…commit except the lock page.
   * Resolves at once unless a full chunk had to be handed to the sink.
   */
  encodePage(pgno: number, data: Uint8Array): Promise<void> {
    try {
      this.#checkPage(pgno, data);
    } catch (err) {
      return Promise.reject(err); // a rejected page leaves the encoder usable
    }
    try {
      const at = this.#len;
      if (!this.#frame && at + PAGE_HEADER_SIZE + 4 + this.#bound <= this.#buf.length) {
        // Common case: compress straight into the chunk, behind the page header and size field.
        const n = compressBlockInto(data, this.#buf, at + PAGE_HEADER_SIZE + 4);
        this.#commit(pgno, data, n, PAGE_HEADER_SIZE + 4 + n);
        return RESOLVED;
      }
      const payload = this.#frame ? encodeFramePayload(data) : compressBlock(data);
      const size = PAGE_HEADER_SIZE + (this.#frame ? 0 : 4) + payload.length;
      if (this.#len + size <= this.#buf.length) {
        this.#put(pgno, data, payload, size);
        return RESOLVED;
      }
      return this.#encodeAfterFlush(pgno, data, payload, size);
    } catch (err) {
      this.#state = "failed";
      return Promise.reject(err);
    }
  }

  async #encodeAfterFlush(pgno: number, data: Uint8Array, payload: Uint8Array, size: number): Promise<void> {
    try {
      await this.#ensure(size);
      this.#put(pgno, data, payload, size);
    } catch (err) {
      this.#state = "failed";
      throw err;
    }
  }

  /** Writes one frame into the current chunk (room was ensured) and records it. */
  #put(pgno: number, data: Uint8Array, payload: Uint8Array, size: number): void {
    this.#buf.set(payload, this.#len + PAGE_HEADER_SIZE + (this.#frame ? 0 : 4));
    this.#commit(pgno, data, payload.length, size);
  }

  /**
   * Completes the frame whose payload (`payloadLength` bytes) is already in the chunk behind room for its
   * page header: writes the header (and size field), hashes, and records the frame of `size` bytes.
   */
  #commit(pgno: number, data: Uint8Array, payloadLength: number, size: number): void {
    const offset = this.#total;
    const extra = this.#frame ? 0 : 4;
    const b = this.#buf;
    const p = this.#len;
    b[p] = pgno >>> 24;
    b[p + 1] = pgno >>> 16;
    b[p + 2] = pgno >>> 8;
    b[p + 3] = pgno;
    b[p + 4] = 0;
    b[p + 5] = this.#frame ? 0 : PAGE_FLAG_SIZE;
    if (!this.#frame) {
      const n = payloadLength;
      b[p + 6] = n >>> 24;
      b[p + 7] = n >>> 16;
      b[p + 8] = n >>> 8;
      b[p + 9] = n;
    }
    // File checksum: page header (+ size field), then the decompressed page; frame bytes are not hashed.
    this.#crc.update(b.subarray(p, p + PAGE_HEADER_SIZE + extra));
    this.#crc.update(data);
    this.#len += size;
    this.#total += size;
    if (this.#snapshot && this.#checksums) {
      this.#dbsum = CHECKSUM_FLAG | (this.#dbsum ^ pageChecksum(pgno, data));
    }
    this.#prev = pgno;
    this.#pgnos.push(pgno);
    this.#offsets.push(offset);
    this.#sizes.push(size);
  }

  /**
   * Writes the end-of-pages marker, the page index, the trailer, and hands every remaining byte to the sink.
   * `postApplyChecksum` defaults to 0 for NoChecksum files and to the computed database checksum for
   * checksummed snapshots; checksummed incremental files must pass it.
   */
  async finish(postApplyChecksum?: bigint): Promise<LtxTrailer> {
    if (this.#state !== "pages") throw new RangeError(`LTX encoder: finish called twice (${this.#state})`);
    const h = this.#header;
    let post: bigint;
    if (postApplyChecksum !== undefined) post = postApplyChecksum;
    else if (!this.#checksums) post = 0n;
    else if (this.#snapshot) post = this.#dbsum;
    else throw new RangeError("LTX encoder: post-apply checksum required for a checksummed incremental file");
    if (this.#snapshot) {
      const expected = this.#prev + 1 === this.#lock ? this.#prev + 2 : this.#prev + 1;
      if (expected <= h.commit) {
        throw new RangeError(`LTX encoder: snapshot is missing pages from ${expected} to ${h.commit}`);
      }
    }
    if (h.commit === 0 && this.#checksums && post !== CHECKSUM_FLAG) {
      throw new RangeError("LTX encoder: post-apply checksum of an empty database must be 1<<63");
    }
    this.#state = "finishing";
    try {
      // Index: uvarint(pgno, offset, size) per page, uvarint(0), then u64 BE index size.
      let indexSize = 1;
      const n = this.#pgnos.length;
      for (let i = 0; i < n; i++) {
        indexSize += uvarintSize(this.#pgnos[i]) + uvarintSize(this.#offsets[i]) +
          uvarintSize(this.#sizes[i]);
      }
      const tail = new Uint8Array(PAGE_HEADER_SIZE + indexSize + 8 + TRAILER_SIZE);
      let p = PAGE_HEADER_SIZE; // zero page header
      for (let i = 0; i < n; i++) {
        p = putUvarint(tail, p, this.#pgnos[i]);
        p = putUvarint(tail, p, this.#offsets[i]);
        p = putUvarint(tail, p, this.#sizes[i]);
      }
      p = putUvarint(tail, p, 0);
      const v = new DataView(tail.buffer);
      v.setBigUint64(p, BigInt(indexSize));
      p += 8;
      v.setBigUint64(p, post);
      this.#crc.update(tail.subarray(0, p + 8));
      const trailer: LtxTrailer = {
        postApplyChecksum: post,
        fileChecksum: CHECKSUM_FLAG | this.#crc.digest(),
      };
      const problem = trailerProblem(h, trailer);
      if (problem !== null) throw new RangeError(`LTX encoder: invalid trailer: ${problem}`);
      v.setBigUint64(p + 8, trailer.fileChecksum);
      await this.#ensure(tail.length);
      this.#buf.set(tail, this.#len);
      this.#len += tail.length;
      this.#total += tail.length;
      await this.#flush();
      this.#state = "done";
      return trailer;
    } catch (err) {
      this.#state = "failed";
      throw err;
    }
  }
}

/**
 * One LZ4 frame holding exactly `page`, byte-compatible with pierrec/lz4 (ltx v0.5.0/0.5.1) framing:
 * FLG 0x64 (independent blocks, content checksum), BD 0x40 (64 KB), one block (stored when compression
 * does not shrink it), end mark, xxh32 content checksum.
 */
export function encodeFramePayload(page: Uint8Array): Uint8Array {
  const block = compressBlock(page);
  const stored = block.length >= page.length;
  const body = stored ? page : block;
  const out = new Uint8Array(7 + 4 + body.length + 4 + 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, LZ4_FRAME_MAGIC, true);
  out[4] = 0x64;
  out[5] = 0x40;
  out[6] = (xxh32(out.subarray(4, 6)) >>> 8) & 0xff;
  v.setUint32(7, (body.length | (stored ? 0x80000000 : 0)) >>> 0, true);
  out.set(body, 11);
  const end = 11 + body.length;
  v.setUint32(end, 0, true);
  v.setUint32(end + 4, xxh32(page), true);
  return out;
}

/** Encodes a whole file in memory (small files, tests). Pages must be in the order the encoder requires. */
export async function encodeLtxToBytes(
  header: LtxHeader,
  pages: Iterable<[number, Uint8Array]>,
  options: LtxEncoderOptions = {},
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const sink: ByteSink = {
    write(c: Uint8Array): Promise<void> {
      chunks.push(c);
      return Promise.resolve();
    },
  };
  const enc = new LtxEncoder(sink, header, options);
  for (const [pgno, data] of pages) await enc.encodePage(pgno, data);
  await enc.finish();
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(enc.bytesWritten);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
