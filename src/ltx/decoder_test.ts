import assert from "node:assert/strict";
import fc from "fast-check";
import { DatabaseSync } from "node:sqlite";
import { CorruptionError } from "../errors.ts";
import { DatabaseWriter, decodeDatabaseTo, LtxDecoder, verifyLtx } from "./decoder.ts";
import { encodeLtxToBytes, LtxEncoder, type PageEncoding } from "./encoder.ts";
import { compressBlock } from "./lz4.ts";
import { databaseChecksum } from "./checksum.ts";
import {
  blockFrame,
  chunked,
  collectSink,
  digestBlockExample,
  digestFrameExample,
  filled,
  hdr,
  pageArb,
  rawLtx,
} from "./fixtures_test.ts";
import { CHECKSUM_FLAG, lockPgno, type LtxHeader } from "./types.ts";

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** Expects `promise` to fail with a CorruptionError for `name` whose message matches `re`; returns it. */
async function rejectsCorrupt(
  promise: Promise<unknown>,
  re: RegExp,
  name = "t.ltx",
): Promise<CorruptionError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof CorruptionError, `expected CorruptionError, got ${err}`);
    assert.equal(err.object, name);
    assert.ok(err.offset === undefined || (Number.isInteger(err.offset) && err.offset >= 0));
    assert.match(err.message, re);
    return err;
  }
  assert.fail(`expected a CorruptionError matching ${re}`);
}

/** Decodes every page of a file and returns them with header/trailer (the full verification path). */
async function decodeAll(
  source: Uint8Array | AsyncIterable<Uint8Array>,
): Promise<{ header: LtxHeader; pages: [number, Uint8Array][] }> {
  const dec = new LtxDecoder(source, "t.ltx");
  const header = await dec.readHeader();
  const pages: [number, Uint8Array][] = [];
  for (let p = await dec.nextPage(); p; p = await dec.nextPage()) pages.push([p.pgno, p.data]);
  await dec.finish();
  return { header, pages };
}

// ------------------------------------------------------------------------------------------------------
// Reference examples

Deno.test("digest §7.1 block-encoding example: 185 bytes, index bytes, file checksum 0xf2f5bf19c408f15a", async () => {
  const f = digestBlockExample();
  assert.equal(f.length, 185);
  assert.equal(hex(f.subarray(100, 110)), "00 00 00 01 00 01 00 00 00 0e");
  assert.equal(hex(f.subarray(154, 161)), "01 64 18 02 7c 18 00");
  assert.equal(new DataView(f.buffer).getBigUint64(161), 7n);
  const v = await verifyLtx(f, "block-example.ltx");
  assert.equal(v.trailer.fileChecksum, 0xf2f5bf19c408f15an);
  assert.equal(v.trailer.postApplyChecksum, 0xe1899b6d587aaaaan);
  assert.equal(v.pages, 2);
  const dec = new LtxDecoder(f, "block-example.ltx");
  const p1 = await dec.nextPage();
  const p2 = await dec.nextPage();
  assert.deepEqual([p1!.pgno, p1!.offset, p1!.size, p1!.flags], [1, 100, 24, 1]);
  assert.deepEqual(p1!.data, filled(1024, 0x32));
  assert.deepEqual([p2!.pgno, p2!.offset, p2!.size], [2, 124, 24]);
  assert.deepEqual(p2!.data, filled(1024, 0x33));
  assert.equal(await dec.nextPage(), null);
  const { index } = await dec.finish();
  assert.deepEqual(index, [{ pgno: 1, offset: 100, size: 24 }, { pgno: 2, offset: 124, size: 24 }]);
});

