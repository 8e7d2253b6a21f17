/**
 * Test helpers for the v0.3 reader: an LZ4 frame *encoder* with every option the decoder must handle, and a
 * writer of v0.3 replica objects with a chosen mtime (CreatedAt). Used by the unit tests of this directory;
 * harmless (and small) in the product.
 *
 * @module
 */

import { compressBlock } from "../ltx/lz4.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { Xxh32 } from "./xxh32.ts";

/** Options of {@link encodeLz4Frame}. Defaults are pierrec/lz4 v4's (Litestream v0.3): 4 MB, content checksum. */
export interface FrameEncodeOptions {
  /** Block maximum size code: 4 = 64 KB, 5 = 256 KB, 6 = 1 MB, 7 = 4 MB (default 7). */
  blockSizeCode?: 4 | 5 | 6 | 7;
  /** Content checksum (default true). */
  contentChecksum?: boolean;
  /** Per-block checksums (default false). */
  blockChecksum?: boolean;
  /** Store the content size in the descriptor (default false). */
  contentSize?: boolean;
  /** `always`: every block stored uncompressed; `auto` (default): stored only when compression does not help. */
  stored?: "auto" | "always";
}

function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Encodes `data` as one LZ4 frame with independent blocks (compressed with lz4-wasm). */
export function encodeLz4Frame(data: Uint8Array, opts: FrameEncodeOptions = {}): Uint8Array {
  const code = opts.blockSizeCode ?? 7;
  const blockMax = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20][code];
  const contentChecksum = opts.contentChecksum ?? true;
  let flg = 0x40 | 0x20; // version 01, independent blocks
  if (opts.blockChecksum) flg |= 0x10;
  if (opts.contentSize) flg |= 0x08;
  if (contentChecksum) flg |= 0x04;
  const desc = [flg, code << 4];
  if (opts.contentSize) {
    const cs = new Uint8Array(8);
    new DataView(cs.buffer).setBigUint64(0, BigInt(data.length), true);
    desc.push(...cs);
  }
  const descBytes = Uint8Array.from(desc);
  const parts: Uint8Array[] = [
    u32le(0x184d2204),
    descBytes,
    Uint8Array.of((new Xxh32().update(descBytes).digest() >>> 8) & 0xff),
  ];
  for (let off = 0; off < data.length; off += blockMax) {
    const block = data.subarray(off, Math.min(data.length, off + blockMax));
    const packed = opts.stored === "always" ? null : compressBlock(block);
    const body = packed && packed.length < block.length ? packed : block;
    parts.push(u32le(body === block ? (0x80000000 | block.length) : body.length), body);
    if (opts.blockChecksum) parts.push(u32le(new Xxh32().update(body).digest()));
  }
  parts.push(u32le(0));
  if (contentChecksum) parts.push(u32le(new Xxh32().update(data).digest()));
  return concat(parts);
}

/** A skippable frame (magic 0x184d2a5X) with `payload`. */
export function skippableFrame(payload: Uint8Array, nibble = 0): Uint8Array {
  return concat([u32le(0x184d2a50 | (nibble & 15)), u32le(payload.length), payload]);
}

/** Writes a v0.3 object (already LZ4-framed) with `createdAt` as its mtime (file stores only). */
export async function putV3Object(
  store: ObjectStore,
  key: string,
  body: Uint8Array,
  createdAt: Date,
): Promise<void> {
  await store.put(key, body, { mtime: createdAt });
}
