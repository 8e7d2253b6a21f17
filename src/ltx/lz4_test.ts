import assert from "node:assert/strict";
import fc from "fast-check";
import * as lz4js from "lz4js";
import { xxhash32 } from "hash-wasm";
import { CorruptionError } from "../errors.ts";
import {
  compressBlock,
  compressBlockInto,
  decodeFrame,
  decodePageFrame,
  decompressBlock,
  decompressBlockInKernel,
  decompressBlockJs,
  decompressBlockLz4Wasm,
  lz4BlockBound,
  lz4KernelDecode,
  strictBlockProblem,
  xxh32,
} from "./lz4.ts";
import { KERNEL_LAYOUT, kernelBytes } from "./checksum.ts";
import { encodeFramePayload } from "./encoder.ts";
import { concat, filled, frameAround, lz4jsBlock, lz4jsDecodeBlock, pageArb } from "./fixtures_test.ts";

const PS = 4096;

/** Whether Debian's `lz4` CLI is installed (an independent frame oracle). */
const HAS_LZ4_CLI = (() => {
  try {
    return new Deno.Command("lz4", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();
const CLI_SUFFIX = HAS_LZ4_CLI ? "" : " (ignored: lz4 CLI not installed)";

async function lz4Cli(args: string[], input: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command("lz4", { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const [out] = await Promise.all([
    child.output(),
    (async () => {
      await writer.write(input);
      await writer.close();
    })(),
  ]);
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return out.stdout;
}

function assertCorruption(fn: () => unknown, re?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CorruptionError, `expected CorruptionError, got ${err}`);
    if (re) assert.match(err.message, re);
    return true;
  });
}

Deno.test("compressBlock output decodes with lz4js (oracle) and both of our decoders", () => {
  fc.assert(
    fc.property(pageArb(PS), (page) => {
      const block = compressBlock(page);
      assert.ok(block.length <= lz4BlockBound(PS));
      assert.deepEqual(lz4jsDecodeBlock(block, PS), page);
      assert.deepEqual(decompressBlock(block, PS), page);
      assert.deepEqual(decompressBlockJs(block, PS), page);
    }),
    { numRuns: 150 },
  );
});

Deno.test("lz4js blocks (oracle encoder) decode with both of our decoders", () => {
  fc.assert(
    fc.property(pageArb(1024), (page) => {
      const block = lz4jsBlock(page);
      fc.pre(block !== null);
      assert.deepEqual(decompressBlock(block!, 1024), page);
      assert.deepEqual(decompressBlockJs(block!, 1024), page);
    }),
    { numRuns: 150 },
  );
});

Deno.test("decompressBlock: a block of the wrong decompressed size is corruption, naming file and offset", () => {
  const block = compressBlock(filled(PS, 7));
  assertCorruption(
    () => decompressBlock(block, PS * 2, "f.ltx", 110),
    /^f\.ltx at byte 110: .*expected 8192/,
  );
  assertCorruption(() => decompressBlock(block, PS / 2, "f.ltx", 110), /^f\.ltx at byte 110: LZ4 block/);
  assertCorruption(() => decompressBlockJs(block, PS * 2, "f.ltx"), /expected 8192/);
  assertCorruption(() => decompressBlock(new Uint8Array(0), PS));
  assertCorruption(() => decompressBlockJs(new Uint8Array(0), PS));
});

Deno.test("decompressBlock: garbage and truncations give CorruptionError only (wasm strings/traps normalised)", () => {
  const good = compressBlock(new TextEncoder().encode("walrust ".repeat(512)));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (junk) => {
      for (const decode of [decompressBlock, decompressBlockJs]) {
        try {
          const out = decode(junk, 512);
          assert.equal(out.length, 512);
        } catch (err) {
          assert.ok(err instanceof CorruptionError, `${decode.name}: ${err}`);
        }
      }
    }),
    { numRuns: 400 },
  );
  for (let n = 0; n < good.length; n++) {
    assertCorruption(() => decompressBlock(good.subarray(0, n), 4096));
    assertCorruption(() => decompressBlockJs(good.subarray(0, n), 4096));
  }
  // The wasm instance keeps working after its Rust code panicked.
  assert.deepEqual(decompressBlock(good, 4096), new TextEncoder().encode("walrust ".repeat(512)));
});

Deno.test("decoders agree: TS and wasm accept and reject the same mutated blocks", () => {
  const page = new TextEncoder().encode("abcdefgh12345678".repeat(64));
  const block = compressBlock(page);
  fc.assert(
    fc.property(fc.nat({ max: block.length * 8 - 1 }), (bit) => {
      const b = block.slice();
      b[bit >> 3] ^= 1 << (bit & 7);
      let a: Uint8Array | string;
      let j: Uint8Array | string;
      try {
        a = decompressBlock(b, page.length);
      } catch {
        a = "error";
      }
      try {
        j = decompressBlockJs(b, page.length);
      } catch {
        j = "error";
      }
      assert.deepEqual(a, j, `bit ${bit}`);
    }),
    { numRuns: 300 },
  );
});

Deno.test("the final token must be literals-only: its unused match nibble cannot hide a bit flip", () => {
  const page = filled(1024, 0x32);
  const block = compressBlock(page);
  assert.equal(strictBlockProblem(block), -1);
  // The last sequence is the last token: find it by walking, then set its low nibble.
  const lz = lz4jsBlock(page)!;
  assert.equal(strictBlockProblem(lz), -1);
  for (const b of [block, lz]) {
    let t = -1;
    for (let i = 0; i < b.length; i++) {
      const x = b.slice();
      x[i] |= 1;
      if (strictBlockProblem(x) === i) t = i;
    }
    assert.ok(t >= 0, "a tail token exists");
    const x = b.slice();
    x[t] |= 1;
    assertCorruption(() => decompressBlock(x, 1024), /malformed sequence/);
    assertCorruption(() => decompressBlockJs(x, 1024), /final sequence/);
  }
});

Deno.test("xxh32 equals hash-wasm xxhash32 (seed 0 and others)", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: 0xffffffff }), async (b, seed) => {
      assert.equal(xxh32(b), parseInt(await xxhash32(b, 0), 16));
      assert.equal(xxh32(b, seed), parseInt(await xxhash32(b, seed), 16));
    }),
    { numRuns: 200 },
  );
});