Deno.test("digest §7.1 legacy-frame example: 216 bytes, lz4 -B4 frames, file checksum 0xa552da3e304d0fac", async () => {
  const f = digestFrameExample();
  assert.equal(f.length, 216);
  assert.equal(hex(f.subarray(106, 117)), "04 22 4d 18 64 40 a7 0e 00 00 00");
  assert.equal(hex(f.subarray(131, 139)), "00 00 00 00 95 37 d1 79");
  const v = await verifyLtx(f, "frame-example.ltx");
  assert.equal(v.trailer.fileChecksum, 0xa552da3e304d0facn);
  const dec = new LtxDecoder(f, "frame-example.ltx");
  const p1 = await dec.nextPage();
  assert.deepEqual([p1!.pgno, p1!.offset, p1!.size, p1!.flags], [1, 100, 39, 0]);
  assert.deepEqual(p1!.data, filled(1024, 0x32));
  const p2 = await dec.nextPage();
  assert.deepEqual([p2!.pgno, p2!.offset, p2!.size], [2, 139, 39]);
  assert.deepEqual(p2!.data, filled(1024, 0x33));
  assert.deepEqual((await dec.finish()).index.map((e) => e.offset), [100, 139]);
});

Deno.test("decodeDatabaseTo: vector #3, 512 B pages '2','3' → the concatenation", async () => {
  const pages: [number, Uint8Array][] = [[1, filled(512, 0x32)], [2, filled(512, 0x33)]];
  const f = await encodeLtxToBytes(hdr({ flags: 0, pageSize: 512, commit: 2 }), pages);
  assert.equal((await verifyLtx(f, "t.ltx")).trailer.postApplyChecksum, 0x8b87423eeeeeeeeen);
  const out = collectSink();
  const h = await decodeDatabaseTo(new LtxDecoder(f, "t.ltx"), out);
  assert.equal(h.commit, 2);
  assert.deepEqual(out.bytes(), new Uint8Array([...filled(512, 0x32), ...filled(512, 0x33)]));
});

// ------------------------------------------------------------------------------------------------------
// Round trips

const fileArb = fc.record({
  pageSize: fc.constantFrom(512, 1024, 4096),
  snapshot: fc.boolean(),
  flags0: fc.boolean(),
  commit: fc.integer({ min: 1, max: 24 }),
  mask: fc.array(fc.boolean(), { minLength: 24, maxLength: 24 }),
  encoding: fc.constantFrom<PageEncoding>("block", "frame"),
  cuts: fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 5 }),
  seed: fc.nat(),
}).chain((r) =>
  fc.array(pageArb(r.pageSize), { minLength: r.commit, maxLength: r.commit }).map((contents) => {
    const pgnos = r.snapshot
      ? Array.from({ length: r.commit }, (_, i) => i + 1)
      : Array.from({ length: r.commit }, (_, i) => i + 1).filter((_, i) => r.mask[i]);
    const header = hdr({
      pageSize: r.pageSize,
      commit: r.commit,
      minTXID: r.snapshot ? 1 : 7,
      maxTXID: 9,
      flags: r.flags0 && r.snapshot ? 0 : 2,
      timestamp: 1_700_000_000_000 + r.seed,
      walOffset: 32,
      walSize: 4152,
      walSalt1: r.seed,
      walSalt2: 0xffffffff,
      nodeID: BigInt(r.seed),
    });
    return { header, pages: pgnos.map((p) => [p, contents[p - 1]] as [number, Uint8Array]), ...r };
  })
);

Deno.test("property: random page sets round-trip through encode/decode (both encodings, any chunking)", async () => {
  await fc.assert(
    fc.asyncProperty(fileArb, async (t) => {
      const f = await encodeLtxToBytes(t.header, t.pages, { pageEncoding: t.encoding });
      const whole = await decodeAll(f);
      assert.deepEqual(whole.header, t.header);
      assert.deepEqual(whole.pages, t.pages);
      const streamed = await decodeAll(chunked(f, t.cuts));
      assert.deepEqual(streamed.pages, t.pages);
      const v = await verifyLtx(chunked(f, t.cuts), "t.ltx");
      assert.equal(v.pages, t.pages.length);
      if (t.header.flags === 0) {
        assert.equal(v.trailer.postApplyChecksum, databaseChecksum(t.pages, t.header.pageSize));
      }
    }),
    { numRuns: 60 },
  );
});

