import assert from "node:assert/strict";
import fc from "fast-check";
import lz4js from "lz4js";
import { CorruptionError } from "../errors.ts";
import { decodeLz4Frames, decodeLz4FramesToBytes } from "./lz4_frame.ts";
import { encodeLz4Frame, type FrameEncodeOptions, skippableFrame } from "./testing.ts";

/** Splits `bytes` into chunks at the given cut points: the decoder must not care where chunks end. */
async function* chunked(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (const c of [...new Set(cuts.map((x) => x % (bytes.length + 1)))].sort((a, b) => a - b)) {
    if (c > at) yield bytes.subarray(at, c);
    at = Math.max(at, c);
  }
  if (at < bytes.length) yield bytes.subarray(at);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Compressible but not trivial: a pseudo-random period-`period` pattern repeated. */
function pattern(n: number, period: number, seed = 12345): Uint8Array {
  const per = new Uint8Array(period);
  let x = seed;
  for (let i = 0; i < period; i++) {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    per[i] = (x >>> 16) & 0xff;
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = per[i % period];
  return out;
}

const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
// Made with the lz4 v1.9.4 CLI from pattern(140000, 200): 64 KB *linked* blocks, block checksums, content
// size and content checksum (`lz4 -B4 -BD -BX --content-size`), and without checksums (`-B4 -BD --no-frame-crc`).
const CLI_LINKED_CHECKSUMS = b64(
  "BCJNGFxA4CICAAAAAABP0wEAAP+53ARlqh+tHVra5awbHl8TcHls/RD/Ga9gHQSstB0CK0Z4czry31+utwhZ0e45EMtIlbXMiSkR/wa2Yi7fPPk1/UuUKMoJfESzAl6WX7PqbazULYFuaa/g5odMnATn0jZdLGDJ6vR59oag65Mm5GIS1Q3Ls3cVamo6aLqO23QIRp7zzrMK+NDdaLv4X/ok8tL8GIf7XIe6tDgypZsbPRB893jWf+Jt+BGRKX6TlcsSxVfOWvHUFhjXGbwEW36ZZfGilHHEKqxqqTjIAP////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////8gUAr40N1o5d8N1goBAAAPeP//////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////6FDKCXxEs7u/0nD1AAAA/7kCXpZfs+ptrNQtgW5pr+Dmh0ycBOfSNl0sYMnq9Hn2hqDrkybkYhLVDcuzdxVqajpouo7bdAhGnvPOswr40N1ou/hf+iTy0vwYh/tch7q0ODKlmxs9EHz3eNZ/4m34EZEpfpOVyxLFV85a8dQWGNcZvARbfpll8aKUccQqrGqpONwEZaofrR1a2uWsGx5fE3B5bP0Q/xmvYB0ErLQdAitGeHM68t9frrcIWdHuORDLSJW1zIkpEf8GtmIu3zz5Nf1LlCjKCXxEs8gA/////////////////////////////////////////////yJQKqxqqTioPGIFAAAAAFYtJcY=",
);
const CLI_LINKED_PLAIN = b64(
  "BCJNGEBAwNMBAAD/udwEZaofrR1a2uWsGx5fE3B5bP0Q/xmvYB0ErLQdAitGeHM68t9frrcIWdHuORDLSJW1zIkpEf8GtmIu3zz5Nf1LlCjKCXxEswJell+z6m2s1C2Bbmmv4OaHTJwE59I2XSxgyer0efaGoOuTJuRiEtUNy7N3FWpqOmi6jtt0CEae886zCvjQ3Wi7+F/6JPLS/BiH+1yHurQ4MqWbGz0QfPd41n/ibfgRkSl+k5XLEsVXzlrx1BYY1xm8BFt+mWXxopRxxCqsaqk4yAD/////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////IFAK+NDdaAoBAAAPeP//////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////////6FDKCXxEs/UAAAD/uQJell+z6m2s1C2Bbmmv4OaHTJwE59I2XSxgyer0efaGoOuTJuRiEtUNy7N3FWpqOmi6jtt0CEae886zCvjQ3Wi7+F/6JPLS/BiH+1yHurQ4MqWbGz0QfPd41n/ibfgRkSl+k5XLEsVXzlrx1BYY1xm8BFt+mWXxopRxxCqsaqk43ARlqh+tHVra5awbHl8TcHls/RD/Ga9gHQSstB0CK0Z4czry31+utwhZ0e45EMtIlbXMiSkR/wa2Yi7fPPk1/UuUKMoJfESzyAD/////////////////////////////////////////////IlAqrGqpOAAAAAA=",
);

Deno.test("lz4 frame: lz4 CLI frames with linked blocks, block checksums and content size decode exactly", async () => {
  const want = pattern(140000, 200);
  assert.deepEqual(await decodeLz4FramesToBytes(CLI_LINKED_CHECKSUMS, "v1"), want);
  assert.deepEqual(await decodeLz4FramesToBytes(CLI_LINKED_PLAIN, "v2"), want);
  // Byte-at-a-time delivery exercises every boundary inside headers, sizes and checksums.
  const cuts = Array.from({ length: CLI_LINKED_CHECKSUMS.length }, (_, i) => i);
  assert.deepEqual(await decodeLz4FramesToBytes(chunked(CLI_LINKED_CHECKSUMS, cuts), "v1"), want);
});

Deno.test("lz4 frame: lz4js frames (linked blocks, no content checksum) decode, including past 4 MB", async () => {
  const data = pattern(5 * 1024 * 1024 + 123, 4099);
  const frame = lz4js.compress(data) as Uint8Array;
  assert.deepEqual(await decodeLz4FramesToBytes(frame, "lz4js"), data);
});

Deno.test("lz4 frame: round trip for any data, options, concatenated/skippable frames and chunking", async () => {
  const opts = fc.record({
    blockSizeCode: fc.constantFrom(4 as const, 5 as const, 6 as const, 7 as const),
    contentChecksum: fc.boolean(),
    blockChecksum: fc.boolean(),
    contentSize: fc.boolean(),
    stored: fc.constantFrom("auto" as const, "always" as const),
  }) as fc.Arbitrary<FrameEncodeOptions>;
  const part = fc.oneof(
    fc.uint8Array({ maxLength: 3000 }),
    fc.tuple(fc.integer({ min: 0, max: 200_000 }), fc.integer({ min: 1, max: 300 })).map(([n, p]) =>
      pattern(n, p)
    ),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(part, opts), { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      fc.array(fc.nat(), { maxLength: 8 }),
      async (frames, skippable, cuts) => {
        const encoded = frames.map(([d, o]) => encodeLz4Frame(d, o));
        if (skippable) encoded.splice(1, 0, skippableFrame(new Uint8Array([1, 2, 3])));
        const all = concat(...encoded);
        const out = await decodeLz4FramesToBytes(chunked(all, cuts), "prop");
        assert.deepEqual(out, concat(...frames.map(([d]) => d)));
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("lz4 frame: yields block-sized chunks (never the whole content at once)", async () => {
  const data = pattern(300_000, 77);
  const sizes: number[] = [];
  for await (const c of decodeLz4Frames(encodeLz4Frame(data, { blockSizeCode: 4 }), "x")) {
    sizes.push(c.length);
  }
  assert.deepEqual(sizes, [65536, 65536, 65536, 65536, 300_000 - 4 * 65536]);
});

async function decodeError(bytes: Uint8Array, opts?: { maxOutput?: number }): Promise<CorruptionError> {
  try {
    await decodeLz4FramesToBytes(bytes, "obj.lz4", opts);
  } catch (err) {
    assert.ok(err instanceof CorruptionError, `expected CorruptionError, got ${err}`);
    assert.equal(err.object, "obj.lz4");
    return err;
  }
  assert.fail("decoding succeeded");
}

Deno.test("lz4 frame: every defect is a CorruptionError naming the object and offset", async () => {
  const data = pattern(10_000, 33);
  const good = encodeLz4Frame(data, { blockChecksum: false });
  assert.match((await decodeError(new Uint8Array(0))).message, /empty object/);
  assert.match((await decodeError(Uint8Array.of(1, 2, 3, 4, 5))).message, /bad magic/);
  assert.match((await decodeError(good.subarray(0, good.length - 3))).message, /truncated content checksum/);
  assert.match((await decodeError(good.subarray(0, 20))).message, /truncated block/);
  const badHc = good.slice();
  badHc[6] ^= 0xff;
  assert.match((await decodeError(badHc)).message, /descriptor checksum/);
  const badContent = good.slice();
  badContent[good.length - 1] ^= 1;
  const e = await decodeError(badContent);
  assert.match(e.message, /content checksum mismatch/);
  assert.equal(e.offset, good.length - 4);
  // A flipped byte inside compressed data: either a malformed block or a content checksum mismatch.
  const flipped = good.slice();
  flipped[15] ^= 0x55;
  await decodeError(flipped);
  const trailing = concat(good, Uint8Array.of(9, 9, 9, 9));
  assert.match((await decodeError(trailing)).message, /bad magic/);
  assert.match((await decodeError(good, { maxOutput: 5000 })).message, /more than 5000 bytes/);
  const withBlockSum = encodeLz4Frame(data, { blockChecksum: true, stored: "always" });
  const badBlock = withBlockSum.slice();
  badBlock[20] ^= 1; // stored data: only the block checksum can catch it
  assert.match((await decodeError(badBlock)).message, /block checksum mismatch/);
  const sized = encodeLz4Frame(data, { contentSize: true, contentChecksum: false });
  const lying = sized.slice();
  lying[6] ^= 1; // content size 10000 → 10001; fix the descriptor checksum so only the size is wrong
  const { Xxh32 } = await import("./xxh32.ts");
  lying[14] = (new Xxh32().update(lying.subarray(4, 14)).digest() >>> 8) & 0xff;
  assert.match((await decodeError(lying)).message, /declares 10001/);
});

Deno.test("lz4 frame: reuseBuffers gives the same bytes, and chunk k stays intact while k+1 is consumed", async () => {
  for (const stored of ["auto", "always"] as const) {
    const data = pattern(700_000, 333);
    const frame = encodeLz4Frame(data, { blockSizeCode: 4, stored });
    const out = new Uint8Array(data.length);
    let at = 0;
    let prev: { view: Uint8Array; copy: Uint8Array } | null = null;
    const buffers = new Set<ArrayBufferLike>();
    for await (const c of decodeLz4Frames(frame, "x", { reuseBuffers: true })) {
      if (prev) assert.deepEqual(prev.view, prev.copy, "the previous chunk was overwritten too early");
      out.set(c, at);
      at += c.length;
      prev = { view: c, copy: c.slice() };
      buffers.add(c.buffer);
    }
    assert.equal(at, data.length);
    assert.deepEqual(out, data);
    assert.equal(buffers.size, 2, "two buffers, reused");
  }
});