Deno.test("decodeFrame: lz4js frames (linked blocks, no content checksum, stored blocks) round trip", () => {
  fc.assert(
    fc.property(fc.array(pageArb(1024), { maxLength: 6 }), (pages) => {
      const data = concat(pages);
      const frame = lz4js.compress(data) as Uint8Array;
      assert.deepEqual(decodeFrame(frame, data.length), data);
    }),
    { numRuns: 60 },
  );
});

Deno.test("encodeFramePayload: one pierrec-style frame per page, stored when incompressible", () => {
  fc.assert(
    fc.property(pageArb(PS), (page) => {
      const f = encodeFramePayload(page);
      assert.deepEqual(Array.from(f.subarray(0, 7)), [0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7]);
      assert.deepEqual(decodePageFrame(f, PS), page);
      assert.deepEqual(decodeFrame(f, PS), page);
      assert.deepEqual(lz4js.decompress(f) as Uint8Array, page);
    }),
    { numRuns: 100 },
  );
  const random = crypto.getRandomValues(new Uint8Array(PS));
  const f = encodeFramePayload(random);
  assert.equal(new DataView(f.buffer).getUint32(7, true), (0x80000000 | PS) >>> 0, "stored block");
});

Deno.test("decodeFrame: several frames and skippable frames are concatenated", () => {
  const a = filled(1000, 1);
  const b = new TextEncoder().encode("second frame ".repeat(100));
  const skip = new Uint8Array(8 + 5);
  new DataView(skip.buffer).setUint32(0, 0x184d2a53, true);
  new DataView(skip.buffer).setUint32(4, 5, true);
  const bytes = concat([encodeFramePayload(a), skip, lz4js.compress(b) as Uint8Array]);
  assert.deepEqual(decodeFrame(bytes, 1 << 20), concat([a, b]));
});