Deno.test("index: the decoder returns the stored index, equal to the frames it read", async () => {
  const pages: [number, Uint8Array][] = [[3, filled(1024, 1)], [200, filled(1024, 2)], [
    70000,
    filled(1024, 3),
  ]];
  const f = await encodeLtxToBytes(hdr({ commit: 70000, minTXID: 2, maxTXID: 2 }), pages);
  const dec = new LtxDecoder(f, "t.ltx");
  const seen = [];
  for (let p = await dec.nextPage(); p; p = await dec.nextPage()) {
    seen.push({ pgno: p.pgno, offset: p.offset, size: p.size });
  }
  assert.deepEqual((await dec.finish()).index, seen);
  assert.deepEqual(seen.map((e) => e.pgno), [3, 200, 70000]);
  assert.equal(seen[0].offset, 100);
  assert.equal(seen[1].offset, 100 + seen[0].size);
});

// ------------------------------------------------------------------------------------------------------
// Corruption: every single flipped bit, truncation, hostile fields

async function flipDetected(f: Uint8Array, bit: number): Promise<void> {
  const g = f.slice();
  g[bit >> 3] ^= 1 << (bit & 7);
  await rejectsCorrupt(verifyLtx(g, "t.ltx"), /./);
}

Deno.test("bit flips: every bit of a small file is detected, both encodings and checksum modes", async () => {
  const pages: [number, Uint8Array][] = [
    [1, filled(512, 0)],
    [2, new TextEncoder().encode("walrust page two ".repeat(32)).slice(0, 512)],
    [3, crypto.getRandomValues(new Uint8Array(512))],
  ];
  for (const encoding of ["block", "frame"] as const) {
    for (const flags of [0, 2]) {
      const f = await encodeLtxToBytes(hdr({ pageSize: 512, commit: 3, flags }), pages, {
        pageEncoding: encoding,
      });
      for (let bit = 0; bit < f.length * 8; bit++) await flipDetected(f, bit);
    }
  }
  for (const f of [digestBlockExample(), digestFrameExample()]) {
    for (let bit = 0; bit < f.length * 8; bit++) await flipDetected(f, bit);
  }
});

Deno.test("property: a flipped bit anywhere in a random file is detected (large random sample)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fileArb,
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 40, maxLength: 40 }),
      async (t, where) => {
        const f = await encodeLtxToBytes(t.header, t.pages, { pageEncoding: t.encoding });
        for (const w of where) {
          await flipDetected(
            f,
            Math.min(f.length * 8 - 1, Math.floor(w * f.length * 8)),
          );
        }
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("truncation at every length and trailing bytes are corruption naming the offset", async () => {
  const f = await encodeLtxToBytes(hdr({ commit: 2 }), [[1, filled(1024, 5)], [2, filled(1024, 6)]]);
  for (let n = 0; n < f.length; n++) {
    await rejectsCorrupt(verifyLtx(f.subarray(0, n), "t.ltx"), /truncated|index|size|checksum|more than/);
    await rejectsCorrupt(verifyLtx(chunked(f.subarray(0, n), [7]), "t.ltx"), /./);
  }
  const e = await rejectsCorrupt(verifyLtx(f.subarray(0, 50), "t.ltx"), /file is truncated/);
  assert.equal(e.offset, 50);
  assert.match(e.message, /^t\.ltx at byte 50: /);
  await rejectsCorrupt(verifyLtx(new Uint8Array([...f, 0]), "t.ltx"), /index size|index/);
  await rejectsCorrupt(
    verifyLtx(new Uint8Array([...f, ...new Uint8Array(5000)]), "t.ltx"),
    /more than \d+ bytes after/,
  );
});

Deno.test("hostile sizes: a huge compressed size or endless tail is rejected before any allocation", async () => {
  const page = filled(4096, 1);
  const f = rawLtx(hdr({ pageSize: 4096, commit: 1 }), [await blockFrame(1, page)]);
  const g = f.slice();
  new DataView(g.buffer).setUint32(106, 0xffffffff);
  const e = await rejectsCorrupt(verifyLtx(g, "t.ltx"), /compressed size 4294967295 is outside 1…4128/);
  assert.equal(e.offset, 106);
  new DataView(g.buffer).setUint32(106, 0);
  await rejectsCorrupt(verifyLtx(g, "t.ltx"), /compressed size 0/);
  // An endless stream after the pages: reading stops at the bound.
  let served = 0;
  async function* endless(): AsyncGenerator<Uint8Array> {
    yield f.subarray(0, f.length - 40);
    while (true) {
      served += 65536;
      yield new Uint8Array(65536);
    }
  }
  await rejectsCorrupt(verifyLtx(endless(), "t.ltx"), /more than/);
  assert.ok(served <= 65536, `read ${served} bytes past the pages`);
  // An index size field of 2^64-1 does not allocate anything.
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(hdr({ pageSize: 4096, commit: 1 }), [await blockFrame(1, page)], {
        indexSize: (1n << 64n) - 1n,
      }),
      "t.ltx",
    ),
    /index size field says 18446744073709551615/,
  );
});

