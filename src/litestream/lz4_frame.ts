/**
 * Streaming LZ4 *frame* decoder for Litestream v0.3 snapshots and WAL segments (pierrec/lz4 v4 writer:
 * 4 MB independent blocks, content checksum). Decodes block by block, so memory stays at about two blocks
 * whatever the size of the object; output chunks are yielded as they are produced.
 *
 * Supports everything in the LZ4 frame format v1.6 except preset dictionaries: concatenated and skippable
 * frames, 64 KB–4 MB blocks, linked (dependent) blocks, stored blocks, block checksums, content size and content
 * checksum (both verified). Every failure is a {@link CorruptionError} naming the object and the byte offset.
 *
 * The block decoder is `src/ltx/lz4.ts` `decodeBlockInto`. That module's frame parser keeps a whole frame in
 * memory (it verifies the content checksum over the output buffer), which suits LTX pages; a v0.3 snapshot is
 * one frame of up to gigabytes, so this streaming variant hashes incrementally and hands each block on.
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";
import { decodeBlockInto, LZ4_FRAME_MAGIC, Lz4FormatError } from "../ltx/lz4.ts";
import { ByteReader, type ByteSource } from "./byte_reader.ts";
import { Xxh32 } from "./xxh32.ts";

const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const BLOCK_MAX: Record<number, number> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };
/** How far back a match may reach (the LZ4 window). */
const WINDOW = 64 << 10;

function u32le(b: Uint8Array, i = 0): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

/** Options of {@link decodeLz4Frames}. */
export interface Lz4DecodeOptions {
  /** Fail when the decoded output would exceed this many bytes (a bound for untrusted input). */
  maxOutput?: number;
  /**
   * Decode into two alternating buffers instead of a fresh one per block, so a multi-GB snapshot produces no
   * garbage. A yielded chunk then stays valid only until the chunk after the next one is requested: enough for
   * a consumer that writes chunk k while chunk k+1 is decoded, not for one that keeps chunks.
   */
  reuseBuffers?: boolean;
}

/**
 * Decodes a stream of LZ4 frames, yielding decompressed chunks (at most one block each) as they are
 * produced. Each yielded chunk is a fresh buffer the caller may keep (unless `reuseBuffers`). `name` (object
 * key or path) is used in errors. An empty source or trailing garbage is corruption.
 */
