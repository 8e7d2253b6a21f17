/**
 * `parallel.ts`: CRC-64 combination (property), segment claiming, and the two-thread snapshot decode with a
 * real Worker: byte-identical output for any segment size, a Worker that never starts (this thread decodes
 * everything), and a flipped byte anywhere never accepted.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CorruptionError } from "../errors.ts";
import { crc64 } from "../ltx/checksum.ts";
import { verifyLtx } from "../ltx/decoder.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import type { LtxHeader } from "../ltx/types.ts";
import { writeAll } from "../util/fs.ts";
import {
  claimSegment,
  crc64Combine,
  decodeSnapshotParallel,
  segmentClaims,
  spawnDecodeWorker,
} from "./parallel.ts";
import { FastPathDeclined } from "./segment.ts";
import { buildHistory, type DbHistory, ltxFor } from "./testing.ts";

Deno.test("crc64Combine: crc(a ‖ b) from crc(a), crc(b) and |b|, for random data and splits", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(), (data, cut) => {
      const at = data.length === 0 ? 0 : cut % (data.length + 1);
      const a = data.subarray(0, at);
      const b = data.subarray(at);
      assert.equal(crc64Combine(crc64(a), crc64(b), b.length), crc64(data));
    }),
    { numRuns: 200 },
  );
  // Long runs of zeros exercise the large powers (2^20 bytes and more) without hashing them twice.
  const zeros = new Uint8Array(3 << 20);
  const head = new TextEncoder().encode("123456789");
  const whole = new Uint8Array(head.length + zeros.length);
  whole.set(head);
  assert.equal(crc64Combine(crc64(head), crc64(zeros), zeros.length), crc64(whole));
  assert.equal(crc64(head), 0xb90956c775a41001n, "check value of CRC-64/GO-ISO");
});

/** A few hundred pages with random blobs, in one TXID. */
function history(dir: string): DbHistory {
  return buildHistory(dir, [(db) => {
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
    const ins = db.prepare("INSERT INTO t(b) VALUES (?)");
    db.exec("BEGIN");
    for (let i = 0; i < 1500; i++) ins.run(crypto.getRandomValues(new Uint8Array(300 + (i % 900))));
    db.exec("COMMIT");
  }]);
}

/** Runs decodeSnapshotParallel on `ltx` into a fresh file; the output bytes, or the error. */
async function parallelDecode(
  dir: string,
  ltx: Uint8Array,
  opts: { segmentBytes?: number; spawn?: () => Worker; split?: number[]; crc64?: bigint } = {},
): Promise<Uint8Array | unknown> {
  const ltxPath = `${dir}/snap.ltx`;
  const outPath = `${dir}/out-${crypto.randomUUID()}.db`;
  await Deno.writeFile(ltxPath, ltx);
  const out = await Deno.open(outPath, { write: true, createNew: true });
  const sink: ByteSink = { write: (c) => writeAll(out, c) };
  try {
    await decodeSnapshotParallel({
      ltxPath,
      name: "snap.ltx",
      outPath,
      checkHeader: (h: LtxHeader) => assert.equal(h.minTXID, 1),
      sink,
      segmentBytes: opts.segmentBytes ?? 64 << 10,
      crc64: opts.crc64,
      spawn: opts.spawn,
      onSegments: (mine, theirs) => opts.split?.push(mine, theirs),
    });
    out.close();
    return await Deno.readFile(outPath);
  } catch (err) {
    out.close();
    return err;
  } finally {
    await Deno.remove(outPath);
  }
}

Deno.test("claimSegment: every segment goes to exactly one side; the bottom side's are a prefix", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 300 }), fc.array(fc.boolean(), { maxLength: 400 }), (n, turns) => {
      const claims = segmentClaims(n);
      const bottom: number[] = [];
      const top: number[] = [];
      for (const fromTop of [...turns, ...Array(n).fill(false)]) {
        const i = claimSegment(claims, fromTop);
        if (i >= 0) (fromTop ? top : bottom).push(i);
      }
      assert.equal(claimSegment(claims, true), -1);
      assert.deepEqual(bottom, bottom.map((_, k) => k), "bottom claims 0, 1, 2, …");
      assert.deepEqual(top, top.map((_, k) => n - 1 - k), "top claims n−1, n−2, …");
      assert.equal(bottom.length + top.length, n);
    }),
  );
  assert.throws(() => segmentClaims(0), RangeError);
  assert.throws(() => segmentClaims(0x10000), RangeError);
});