Deno.test("legacy frames: an endless run of empty blocks stops at the frame bound", async () => {
  const page = filled(1024, 0);
  // A frame whose blocks are stored and empty: 0x80000000 repeated, never reaching the end mark.
  const junk = new Uint8Array(7 + 4 * 1000);
  const v = new DataView(junk.buffer);
  v.setUint32(0, 0x184d2204, true);
  junk[4] = 0x64;
  junk[5] = 0x40;
  junk[6] = 0xa7;
  for (let i = 0; i < 1000; i++) v.setUint32(7 + 4 * i, 0x80000000, true);
  const f = rawLtx(hdr({ commit: 1 }), [{ pgno: 1, flags: 0, payload: junk, page }]);
  await rejectsCorrupt(verifyLtx(f, "t.ltx"), /LZ4 frame longer than 3072 bytes/);
});

// ------------------------------------------------------------------------------------------------------
// Every validation rule, each on an otherwise well-formed file (correct file checksum)

Deno.test("rules: snapshot must hold every page 1…commit except the lock page, in order", async () => {
  const p = filled(1024, 1);
  await rejectsCorrupt(
    verifyLtx(rawLtx(hdr({ commit: 3 }), [await blockFrame(1, p), await blockFrame(2, p)]), "t.ltx"),
    /snapshot ends before page 3 \(commit 3\)/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(hdr({ commit: 3 }), [await blockFrame(2, p)]), "t.ltx"),
    /got page 2, expected 1/,
  );
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(hdr({ commit: 3 }), [await blockFrame(1, p), await blockFrame(3, p), await blockFrame(2, p)]),
      "t.ltx",
    ),
    /got page 3, expected 2/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(hdr({ commit: 1 }), [await blockFrame(1, p), await blockFrame(1, p)]), "t.ltx"),
    /page 1 is beyond|expected 2/,
  );
});

Deno.test("rules: incremental pages strictly ascending, pgno ≤ commit, never the lock page or 0", async () => {
  const inc = (commit: number, ps = 1024) => hdr({ commit, pageSize: ps, minTXID: 4, maxTXID: 4 });
  const p = filled(1024, 1);
  await rejectsCorrupt(
    verifyLtx(rawLtx(inc(9), [await blockFrame(5, p), await blockFrame(5, p)]), "t.ltx"),
    /page 5 after page 5/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(inc(9), [await blockFrame(5, p), await blockFrame(4, p)]), "t.ltx"),
    /page 4 after page 5/,
  );
  const e = await rejectsCorrupt(
    verifyLtx(rawLtx(inc(9), [await blockFrame(10, p)]), "t.ltx"),
    /page 10 is beyond the commit size of 9/,
  );
  assert.equal(e.offset, 100);
  const big = filled(65536, 0);
  const lock = lockPgno(65536);
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(inc(lock + 5, 65536), [{ pgno: lock, flags: 1, payload: compressBlock(big), page: big }]),
      "t.ltx",
    ),
    /page 16385 is the lock page/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(inc(9), [{ ...(await blockFrame(1, p)), pgno: 0 }]), "t.ltx"),
    /page number 0/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(inc(9), [{ ...(await blockFrame(1, p)), flags: 3 }]), "t.ltx"),
    /invalid page header flags 0x0003/,
  );
});

