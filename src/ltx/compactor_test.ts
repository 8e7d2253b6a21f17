import assert from "node:assert/strict";
import fc from "fast-check";
import { CorruptionError, GapError } from "../errors.ts";
import { compactLtx, compactToDatabase } from "./compactor.ts";
import { decodeDatabaseTo, LtxDecoder, verifyLtx } from "./decoder.ts";
import { encodeLtxToBytes } from "./encoder.ts";
import { chunked, collectSink, filled, hdr } from "./fixtures_test.ts";
import { CHECKSUM_FLAG, HEADER_FLAG_NO_CHECKSUM, type LtxHeader } from "./types.ts";

const PS = 512;

interface TestFile {
  header: LtxHeader;
  pages: [number, Uint8Array][];
  bytes: Uint8Array;
  name: string;
}

async function file(header: LtxHeader, pages: [number, Uint8Array][]): Promise<TestFile> {
  const name = `${header.minTXID}-${header.maxTXID}.ltx`;
  return { header, pages, bytes: await encodeLtxToBytes(header, pages), name };
}

function decoders(files: TestFile[], cuts = [4096]): LtxDecoder[] {
  return files.map((f) => new LtxDecoder(chunked(f.bytes, cuts), f.name));
}

async function decodePages(bytes: Uint8Array): Promise<{ header: LtxHeader; pages: [number, Uint8Array][] }> {
  const dec = new LtxDecoder(bytes, "out.ltx");
  const header = await dec.readHeader();
  const pages: [number, Uint8Array][] = [];
  for (let p = await dec.nextPage(); p; p = await dec.nextPage()) pages.push([p.pgno, p.data]);
  await dec.finish();
  return { header, pages };
}

/** The reference model: apply files in order (newest page wins), then truncate to the last commit. */
function applyInOrder(files: TestFile[]): [number, Uint8Array][] {
  const db = new Map<number, Uint8Array>();
  for (const f of files) {
    for (const [p, d] of f.pages) db.set(p, d);
    for (const p of [...db.keys()]) if (p > f.header.commit) db.delete(p);
  }
  return [...db.entries()].sort((a, b) => a[0] - b[0]);
}

/** A page whose bytes name its file and page number, plus some random noise. */
function page(txid: number, pgno: number, noise: number): Uint8Array {
  const p = filled(PS, noise & 0xff);
  new DataView(p.buffer).setUint32(0, txid);
  new DataView(p.buffer).setUint32(4, pgno);
  return p;
}