export async function* decodeLz4Frames(
  source: ByteSource,
  name: string,
  opts: Lz4DecodeOptions = {},
): AsyncGenerator<Uint8Array> {
  const r = new ByteReader(source);
  const fail = (msg: string, offset = r.offset): never => {
    throw new CorruptionError(`LZ4 frame: ${msg}`, { object: name, offset });
  };
  let total = 0;
  let frames = 0;
  const reuse = opts.reuseBuffers ?? false;
  const outPool: Uint8Array[] = [];
  let turn = 0;
  /** An output buffer of at least `n` bytes: fresh, or the older of the two reused ones. */
  const outBuffer = (n: number): Uint8Array => {
    if (!reuse) return new Uint8Array(n);
    const i = turn++ & 1;
    if (!outPool[i] || outPool[i].length < n) outPool[i] = new Uint8Array(n);
    return outPool[i];
  };
  let scratch = new Uint8Array(0); // compressed input of one block; only read while decoding it
  try {
    for (;;) {
      if (await r.atEnd()) {
        if (frames === 0) fail("empty object, expected an LZ4 frame", 0);
        return;
      }
      const frameStart = r.offset;
      const magicBytes = await r.read(4);
      if (magicBytes.length < 4) fail("truncated frame magic", frameStart);
      const magic = u32le(magicBytes);
      if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
        const sizeBytes = await r.read(4);
        if (sizeBytes.length < 4) fail("truncated skippable frame");
        const size = u32le(sizeBytes);
        if (await r.skip(size) !== size) fail("truncated skippable frame");
        frames++;
        continue;
      }
      if (magic !== LZ4_FRAME_MAGIC) {
        fail(`bad magic 0x${magic.toString(16).padStart(8, "0")} (expected 0x184d2204)`, frameStart);
      }
      // Frame descriptor: FLG, BD, [content size 8], [dict id 4], HC.
      const descStart = r.offset;
      const fb = await r.read(2);
      if (fb.length < 2) fail("truncated frame descriptor");
      const flg = fb[0], bd = fb[1];
      if ((flg >>> 6) !== 1) fail(`unsupported frame version ${flg >>> 6}`, descStart);
      if (flg & 0x02) fail("reserved FLG bit set", descStart);
      if (bd & 0x8f) fail("reserved BD bits set", descStart + 1);
      const independent = (flg & 0x20) !== 0;
      const blockChecksum = (flg & 0x10) !== 0;
      const hasContentSize = (flg & 0x08) !== 0;
      const contentChecksum = (flg & 0x04) !== 0;
      const hasDictId = (flg & 0x01) !== 0;
      const blockMax = BLOCK_MAX[(bd >>> 4) & 7];
      if (blockMax === undefined) fail(`invalid block maximum size code ${(bd >>> 4) & 7}`, descStart + 1);
      const extra = (hasContentSize ? 8 : 0) + (hasDictId ? 4 : 0);
      const rest = await r.read(extra + 1);
      if (rest.length < extra + 1) fail("truncated frame descriptor");
      const desc = new Uint8Array(2 + extra);
      desc.set(fb, 0);
      desc.set(rest.subarray(0, extra), 2);
      const hc = (new Xxh32().update(desc).digest() >>> 8) & 0xff;
      if (hc !== rest[extra]) fail("frame descriptor checksum mismatch", descStart + 2 + extra);
      let contentSize: number | undefined;
      if (hasContentSize) {
        const lo = u32le(rest, 0), hi = u32le(rest, 4);
        if (hi > 0x1fffff) fail("declared content size too large", descStart + 2);
        contentSize = hi * 2 ** 32 + lo;
      }
      if (hasDictId) fail("preset dictionaries are not supported", descStart + 2 + (hasContentSize ? 8 : 0));

      const content = contentChecksum ? new Xxh32() : null;
      let frameBytes = 0;
      let history = new Uint8Array(0); // the previous block's last 64 KB, for linked blocks
      for (;;) {
        const blockStart = r.offset;
        const sb = await r.read(4);
        if (sb.length < 4) fail("truncated block size (missing end mark)");
        const word = u32le(sb);
        if (word === 0) break; // end mark
        const stored = (word & 0x80000000) !== 0;
        const size = word & 0x7fffffff;
        if (size > blockMax) fail(`block size ${size} exceeds the frame's maximum ${blockMax}`, blockStart);
        if (scratch.length < size) scratch = new Uint8Array(size);
        const data = scratch.subarray(0, size);
        if (await r.readInto(data, size) < size) fail("truncated block", blockStart);
        if (blockChecksum) {
          const cb = await r.read(4);
          if (cb.length < 4) fail("truncated block checksum");
          if (new Xxh32().update(data).digest() !== u32le(cb)) fail("block checksum mismatch", blockStart);
        }
        let out: Uint8Array;
        if (stored) {
          out = outBuffer(size).subarray(0, size); // `data` is the scratch buffer: never hand it out
          out.set(data);
        } else {
          const hist = independent ? 0 : history.length;
          // Each input byte yields at most 255 output bytes, so small blocks get small buffers.
          const buf = outBuffer(hist + Math.min(blockMax, size * 255 + 64));
          if (hist) buf.set(history, 0);
          let end = 0;
          try {
            end = decodeBlockInto(data, 0, data.length, buf, hist, Math.min(buf.length, hist + blockMax), 0);
          } catch (err) {
            // Past the buffer can only mean past the frame's maximum block size (see the bound above).
            if (err instanceof Lz4FormatError) fail(err.message, blockStart + 4 + err.at);
            throw err;
          }
          out = buf.subarray(hist, end);
        }
        if (!independent) {
          if (out.length >= WINDOW) history = out.slice(out.length - WINDOW);
          else {
            const merged = new Uint8Array(Math.min(WINDOW, history.length + out.length));
            const keep = merged.length - out.length;
            merged.set(history.subarray(history.length - keep), 0);
            merged.set(out, keep);
            history = merged;
          }
        }
        frameBytes += out.length;
        total += out.length;
        if (opts.maxOutput !== undefined && total > opts.maxOutput) {
          fail(`decodes to more than ${opts.maxOutput} bytes`, blockStart);
        }
        if (contentSize !== undefined && frameBytes > contentSize) {
          fail(`content is larger than the declared ${contentSize} bytes`, blockStart);
        }
        content?.update(out);
        if (out.length > 0) yield out;
      }
      if (content) {
        const at = r.offset;
        const cb = await r.read(4);
        if (cb.length < 4) fail("truncated content checksum", at);
        if (content.digest() !== u32le(cb)) fail("content checksum mismatch (the object is corrupt)", at);
      }
      if (contentSize !== undefined && frameBytes !== contentSize) {
        fail(`content is ${frameBytes} bytes, the frame declares ${contentSize}`);
      }
      frames++;
    }
  } finally {
    await r.cancel().catch(() => {});
  }
}

/** Decodes LZ4 frames held in memory (small objects, tests). */
export async function decodeLz4FramesToBytes(
  source: ByteSource,
  name: string,
  opts: Lz4DecodeOptions = {},
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of decodeLz4Frames(source, name, opts)) {
    parts.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