Deno.test("rules: each page must decompress to exactly the page size (block and frame)", async () => {
  const small = filled(512, 1);
  const page = filled(1024, 1);
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(hdr({ commit: 1 }), [{ pgno: 1, flags: 1, payload: compressBlock(small), page }]),
      "t.ltx",
    ),
    /LZ4 block: .*(512.*1024|1024.*512)/,
  );
  const { encodeFramePayload } = await import("./encoder.ts");
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(hdr({ commit: 1 }), [{ pgno: 1, flags: 0, payload: encodeFramePayload(small), page }]),
      "t.ltx",
    ),
    /LZ4 frame decompresses to 512 bytes, expected 1024/,
  );
  const twice = filled(2048, 1);
  await rejectsCorrupt(
    verifyLtx(
      rawLtx(hdr({ commit: 1 }), [{ pgno: 1, flags: 0, payload: encodeFramePayload(twice), page }]),
      "t.ltx",
    ),
    /LZ4 frame/,
  );
});

Deno.test("rules: the stored index must match the frames read (pgno, offset, size, count)", async () => {
  const p = filled(1024, 1);
  const frames = [await blockFrame(1, p), await blockFrame(2, filled(1024, 2))];
  const good = rawLtx(hdr(), frames);
  const { index } = await new LtxDecoder(good, "t.ltx").finish();
  const bad = async (idx: typeof index, re: RegExp) => {
    await rejectsCorrupt(verifyLtx(rawLtx(hdr(), frames, { index: idx }), "t.ltx"), re);
  };
  await bad([index[1], index[0]], /entry 1 is \(pgno 2/);
  await bad([index[0], { ...index[1], offset: index[1].offset + 1 }], /entry 2 is .*offset/);
  await bad([index[0], { ...index[1], size: index[1].size - 1 }], /entry 2/);
  await bad([index[0]], /entry 2 is malformed|index/);
  await bad([...index, { pgno: 3, offset: 999, size: 10 }], /more entries than the 2 pages/);
  await rejectsCorrupt(
    verifyLtx(rawLtx(hdr(), frames, { indexExtra: new Uint8Array([7]) }), "t.ltx"),
    /1 unexpected bytes after the page index terminator/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(hdr(), frames, { indexSize: 3n }), "t.ltx"),
    /index size field says 3 bytes/,
  );
});

Deno.test("rules: trailer — file checksum, NoChecksum post-apply 0, snapshot post-apply = database checksum", async () => {
  const pages: [number, Uint8Array][] = [[1, filled(512, 1)], [2, filled(512, 2)], [3, filled(512, 3)]];
  const frames = await Promise.all(pages.map(([n, d]) => blockFrame(n, d)));
  const h = hdr({ pageSize: 512, commit: 3 });
  const e = await rejectsCorrupt(
    verifyLtx(rawLtx(h, frames, { fileChecksum: CHECKSUM_FLAG | 1n }), "t.ltx"),
    /file checksum mismatch: trailer says 8000000000000001/,
  );
  assert.ok(e.offset! > 100);
  await rejectsCorrupt(
    verifyLtx(rawLtx(h, frames, { postApply: CHECKSUM_FLAG | 1n }), "t.ltx"),
    /post-apply checksum not allowed/,
  );
  const h0 = hdr({ pageSize: 512, commit: 3, flags: 0 });
  await verifyLtx(rawLtx(h0, frames, { postApply: 0xefffffffecd99000n }), "t.ltx");
  await rejectsCorrupt(
    verifyLtx(rawLtx(h0, frames, { postApply: CHECKSUM_FLAG | 1n }), "t.ltx"),
    /does not match the database checksum of its pages efffffffecd99000/,
  );
  await rejectsCorrupt(
    verifyLtx(rawLtx(h0, frames, { postApply: 0n }), "t.ltx"),
    /post-apply checksum required/,
  );
  // Checksummed incremental: post-apply must carry the flag bit (it cannot be recomputed from a delta).
  const inc = hdr({
    pageSize: 512,
    commit: 3,
    flags: 0,
    minTXID: 2,
    maxTXID: 2,
    preApplyChecksum: CHECKSUM_FLAG | 9n,
  });
  await verifyLtx(rawLtx(inc, frames, { postApply: CHECKSUM_FLAG | 5n }), "t.ltx");
  await rejectsCorrupt(
    verifyLtx(rawLtx(inc, frames, { postApply: 5n }), "t.ltx"),
    /invalid post-apply checksum format/,
  );
});