Deno.test("decodeFrame: corrupt frames are CorruptionError naming the object and offset", () => {
  const page = new TextEncoder().encode("frame content ".repeat(300));
  const good = encodeFramePayload(page);
  const mutate = (i: number, x: number) => {
    const b = good.slice();
    b[i] ^= x;
    return b;
  };
  assertCorruption(() => decodeFrame(mutate(0, 1), 1 << 20, "s.lz4"), /^s\.lz4 at byte 0: .*magic/);
  assertCorruption(() => decodeFrame(mutate(4, 0x80), 1 << 20), /version/);
  assertCorruption(() => decodeFrame(mutate(4, 0x02), 1 << 20), /reserved FLG/);
  assertCorruption(() => decodeFrame(mutate(4, 0x01), 1 << 20), /dictionar/);
  assertCorruption(() => decodeFrame(mutate(5, 0x01), 1 << 20), /reserved BD/);
  assertCorruption(() => decodeFrame(mutate(6, 0x01), 1 << 20), /header checksum/);
  assertCorruption(() => decodeFrame(mutate(good.length - 1, 0x01), 1 << 20), /content checksum/);
  assertCorruption(() => decodeFrame(mutate(9, 0x01), 1 << 20), /exceeds the frame's maximum/);
  for (let n = 0; n < good.length; n++) assertCorruption(() => decodeFrame(good.subarray(0, n), 1 << 20));
  // The caller's limit caps the output, whatever the frame says.
  assertCorruption(() => decodeFrame(good, page.length - 1), /larger|limit/);
  assertCorruption(() => decodePageFrame(good, page.length + 1), /expected/);
  assertCorruption(() => decodePageFrame(concat([good, new Uint8Array(1)]), page.length), /trailing/);
  // Random garbage never escapes as anything but CorruptionError.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), fc.nat({ max: good.length - 1 }), (junk, at) => {
      const b = good.slice();
      b.set(junk.subarray(0, good.length - at), at);
      try {
        decodeFrame(b, 1 << 16);
      } catch (err) {
        assert.ok(err instanceof CorruptionError, String(err));
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("decodeFrame: content size and block checksums are verified when present", () => {
  // Hand-built frame: FLG 0x7c = version 1, independent, block checksum, content size, content checksum.
  const data = new TextEncoder().encode("hello hello hello hello hello");
  const block = compressBlock(data);
  const desc = new Uint8Array(2 + 8);
  desc[0] = 0x7c;
  desc[1] = 0x40;
  new DataView(desc.buffer).setBigUint64(2, BigInt(data.length), true);
  const parts: Uint8Array[] = [Uint8Array.from([0x04, 0x22, 0x4d, 0x18]), desc];
  parts.push(Uint8Array.from([(xxh32(desc) >>> 8) & 0xff]));
  const w = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return b;
  };
  parts.push(w(block.length), block, w(xxh32(block)), w(0), w(xxh32(data)));
  const frame = concat(parts);
  assert.deepEqual(decodeFrame(frame, 1000), data);
  const badBlockSum = frame.slice();
  badBlockSum[15 + 4 + block.length] ^= 1;
  assertCorruption(() => decodeFrame(badBlockSum, 1000), /block checksum/);
  const badSize = frame.slice();
  badSize[6] ^= 1;
  badSize[14] = (xxh32(badSize.subarray(4, 14)) >>> 8) & 0xff;
  assertCorruption(() => decodeFrame(badSize, 1000), /content size/);
});

Deno.test("legacy page frames built around lz4js blocks decode (the digest's legacy example framing)", () => {
  const page = filled(1024, 0x32);
  const f = frameAround(lz4jsBlock(page)!, page);
  assert.deepEqual(decodePageFrame(f, 1024), page);
});

Deno.test({
  name: "lz4 CLI (oracle): its frames decode, -B4/-BD/-BX/--content-size/--no-frame-crc, stored blocks" +
    CLI_SUFFIX,
  ignore: !HAS_LZ4_CLI,
  async fn() {
    const text = new TextEncoder().encode(
      JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ i, s: "x" + i }))),
    );
    const random = concat([
      crypto.getRandomValues(new Uint8Array(65536)),
      crypto.getRandomValues(new Uint8Array(4464)),
    ]);
    const data = concat([text, random, new Uint8Array(100000)]);
    for (
      const args of [[], ["-B4"], ["-B4", "-BD"], ["-BX"], ["--content-size"], ["--no-frame-crc"], [
        "-B4",
        "-BX",
      ]]
    ) {
      const frame = await lz4Cli(["-z", "-c", "-q", ...args], data);
      assert.deepEqual(decodeFrame(frame, data.length), data, args.join(" "));
    }
  },
});

