import assert from "node:assert/strict";
import fc from "fast-check";
import { xxhash32 } from "hash-wasm";
import { xxh32 as ltxXxh32 } from "../ltx/lz4.ts";
import { Xxh32, xxh32 } from "./xxh32.ts";

Deno.test("xxh32: known vectors (empty, 'abc', seed)", () => {
  assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
  assert.equal(xxh32(new TextEncoder().encode("abc")), 0x32d153ff);
  assert.equal(xxh32(new Uint8Array(0), 1), 0x0b2cb792);
});

Deno.test("xxh32: equals hash-wasm and the one-shot LTX xxh32 for any input split into any chunks", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.nat({ max: 2000 }), { maxLength: 6 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      async (data, cuts, seed) => {
        const want = parseInt(await xxhash32(data, seed), 16);
        assert.equal(xxh32(data, seed), want);
        if (seed === 0) assert.equal(ltxXxh32(data), want);
        const h = new Xxh32(seed);
        let at = 0;
        for (const c of [...cuts].sort((a, b) => a - b)) {
          const end = Math.min(c, data.length);
          if (end > at) h.update(data.subarray(at, end));
          at = Math.max(at, end);
        }
        h.update(data.subarray(at));
        assert.equal(h.digest(), want);
        assert.equal(h.reset().update(data).digest(), want, "reset starts over");
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("xxh32: the aligned fast path and the byte path agree (views at every alignment)", async () => {
  const base = Uint8Array.from({ length: 5000 }, (_, i) => (i * 2654435761) >>> 24);
  for (let shift = 0; shift < 4; shift++) {
    const view = base.subarray(shift);
    assert.equal(xxh32(view), parseInt(await xxhash32(view), 16), `byteOffset ${shift}`);
  }
});
