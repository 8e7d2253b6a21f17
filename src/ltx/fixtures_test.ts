/**
 * Test helpers for the LTX codec (headers, sinks, page generators, a raw file builder that bypasses the
 * encoder's rules so decoders can be fed hostile files), plus the self-made examples of the reference
 * digest §7.1 rebuilt byte for byte. Holds no tests itself (importing a file with tests would run them twice).
 *
 * @module
 */

import * as lz4js from "lz4js";
import fc from "fast-check";
import { Crc64 } from "./checksum.ts";
import type { ByteSink } from "./encoder.ts";
import { xxh32 } from "./lz4.ts";
import {
  CHECKSUM_FLAG,
  encodeHeader,
  HEADER_FLAG_NO_CHECKSUM,
  type LtxHeader,
  PAGE_HEADER_SIZE,
  putUvarint,
  uvarintSize,
} from "./types.ts";

/** A NoChecksum snapshot header with overrides. */
export function hdr(over: Partial<LtxHeader> = {}): LtxHeader {
  return {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize: 1024,
    commit: 2,
    minTXID: 1,
    maxTXID: 1,
    timestamp: 1000,
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
    ...over,
  };
}

/** A sink collecting chunks, with `bytes()` to concatenate them. */
export function collectSink(): ByteSink & { chunks: Uint8Array[]; bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    write(c: Uint8Array): Promise<void> {
      chunks.push(c);
      return Promise.resolve();
    },
    bytes(): Uint8Array {
      return concat(chunks);
    },
  };
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `bytes` as an async iterable of chunks cut at the given sizes (cycled), to exercise stream boundaries. */
export async function* chunked(bytes: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let o = 0;
  let i = 0;
  while (o < bytes.length) {
    const n = Math.max(1, sizes[i++ % sizes.length]);
    yield bytes.slice(o, o + n);
    o += n;
  }
}

/** A page filled with `fill`. */
export function filled(size: number, fill: number): Uint8Array {
  return new Uint8Array(size).fill(fill);
}

/** A raw LZ4 block made by lz4js (the oracle encoder); null when lz4js declines (incompressible). */
export function lz4jsBlock(data: Uint8Array): Uint8Array | null {
  const dst = new Uint8Array(lz4js.compressBound(data.length));
  const n = lz4js.compressBlock(data, dst, 0, data.length, new Uint32Array(1 << 16));
  return n === 0 ? null : dst.slice(0, n);
}

/** lz4js's raw block decoder (oracle). */
export function lz4jsDecodeBlock(block: Uint8Array, size: number): Uint8Array {
  const dst = new Uint8Array(size);
  const n = lz4js.decompressBlock(block, dst, 0, block.length, 0);
  return dst.subarray(0, n);
}

/** One LZ4 frame around a compressed block (lz4 `-B4 -BI` framing, content checksum). */
export function frameAround(block: Uint8Array, content: Uint8Array, stored = false): Uint8Array {
  const out = new Uint8Array(7 + 4 + block.length + 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x184d2204, true);
  out[4] = 0x64;
  out[5] = 0x40;
  out[6] = (xxh32(out.subarray(4, 6)) >>> 8) & 0xff;
  v.setUint32(7, (block.length | (stored ? 0x80000000 : 0)) >>> 0, true);
  out.set(block, 11);
  v.setUint32(11 + block.length, 0, true);
  v.setUint32(15 + block.length, xxh32(content), true);
  return out;
}

/** A frame as written into a raw file: page number, header flags, payload bytes, and the decompressed page. */
export interface RawFrame {
  pgno: number;
  flags: number;
  /** For flags 1: the LZ4 block (the size field is added); for flags 0: the complete LZ4 frame. */
  payload: Uint8Array;
  /** The decompressed page (hashed into the file checksum). */
  page: Uint8Array;
}

/** Options of {@link rawLtx}: deliberate inconsistencies for decoder tests. */
export interface RawOptions {
  postApply?: bigint;
  /** Replaces the computed index entries. */
  index?: { pgno: number; offset: number; size: number }[];
  /** Replaces the index size field. */
  indexSize?: bigint;
  /** Replaces the file checksum. */
  fileChecksum?: bigint;
  /** Bytes inserted between the index terminator and the index size (counted in the size). */
  indexExtra?: Uint8Array;
}

/**
 * Builds an LTX file from raw frames with a *correct* file checksum over whatever is given, without the
 * encoder's rules: the way to hand decoders files that are well-formed except for one broken rule.
 */