/** A random chain: a snapshot (TXID 1…a) then incremental files, contiguous with optional overlap. */
const chainArb = fc.record({
  first: fc.record({ span: fc.integer({ min: 1, max: 3 }), commit: fc.integer({ min: 1, max: 20 }) }),
  rest: fc.array(
    fc.record({
      overlap: fc.integer({ min: 0, max: 2 }),
      span: fc.integer({ min: 1, max: 3 }),
      commit: fc.integer({ min: 1, max: 30 }),
      mask: fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
      noise: fc.nat(),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  cut: fc.integer({ min: 7, max: 5000 }),
});

/** What {@link chainArb} generates. */
type ChainSpec = typeof chainArb extends fc.Arbitrary<infer T> ? T : never;

async function buildChain(spec: ChainSpec): Promise<TestFile[]> {
  const files: TestFile[] = [];
  const firstPages: [number, Uint8Array][] = [];
  for (let p = 1; p <= spec.first.commit; p++) firstPages.push([p, page(1, p, p)]);
  files.push(
    await file(
      hdr({ pageSize: PS, commit: spec.first.commit, maxTXID: spec.first.span, timestamp: 1 }),
      firstPages,
    ),
  );
  for (const r of spec.rest) {
    const prev = files[files.length - 1].header;
    const min = Math.max(2, prev.maxTXID + 1 - r.overlap);
    const max = prev.maxTXID + r.span;
    const pages: [number, Uint8Array][] = [];
    for (let p = 1; p <= r.commit; p++) {
      // Growth pages are always present (as Litestream writes them); others randomly.
      if (p > prev.commit || r.mask[p - 1]) pages.push([p, page(max, p, r.noise + p)]);
    }
    files.push(
      await file(
        hdr({ pageSize: PS, commit: r.commit, minTXID: min, maxTXID: max, timestamp: max * 1000 }),
        pages,
      ),
    );
  }
  return files;
}

Deno.test("property: compacting random files equals applying them in order (full chain, any sub-range)", async () => {
  await fc.assert(
    fc.asyncProperty(chainArb, fc.nat(), fc.nat(), async (spec, a, b) => {
      const files = await buildChain(spec);
      // Whole chain: a snapshot.
      const sink = collectSink();
      const { header, trailer } = await compactLtx(decoders(files, [spec.cut]), sink);
      const out = await decodePages(sink.bytes());
      const last = files[files.length - 1].header;
      assert.deepEqual(out.pages, applyInOrder(files));
      assert.deepEqual(out.header, header);
      assert.equal(header.minTXID, 1);
      assert.equal(header.maxTXID, last.maxTXID);
      assert.equal(header.commit, last.commit);
      assert.equal(header.timestamp, last.timestamp);
      assert.equal(header.flags, HEADER_FLAG_NO_CHECKSUM);
      assert.equal(trailer.postApplyChecksum, 0n);
      // Any contiguous sub-range (compaction of one level into the next).
      const i = a % files.length;
      const j = i + (b % (files.length - i));
      const sub = files.slice(i, j + 1);
      const s2 = collectSink();
      await compactLtx(decoders(sub), s2);
      const merged = await decodePages(s2.bytes());
      const newest = new Map<number, Uint8Array>();
      for (const f of sub) for (const [p, d] of f.pages) newest.set(p, d);
      const want = [...newest.entries()].filter(([p]) => p <= sub[sub.length - 1].header.commit).sort((
        x,
        y,
      ) => x[0] - y[0]);
      assert.deepEqual(merged.pages, want);
      assert.equal(merged.header.minTXID, sub[0].header.minTXID);
      // Compacting in two stages equals compacting at once; restoring equals the model database.
      const k = a % files.length;
      const stage = collectSink();
      await compactLtx(decoders(files.slice(0, k + 1)), stage);
      const s3 = collectSink();
      await compactLtx([new LtxDecoder(stage.bytes(), "stage.ltx"), ...decoders(files.slice(k + 1))], s3);
      assert.deepEqual((await decodePages(s3.bytes())).pages, out.pages);
      const db = collectSink();
      const dh = await compactToDatabase(decoders(files), db);
      assert.equal(dh.commit, last.commit);
      const want2 = applyInOrder(files);
      assert.deepEqual(db.bytes(), new Uint8Array(want2.flatMap(([, d]) => [...d])));
      const db2 = collectSink();
      await decodeDatabaseTo(new LtxDecoder(sink.bytes(), "out.ltx"), db2);
      assert.deepEqual(db2.bytes(), db.bytes());
    }),
    { numRuns: 40 },
  );
});

Deno.test("compactor: vector #6 SnapshotPageDataOnly with checksums — 0x91, 0x82, 0x93 and 0x8a249272ad9f7dea", async () => {
  const snap = await file(hdr({ flags: 0, commit: 3, maxTXID: 1 }), [[1, filled(1024, 0x81)], [
    2,
    filled(1024, 0x82),
  ], [3, filled(1024, 0x83)]]);
  assert.equal((await verifyLtx(snap.bytes, "s")).trailer.postApplyChecksum, 0x8a249272ad9f7dean);
  const sink = collectSink();
  // Incremental post-apply: the affine XOR checksum gives the same value (digest §2).
  const lastPost = 0x8a249272ad9f7dean;
  const encInc = await (async () => {
    const { LtxEncoder } = await import("./encoder.ts");
    const s = collectSink();
    const e = new LtxEncoder(
      s,
      hdr({ flags: 0, commit: 3, minTXID: 2, maxTXID: 2, preApplyChecksum: 0x8a249272ad9f7dean }),
    );
    await e.encodePage(1, filled(1024, 0x91));
    await e.encodePage(3, filled(1024, 0x93));
    await e.finish(lastPost);
    return s.bytes();
  })();
  const { header, trailer } = await compactLtx(
    [new LtxDecoder(snap.bytes, "s"), new LtxDecoder(encInc, "i")],
    sink,
    { flags: 0 },
  );
  assert.equal(header.flags, 0);
  assert.equal(trailer.postApplyChecksum, 0x8a249272ad9f7dean);
  const out = await decodePages(sink.bytes());
  assert.deepEqual(out.pages.map(([p, d]) => [p, d[0]]), [[1, 0x91], [2, 0x82], [3, 0x93]]);
});

Deno.test("compactor: vector #7 non-snapshot merge — latest wins, commit/timestamp from last, pre-apply from first, shrink drops pages", async () => {
  const F = CHECKSUM_FLAG;
  const mk = async (
    min: number,
    max: number,
    commit: number,
    pre: bigint,
    post: bigint,
    ts: number,
    pages: [number, number][],
  ) => {
    const { LtxEncoder } = await import("./encoder.ts");
    const s = collectSink();
    const e = new LtxEncoder(
      s,
      hdr({ flags: 0, commit, minTXID: min, maxTXID: max, preApplyChecksum: pre, timestamp: ts }),
    );
    for (const [p, fill] of pages) await e.encodePage(p, filled(1024, fill));
    await e.finish(post);
    return new LtxDecoder(s.bytes(), `${min}-${max}`);
  };
  const sink = collectSink();
  const { header, trailer } = await compactLtx(
    [
      await mk(2, 3, 5, F | 10n, F | 11n, 100, [[1, 1], [4, 4], [5, 5]]),
      await mk(4, 6, 4, F | 11n, F | 12n, 200, [[1, 9], [2, 2]]),
    ],
    sink,
    { flags: 0 },
  );
  assert.deepEqual(
    {
      min: header.minTXID,
      max: header.maxTXID,
      commit: header.commit,
      ts: header.timestamp,
      pre: header.preApplyChecksum,
    },
    { min: 2, max: 6, commit: 4, ts: 200, pre: F | 10n },
  );
  assert.equal(trailer.postApplyChecksum, F | 12n);
  const out = await decodePages(sink.bytes());
  assert.deepEqual(
    out.pages.map(([p, d]) => [p, d[0]]),
    [[1, 9], [2, 2], [4, 4]],
    "page 5 > commit 4 dropped",
  );
  // NoChecksum output (Litestream's setting): checksums zeroed, WAL fields and node id cleared.
  const s2 = collectSink();
  const r2 = await compactLtx([await mk(2, 3, 5, F | 10n, F | 11n, 100, [[1, 1]])], s2);
  assert.equal(r2.header.preApplyChecksum, 0n);
  assert.equal(r2.trailer.postApplyChecksum, 0n);
  assert.equal(r2.header.walOffset + r2.header.walSize + r2.header.walSalt1 + r2.header.walSalt2, 0);
  assert.equal(r2.header.nodeID, 0n);
});

Deno.test("compactor: contiguity — gaps are GapError, overlap allowed, non-advancing or mixed page sizes are corruption", async () => {
  const f = (min: number, max: number, ps = 1024) =>
    file(hdr({ pageSize: ps, commit: 1, minTXID: min, maxTXID: max }), min === 1 ? [[1, filled(ps, 1)]] : []);
  const run = async (fs: TestFile[]) => await compactLtx(decoders(fs), collectSink());
  const gap = await run([await f(1, 3), await f(6, 7)]).then(() => null, (e) => e);
  assert.ok(gap instanceof GapError, String(gap));
  assert.deepEqual([gap.fromTxid, gap.toTxid], [4, 5]);
  assert.match(gap.message, /TXIDs 4…5 are missing between 1-3\.ltx and 6-7\.ltx/);
  await run([await f(1, 3), await f(2, 5), await f(6, 6)]); // overlap is fine
  await assert.rejects(
    async () => await run([await f(1, 3), await f(2, 3)]),
    (e) => e instanceof CorruptionError && /do not extend/.test(e.message),
  );
  await assert.rejects(
    async () => await run([await f(4, 5), await f(1, 3)]),
    (e) => e instanceof CorruptionError,
  );
  await assert.rejects(
    async () => await run([await f(1, 3), await f(4, 4, 512)]),
    (e) => e instanceof CorruptionError && /page size 512 differs/.test(e.message),
  );
  await assert.rejects(() => compactLtx([], collectSink()), RangeError);
});

Deno.test("compactor: a corrupt input is CorruptionError naming that input; nothing past it is trusted", async () => {
  const a = await file(hdr({ pageSize: PS, commit: 2, maxTXID: 1 }), [[1, filled(PS, 1)], [
    2,
    filled(PS, 2),
  ]]);
  const b = await file(hdr({ pageSize: PS, commit: 2, minTXID: 2, maxTXID: 2 }), [[2, filled(PS, 3)]]);
  const bad = b.bytes.slice();
  bad[bad.length - 3] ^= 0x10;
  const err = await compactLtx(
    [new LtxDecoder(a.bytes, a.name), new LtxDecoder(bad, "bad.ltx")],
    collectSink(),
  ).then(() => null, (e) => e);
  assert.ok(err instanceof CorruptionError);
  assert.equal(err.object, "bad.ltx");
  const out = collectSink();
  await assert.rejects(
    () => compactToDatabase([new LtxDecoder(a.bytes, a.name), new LtxDecoder(bad, "bad.ltx")], out),
    CorruptionError,
  );
  assert.equal(out.chunks.length, 0, "restore output is written only after every input verified");
});

Deno.test("compactor: a merged snapshot that misses pages (commit grew without growth pages) is corruption", async () => {
  const a = await file(hdr({ pageSize: PS, commit: 2, maxTXID: 1 }), [[1, filled(PS, 1)], [
    2,
    filled(PS, 2),
  ]]);
  const b = await file(hdr({ pageSize: PS, commit: 4, minTXID: 2, maxTXID: 2 }), [[3, filled(PS, 3)]]);
  await assert.rejects(
    () => compactLtx(decoders([a, b]), collectSink()),
    (e) => e instanceof CorruptionError && /has no page 4 \(commit 4\)/.test(e.message),
  );
  await assert.rejects(() => compactToDatabase(decoders([a, b]), collectSink()), CorruptionError);
  await assert.rejects(() => compactToDatabase(decoders([b]), collectSink()), /not a snapshot/);
});