Deno.test({
  name: "lz4 CLI (oracle): decompresses our page frames" + CLI_SUFFIX,
  ignore: !HAS_LZ4_CLI,
  async fn() {
    const pages = [
      filled(PS, 0),
      crypto.getRandomValues(new Uint8Array(PS)),
      new TextEncoder().encode("ab".repeat(2048)),
    ];
    for (const page of pages) {
      assert.deepEqual(await lz4Cli(["-d", "-c", "-q"], encodeFramePayload(page)), page);
    }
  },
});

/** A decoder's verdict on a block: the output, or "error". */
function verdict(decode: (b: Uint8Array, n: number) => Uint8Array, block: Uint8Array, size: number) {
  try {
    return decode(block, size);
  } catch (err) {
    assert.ok(err instanceof CorruptionError, `${decode.name}: ${err}`);
    return "error";
  }
}

Deno.test("LZ4 kernel: decodes every valid block (lz4-wasm and lz4js encoders, 512 B to 64 KiB pages)", () => {
  for (const size of [512, PS]) {
    fc.assert(
      fc.property(pageArb(size), (page) => {
        for (const block of [compressBlock(page), lz4jsBlock(page)]) {
          if (block === null) continue;
          assert.ok(lz4KernelDecode(block, size), "the kernel itself accepts it (no fallback)");
          assert.deepEqual(kernelBytes.subarray(KERNEL_LAYOUT.output, KERNEL_LAYOUT.output + size), page);
        }
      }),
      { numRuns: 150 },
    );
  }
  const big = 65536;
  const text = new TextEncoder().encode("walrust kernel ".repeat(big / 15 + 1)).subarray(0, big);
  for (const page of [new Uint8Array(big), text, crypto.getRandomValues(new Uint8Array(big))]) {
    const block = compressBlock(page);
    assert.ok(lz4KernelDecode(block, big));
    const at = decompressBlockInKernel(block, big);
    assert.deepEqual(kernelBytes.subarray(at, at + big), page);
  }
  assert.throws(() => decompressBlockInKernel(compressBlock(text), big + 1), RangeError);
});

Deno.test("LZ4 kernel: accepts exactly what the TS decoder accepts, with the same bytes; errors as lz4-wasm's", () => {
  fc.assert(
    fc.property(
      pageArb(PS),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.boolean()), { maxLength: 3 }),
      // Mostly whole blocks of the right size, so the edits are what is being judged.
      fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: fc.nat(), weight: 1 }),
      fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, {
        arbitrary: fc.integer({ min: -2, max: 2 }),
        weight: 1,
      }),
      (page, edits, cut, sizeDelta) => {
        const whole = compressBlock(page);
        let block = whole.slice();
        for (const [at, v, flip] of edits) {
          if (block.length > 0) {
            block[at % block.length] = flip ? block[at % block.length] ^ (1 << (v & 7)) : v;
          }
        }
        if (cut !== undefined) {
          // The rest of the block stays in the kernel's input buffer: a decoder that read on past the
          // end of a block cut after a match would find a valid tail there.
          lz4KernelDecode(whole, PS);
          block = block.subarray(0, cut % block.length);
        }
        const size = PS + sizeDelta;
        const js = verdict(decompressBlockJs, block, size);
        assert.equal(lz4KernelDecode(block, size), js !== "error", "kernel and TS decoder agree");
        if (js !== "error") {
          assert.deepEqual(kernelBytes.subarray(KERNEL_LAYOUT.output, KERNEL_LAYOUT.output + size), js);
        }
        // The public path (kernel, else lz4-wasm for the error) gives exactly lz4-wasm's verdict and message.
        const wasmMessage = (() => {
          try {
            decompressBlockLz4Wasm(block, size, "k.ltx", 10);
            return "ok";
          } catch (err) {
            return (err as Error).message;
          }
        })();
        const publicMessage = (() => {
          try {
            decompressBlock(block, size, "k.ltx", 10);
            return "ok";
          } catch (err) {
            return (err as Error).message;
          }
        })();
        assert.equal(publicMessage, wasmMessage);
        assert.deepEqual(verdict(decompressBlock, block, size), js);
      },
    ),
    { numRuns: 600 },
  );
});