export function rawLtx(header: LtxHeader, frames: RawFrame[], opts: RawOptions = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const crc = new Crc64();
  const hb = encodeHeader(header);
  parts.push(hb);
  crc.update(hb);
  let offset = hb.length;
  const entries: { pgno: number; offset: number; size: number }[] = [];
  for (const f of frames) {
    const ph = new Uint8Array(PAGE_HEADER_SIZE + (f.flags & 1 ? 4 : 0));
    const v = new DataView(ph.buffer);
    v.setUint32(0, f.pgno);
    v.setUint16(4, f.flags);
    if (f.flags & 1) v.setUint32(6, f.payload.length);
    parts.push(ph, f.payload);
    crc.update(ph);
    crc.update(f.page);
    const size = ph.length + f.payload.length;
    entries.push({ pgno: f.pgno, offset, size });
    offset += size;
  }
  const end = new Uint8Array(PAGE_HEADER_SIZE);
  parts.push(end);
  crc.update(end);
  const idx = opts.index ?? entries;
  const extra = opts.indexExtra ?? new Uint8Array(0);
  let n = 1 + extra.length;
  for (const e of idx) n += uvarintSize(e.pgno) + uvarintSize(e.offset) + uvarintSize(e.size);
  const index = new Uint8Array(n);
  let p = 0;
  for (const e of idx) {
    p = putUvarint(index, p, e.pgno);
    p = putUvarint(index, p, e.offset);
    p = putUvarint(index, p, e.size);
  }
  p = putUvarint(index, p, 0);
  index.set(extra, p);
  const tail = new Uint8Array(8 + 16);
  const tv = new DataView(tail.buffer);
  tv.setBigUint64(0, opts.indexSize ?? BigInt(n));
  tv.setBigUint64(8, opts.postApply ?? 0n);
  crc.update(index);
  crc.update(tail.subarray(0, 16));
  tv.setBigUint64(16, opts.fileChecksum ?? (CHECKSUM_FLAG | crc.digest()));
  parts.push(index, tail);
  return concat(parts);
}

/** A block-encoded raw frame of `page` (compressed with lz4-wasm unless `block` is given). */
export async function blockFrame(pgno: number, page: Uint8Array, block?: Uint8Array): Promise<RawFrame> {
  const { compressBlock } = await import("./lz4.ts");
  return { pgno, flags: 1, payload: block ?? compressBlock(page), page };
}

/** fast-check arbitrary of page contents that compress in different ways (runs, text, random, mixed). */
export function pageArb(pageSize: number): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.integer({ min: 0, max: 255 }).map((b) => filled(pageSize, b)),
    fc.uint8Array({ minLength: pageSize, maxLength: pageSize }),
    fc.tuple(fc.string({ minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: pageSize })).map(
      ([s, zeros]) => {
        const page = new Uint8Array(pageSize);
        const text = new TextEncoder().encode(s.repeat(Math.ceil(pageSize / Math.max(1, s.length))));
        page.set(text.subarray(0, pageSize - Math.min(zeros, pageSize)));
        return page;
      },
    ),
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 0, max: pageSize - 1 })).map(
      ([bytes, at]) => {
        const page = new Uint8Array(pageSize);
        page.set(bytes.subarray(0, pageSize - at), at);
        return page;
      },
    ),
  );
}

/** The digest §7.1 block-encoding example: spec #2 with lz4js blocks (14 B each), 185 bytes. */
export function digestBlockExample(): Uint8Array {
  const p2 = filled(1024, 0x32);
  const p3 = filled(1024, 0x33);
  return rawLtx(
    hdr({ flags: 0, commit: 2, timestamp: 1000 }),
    [
      { pgno: 1, flags: 1, payload: lz4jsBlock(p2)!, page: p2 },
      { pgno: 2, flags: 1, payload: lz4jsBlock(p3)!, page: p3 },
    ],
    { postApply: 0xe1899b6d587aaaaan },
  );
}

/** The digest §7.1 legacy-frame example: spec #2 with one `lz4 -B4` frame per page, 216 bytes. */
export function digestFrameExample(): Uint8Array {
  const p2 = filled(1024, 0x32);
  const p3 = filled(1024, 0x33);
  return rawLtx(
    hdr({ flags: 0, commit: 2, timestamp: 1000 }),
    [
      { pgno: 1, flags: 0, payload: frameAround(lz4jsBlock(p2)!, p2), page: p2 },
      { pgno: 2, flags: 0, payload: frameAround(lz4jsBlock(p3)!, p3), page: p3 },
    ],
    { postApply: 0xe1899b6d587aaaaan },
  );
}