Deno.test("decodeSnapshotParallel: two threads restore the snapshot byte for byte, for any segment size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-parallel-" });
  try {
    const h = history(dir);
    const ltx = await ltxFor(h, 1, 1);
    const split: number[] = [];
    const got = await parallelDecode(dir, ltx, { segmentBytes: 16 << 10, split });
    assert.ok(got instanceof Uint8Array, `decoded: ${got}`);
    assert.deepEqual(got, h.states[1]);
    assert.ok(split[0] + split[1] > 10, `many segments: ${split}`);
    for (const segmentBytes of [1, 4096, 100_000, 1 << 20, ltx.length]) {
      const out = await parallelDecode(dir, ltx, { segmentBytes });
      assert.ok(out instanceof Uint8Array, `segments of ${segmentBytes}: ${out}`);
      assert.deepEqual(out, h.states[1], `segments of ${segmentBytes}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeSnapshotParallel: a Worker that never starts leaves every segment to this thread", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-parallel-" });
  try {
    const h = history(dir);
    const ltx = await ltxFor(h, 1, 1);
    const split: number[] = [];
    // A worker that ignores messages: nothing is claimed from the top, so its answer is not awaited.
    const silent = () => new Worker("data:text/javascript,", { type: "module" });
    const got = await parallelDecode(dir, ltx, { spawn: silent, split });
    assert.ok(got instanceof Uint8Array, `decoded: ${got}`);
    assert.deepEqual(got, h.states[1]);
    assert.equal(split[1], 0);
    assert.ok(split[0] > 1);
    // And a real worker that answers: together they decode every segment exactly once.
    const both: number[] = [];
    const out = await parallelDecode(dir, ltx, { spawn: spawnDecodeWorker, split: both });
    assert.deepEqual(out, h.states[1]);
    assert.equal(both[0] + both[1], split[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeSnapshotParallel: a flipped byte in the first half, the second half or anywhere is never accepted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-parallel-" });
  try {
    const h = history(dir);
    const ltx = await ltxFor(h, 1, 1);
    const rejected = (e: unknown) => e instanceof FastPathDeclined || e instanceof CorruptionError;
    // Inside a page frame early in the file (first half) and late in the file (the Worker's half).
    for (const at of [200, Math.floor(ltx.length * 0.8)]) {
      const bad = ltx.slice();
      bad[at] ^= 0x10;
      await assert.rejects(verifyLtx(bad, "x"), CorruptionError, "the full decoder rejects it too");
      const got = await parallelDecode(dir, bad);
      assert.ok(rejected(got), `flip at ${at} of ${ltx.length}: ${got}`);
    }
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: ltx.length - 1 }), fc.integer({ min: 1, max: 255 }), async (at, x) => {
        const bad = ltx.slice();
        bad[at] ^= x;
        const got = await parallelDecode(dir, bad);
        if (got instanceof Uint8Array) {
          // Only acceptable if the full decoder accepts it as well and it decodes to the same database.
          await verifyLtx(bad, "x");
          assert.deepEqual(got, h.states[1], `flip at ${at} accepted with different output`);
        } else {
          assert.ok(rejected(got), `flip at ${at}: ${got}`);
        }
      }),
      { numRuns: 25 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("decodeSnapshotParallel: with a recorded CRC-64 of the raw file, both threads fold it over their segments", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-parallel-" });
  try {
    const h = history(dir);
    const ltx = await ltxFor(h, 1, 1);
    for (const segmentBytes of [16 << 10, 1 << 20]) {
      const split: number[] = [];
      const got = await parallelDecode(dir, ltx, { segmentBytes, crc64: crc64(ltx), split });
      assert.ok(got instanceof Uint8Array, `decoded: ${got}`);
      assert.deepEqual(got, h.states[1]);
    }
    // A file that decodes fine but is not the one recorded: declined (the sequential path reports it).
    const wrong = await parallelDecode(dir, ltx, { crc64: crc64(ltx) ^ 1n });
    assert.ok(wrong instanceof FastPathDeclined && /CRC-64/.test(wrong.message), `${wrong}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