Deno.test("rules: header validation failures are reported with the header offset", async () => {
  const f = await encodeLtxToBytes(hdr({ commit: 1 }), [[1, filled(1024, 1)]]);
  const g = f.slice();
  new DataView(g.buffer).setUint32(8, 1000);
  const e = await rejectsCorrupt(verifyLtx(g, "t.ltx"), /invalid header: invalid page size: 1000/);
  assert.equal(e.offset, 8);
  const m = f.slice();
  m[0] = 0;
  assert.equal((await rejectsCorrupt(verifyLtx(m, "t.ltx"), /not an LTX file/)).offset, 0);
});

Deno.test("decoder: after a failure every call rethrows the same error; source errors pass through", async () => {
  const f = await encodeLtxToBytes(hdr({ commit: 2 }), [[1, filled(1024, 1)], [2, filled(1024, 2)]]);
  const g = f.slice();
  g[g.length - 1] ^= 1;
  const dec = new LtxDecoder(g, "t.ltx");
  const err = await rejectsCorrupt(dec.finish(), /file checksum mismatch/);
  await assert.rejects(() => dec.finish(), (e) => e === err);
  await assert.rejects(() => dec.nextPage(), (e) => e === err);
  const net = new Error("connection reset");
  let returned = false;
  const source: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      let n = 0;
      return {
        next: () =>
          n++ === 0 ? Promise.resolve({ done: false, value: f.subarray(0, 120) }) : Promise.reject(net),
        return: () => {
          returned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  await assert.rejects(() => verifyLtx(source, "t.ltx"), (e) => e === net);
  assert.ok(returned, "the stream is released after a failure");
});

// ------------------------------------------------------------------------------------------------------
// Databases

Deno.test("decodeDatabaseTo: requires a snapshot; writes pages 1…commit; verifies before the last chunk", async () => {
  const inc = await encodeLtxToBytes(hdr({ commit: 2, minTXID: 2, maxTXID: 2 }), [[2, filled(1024, 1)]]);
  await rejectsCorrupt(
    decodeDatabaseTo(new LtxDecoder(inc, "t.ltx"), collectSink()),
    /not a snapshot \(min TXID 2\)/,
  );
  const f = await encodeLtxToBytes(hdr({ commit: 2 }), [[1, filled(1024, 1)], [2, filled(1024, 2)]]);
  const g = f.slice();
  g[g.length - 1] ^= 1;
  const out = collectSink();
  await rejectsCorrupt(decodeDatabaseTo(new LtxDecoder(g, "t.ltx"), out), /file checksum mismatch/);
  assert.equal(out.chunks.length, 0, "nothing of a corrupt small file reached the output");
  const empty = await encodeLtxToBytes(hdr({ commit: 0 }), []);
  const o2 = collectSink();
  await decodeDatabaseTo(new LtxDecoder(empty, "t.ltx"), o2);
  assert.equal(o2.bytes().length, 0);
});

Deno.test("decodeDatabaseTo: across the lock page (64 KiB pages, commit = lock+1): zero lock page, all others intact", async () => {
  const ps = 65536;
  const lock = lockPgno(ps);
  const commit = lock + 1;
  // One buffer, re-stamped per page: the encoder copies what it needs.
  const buf = new Uint8Array(ps);
  const view = new DataView(buf.buffer);
  const stamp = (p: number) => {
    view.setUint32(0, p);
    view.setUint32(ps - 4, p);
    return buf;
  };
  // Stream the encoder straight into the decoder: nothing close to 1 GiB is ever held.
  const chunks: Uint8Array[] = [];
  const enc = new LtxEncoder(
    { write: (c) => Promise.resolve(void chunks.push(c)) },
    hdr({ pageSize: ps, commit }),
  );
  for (let p = 1; p <= commit; p++) if (p !== lock) await enc.encodePage(p, stamp(p));
  await enc.finish();
  let pos = 0;
  let bad = 0;
  const sink = {
    write(c: Uint8Array): Promise<void> {
      for (let o = 0; o < c.length; o += ps) {
        const pgno = pos / ps + 1;
        const v = new DataView(c.buffer, c.byteOffset + o, ps);
        const want = pgno === lock ? 0 : pgno;
        if (v.getUint32(0) !== want || v.getUint32(ps - 4) !== want) bad++;
        if (pgno === lock && !c.subarray(o, o + ps).every((x) => x === 0)) bad++;
        pos += ps;
      }
      return Promise.resolve();
    },
  };
  async function* source(): AsyncGenerator<Uint8Array> {
    yield* chunks;
  }
  const h = await decodeDatabaseTo(new LtxDecoder(source(), "big.ltx"), sink);
  assert.equal(h.commit, commit);
  assert.equal(pos, commit * ps);
  assert.equal(bad, 0);
});

Deno.test("DatabaseWriter: a missing page before commit or a page out of order is corruption", async () => {
  const w = new DatabaseWriter(collectSink(), 512, 3, "m");
  await w.page(1, filled(512, 1));
  await assert.rejects(() => w.page(3, filled(512, 3)), /page 2 is missing/);
  const w2 = new DatabaseWriter(collectSink(), 512, 3, "m");
  await w2.page(1, filled(512, 1));
  await assert.rejects(() => w2.complete(), /page 2 is missing/);
  await assert.rejects(
    () => new DatabaseWriter(collectSink(), 512, 3, "m").page(4, filled(512, 1)),
    /beyond/,
  );
});

Deno.test("real SQLite database (node:sqlite: tables, index, overflow blobs) → snapshot → identical file, integrity ok", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-" });
  try {
    const src = `${dir}/src.db`;
    const db = new DatabaseSync(src);
    db.exec("PRAGMA journal_mode=DELETE; PRAGMA page_size=4096;");
    db.exec(`CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, meta TEXT, score REAL);
      CREATE TABLE files(id INTEGER PRIMARY KEY, owner INTEGER REFERENCES users(id), data BLOB);
      CREATE INDEX users_name ON users(name);`);
    const u = db.prepare("INSERT INTO users(name, meta, score) VALUES (?, ?, ?)");
    const b = db.prepare("INSERT INTO files(owner, data) VALUES (?, ?)");
    db.exec("BEGIN");
    for (let i = 0; i < 3000; i++) {
      u.run(`user-${(i * 7919) % 3001}`, JSON.stringify({ i, tags: ["a", "b", i % 7] }), i / 3);
    }
    for (let i = 0; i < 40; i++) {
      const blob = new Uint8Array(5000 + i * 900); // larger than a page: overflow chains
      for (let j = 0; j < blob.length; j += 65536) {
        crypto.getRandomValues(blob.subarray(j, Math.min(blob.length, j + 65536)));
      }
      b.run(i + 1, blob);
    }
    db.exec("COMMIT");
    db.close();
    const bytes = await Deno.readFile(src);
    const ps = 4096;
    const commit = bytes.length / ps;
    assert.ok(commit > 50);
    const pages: [number, Uint8Array][] = [];
    for (let p = 1; p <= commit; p++) pages.push([p, bytes.subarray((p - 1) * ps, p * ps)]);
    const f = await encodeLtxToBytes(hdr({ pageSize: ps, commit, flags: 0 }), pages);
    assert.ok(f.length < bytes.length, "compressed");
    const outPath = `${dir}/restored.db`;
    const file = await Deno.open(outPath, { write: true, createNew: true });
    try {
      await decodeDatabaseTo(new LtxDecoder(chunked(f, [65536]), "snap.ltx"), {
        write: async (c) => {
          let o = 0;
          while (o < c.length) o += await file.write(c.subarray(o));
        },
      });
    } finally {
      file.close();
    }
    const restored = await Deno.readFile(outPath);
    assert.equal(restored.length, bytes.length);
    assert.ok(restored.every((x, i) => x === bytes[i]), "byte-identical");
    const check = new DatabaseSync(outPath, { readOnly: true });
    try {
      assert.deepEqual(check.prepare("PRAGMA integrity_check").all().map((r) => Object.values(r)[0]), ["ok"]);
      assert.equal((check.prepare("SELECT count(*) AS n FROM users").get() as { n: number }).n, 3000);
      assert.equal(
        (check.prepare("SELECT sum(length(data)) AS n FROM files").get() as { n: number }).n,
        40 * 5000 + 900 * 780,
      );
    } finally {
      check.close();
    }
    assert.equal((await verifyLtx(f, "snap.ltx")).trailer.postApplyChecksum, databaseChecksum(pages, ps));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