Deno.test("compressBlockInto: the bytes of compressBlock at any offset, also after lz4-wasm's memory grew", () => {
  const check = () =>
    fc.assert(
      fc.property(pageArb(PS), fc.nat({ max: 64 }), (page, at) => {
        const dst = new Uint8Array(at + lz4BlockBound(PS)).fill(0xee);
        const n = compressBlockInto(page, dst, at);
        assert.deepEqual(dst.subarray(at, at + n), compressBlock(page));
        assert.ok(dst.subarray(0, at).every((b) => b === 0xee), "nothing written before `at`");
      }),
      { numRuns: 60 },
    );
  check();
  compressBlock(new Uint8Array(8 << 20)); // makes lz4-wasm grow its memory, detaching old views
  check();
  assert.throws(() => compressBlockInto(filled(PS, 1), new Uint8Array(lz4BlockBound(PS)), 1), RangeError);
});

Deno.test("LZ4 kernel: hostile literal and match lengths never write past the output's slack", () => {
  const { output, outputSize } = KERNEL_LAYOUT;
  const ext = (n: number) => [...new Array(Math.floor(n / 255)).fill(255), n % 255];
  const long = 60000;
  const blocks = [
    // One literal run far longer than the page.
    Uint8Array.from([0xf0, ...ext(long - 15), ...new Array(long).fill(7)]),
    // A valid start, then a match far longer than the page.
    Uint8Array.from([0x1f, 9, 1, 0, ...ext(long), 0x10, 1]),
  ];
  for (const size of [512, PS]) {
    for (const block of blocks) {
      const end = output + outputSize + 16;
      kernelBytes.fill(0x5a, output + size + 16, end);
      assert.equal(lz4KernelDecode(block, size), false);
      assert.ok(
        kernelBytes.subarray(output + size + 16, end).every((b) => b === 0x5a),
        "no write past slack",
      );
      assertCorruption(() => decompressBlock(block, size));
    }
  }
});

Deno.test("overlapping matches: every offset 1…70 with lengths 4…300 decode by definition in all decoders", () => {
  const ext = (
    n: number,
  ) => (n < 15 ? [] : [...new Array(Math.floor((n - 15) / 255)).fill(255), (n - 15) % 255]);
  for (let off = 1; off <= 70; off++) {
    for (const ml of [4, 5, 7, 8, 9, 15, 16, 19, 31, 32, 33, off - 1, off, off + 1, 2 * off + 3, 100, 300]) {
      if (ml < 4) continue;
      // Literals: `off` distinct bytes; a match (offset off, length ml); then 5 final literals.
      const lits = Array.from({ length: off }, (_, i) => (i * 37 + 11) & 0xff);
      const block = Uint8Array.from([
        (Math.min(off, 15) << 4) | Math.min(ml - 4, 15),
        ...ext(off),
        ...lits,
        off & 0xff,
        off >> 8,
        ...ext(ml - 4),
        0x50,
        1,
        2,
        3,
        4,
        5,
      ]);
      const want = [...lits];
      for (let i = 0; i < ml; i++) want.push(want[want.length - off]);
      want.push(1, 2, 3, 4, 5);
      const expected = Uint8Array.from(want);
      const size = expected.length;
      assert.deepEqual(lz4jsDecodeBlock(block, size), expected, `lz4js off ${off} ml ${ml}`);
      assert.deepEqual(decompressBlockJs(block, size), expected, `TS off ${off} ml ${ml}`);
      assert.ok(lz4KernelDecode(block, size), `kernel off ${off} ml ${ml}`);
      assert.deepEqual(kernelBytes.subarray(KERNEL_LAYOUT.output, KERNEL_LAYOUT.output + size), expected);
      assert.deepEqual(decompressBlockLz4Wasm(block, size), expected, `lz4-wasm off ${off} ml ${ml}`);
    }
  }
});
