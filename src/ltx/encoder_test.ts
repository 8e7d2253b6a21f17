import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeLtxToBytes, LtxEncoder } from "./encoder.ts";
import { LtxDecoder, verifyLtx } from "./decoder.ts";
import { databaseChecksum } from "./checksum.ts";
import { lz4BlockBound } from "./lz4.ts";
import { collectSink, filled, hdr, pageArb } from "./fixtures_test.ts";
import { CHECKSUM_FLAG, HEADER_SIZE, lockPgno, readUvarint, TRAILER_SIZE } from "./types.ts";

Deno.test("encoder: spec #2 (TestDecoder) with database checksums: post-apply 0xe1899b6d587aaaaa", async () => {
  const p2 = filled(1024, 0x32);
  const p3 = filled(1024, 0x33);
  const f = await encodeLtxToBytes(hdr({ flags: 0, timestamp: 1000 }), [[1, p2], [2, p3]]);
  const v = await verifyLtx(f, "spec2.ltx");
  assert.equal(v.trailer.postApplyChecksum, 0xe1899b6d587aaaaan);
  assert.equal(v.header.flags, 0);
  const dec = new LtxDecoder(f, "spec2.ltx");
  const a = await dec.nextPage();
  assert.equal(a!.flags, 1, "page flags read back as 0x0001");
  assert.deepEqual(a!.data, p2);
});

Deno.test("encoder: Litestream v0.5 style by default — NoChecksum header, zero pre/post checksums, block pages", async () => {
  const sink = collectSink();
  const enc = new LtxEncoder(sink, hdr({ commit: 3 }));
  for (let p = 1; p <= 3; p++) await enc.encodePage(p, filled(1024, p));
  assert.equal(sink.chunks.length, 0, "nothing reaches the sink before a chunk fills or finish");
  const t = await enc.finish();
  const f = sink.bytes();
  assert.equal(enc.bytesWritten, f.length);
  assert.equal(t.postApplyChecksum, 0n);
  assert.equal(t.fileChecksum & CHECKSUM_FLAG, CHECKSUM_FLAG);
  const view = new DataView(f.buffer);
  assert.equal(view.getUint32(4), 2, "flags NoChecksum");
  assert.equal(view.getBigUint64(40), 0n, "pre-apply 0");
  assert.equal(view.getBigUint64(f.length - 16), 0n, "post-apply 0");
  assert.equal(view.getBigUint64(f.length - 8), t.fileChecksum);
  assert.equal(view.getUint16(HEADER_SIZE + 4), 1, "page flags 0x0001");
  // Index at the end: uvarints, 0 terminator, u64 size.
  const indexSize = Number(view.getBigUint64(f.length - TRAILER_SIZE - 8));
  const start = f.length - TRAILER_SIZE - 8 - indexSize;
  let p = start;
  let frameAt = HEADER_SIZE;
  for (let pg = 1; pg <= 3; pg++) {
    const a = readUvarint(f, p)!;
    const b = readUvarint(f, a.next)!;
    const c = readUvarint(f, b.next)!;
    assert.deepEqual([a.value, b.value, c.value], [pg, frameAt, 10 + view.getUint32(frameAt + 6)]);
    frameAt += c.value;
    p = c.next;
  }
  assert.equal(f[p], 0);
  assert.equal(p + 1, f.length - TRAILER_SIZE - 8);
  assert.deepEqual(Array.from(f.subarray(frameAt, frameAt + 6)), [0, 0, 0, 0, 0, 0], "zero page header");
});

Deno.test("encoder: enforces the Go EncodePage rules with RangeError (caller bugs, not corruption)", async () => {
  const enc = () => new LtxEncoder(collectSink(), hdr({ commit: 5 }));
  const inc = () => new LtxEncoder(collectSink(), hdr({ commit: 5, minTXID: 2, maxTXID: 2 }));
  const page = filled(1024, 1);
  await assert.rejects(() => enc().encodePage(2, page), /out of order, expected 1/);
  await assert.rejects(() => enc().encodePage(1, filled(512, 1)), /512 bytes, expected 1024/);
  await assert.rejects(() => inc().encodePage(6, page), /beyond commit 5/);
  await assert.rejects(() => inc().encodePage(0, page), /invalid page number 0/);
  const e = inc();
  await e.encodePage(3, page);
  await assert.rejects(() => e.encodePage(3, page), /out of order after page 3/);
  await assert.rejects(() => e.encodePage(2, page), /out of order/);
  const s = enc();
  await s.encodePage(1, page);
  await assert.rejects(() => s.finish(), /missing pages from 2 to 5/);
  assert.throws(() => new LtxEncoder(collectSink(), hdr({ pageSize: 1000 })), RangeError);
  assert.throws(() => new LtxEncoder(collectSink(), hdr({ minTXID: 3, maxTXID: 2 })), /out of order/);
  await assert.rejects(
    () =>
      new LtxEncoder(
        collectSink(),
        hdr({ flags: 0, minTXID: 2, maxTXID: 2, preApplyChecksum: CHECKSUM_FLAG }),
      ).finish(),
    /post-apply checksum required/,
  );
  await assert.rejects(() => new LtxEncoder(collectSink(), hdr({ commit: 0 })).finish(1n), /not allowed/);
  await assert.rejects(
    () => new LtxEncoder(collectSink(), hdr({ flags: 0, commit: 0 })).finish(CHECKSUM_FLAG | 1n),
    /empty database must be 1<<63/,
  );
  const done = new LtxEncoder(collectSink(), hdr({ commit: 0, minTXID: 4, maxTXID: 4 }));
  await done.finish();
  await assert.rejects(() => done.finish(), /twice/);
  await assert.rejects(() => done.encodePage(1, page), /after finish/);
});

Deno.test("encoder: the lock page is never stored, even in a non-snapshot file", async () => {
  const ps = 65536;
  const lock = lockPgno(ps);
  const e = new LtxEncoder(collectSink(), hdr({ pageSize: ps, commit: lock + 1, minTXID: 5, maxTXID: 5 }));
  await assert.rejects(() => e.encodePage(lock, new Uint8Array(ps)), /lock page/);
  await e.encodePage(lock + 1, new Uint8Array(ps));
  await e.finish();
});

Deno.test("encoder: chunks handed to the sink are never reused and never exceed chunkSize", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(pageArb(1024), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 4096, max: 20000 }),
      async (pages, chunkSize) => {
        const sink = collectSink();
        const copies: Uint8Array[] = [];
        const spy = {
          write: async (c: Uint8Array) => {
            copies.push(c.slice());
            await sink.write(c);
          },
        };
        const enc = new LtxEncoder(spy, hdr({ commit: pages.length }), { chunkSize });
        for (let i = 0; i < pages.length; i++) await enc.encodePage(i + 1, pages[i]);
        await enc.finish();
        for (let i = 0; i < copies.length; i++) {
          assert.deepEqual(sink.chunks[i], copies[i], "chunk unchanged after hand-over");
          assert.ok(sink.chunks[i].length <= Math.max(chunkSize, 10 + lz4BlockBound(1024)));
        }
        const f = sink.bytes();
        assert.equal(enc.bytesWritten, f.length);
        const v = await verifyLtx(f, "chunks.ltx");
        assert.equal(v.pages, pages.length);
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("encoder: checksummed snapshot computes the post-apply database checksum itself", async () => {
  const pages: [number, Uint8Array][] = [[1, filled(512, 1)], [2, filled(512, 2)], [3, filled(512, 3)]];
  const sink = collectSink();
  const enc = new LtxEncoder(sink, hdr({ flags: 0, pageSize: 512, commit: 3 }));
  for (const [p, d] of pages) await enc.encodePage(p, d);
  const t = await enc.finish();
  assert.equal(t.postApplyChecksum, 0xefffffffecd99000n);
  assert.equal(t.postApplyChecksum, databaseChecksum(pages, 512));
  await verifyLtx(sink.bytes(), "sum.ltx");
});

Deno.test("encoder: sink failures propagate and leave the encoder failed", async () => {
  const boom = new Error("disk full");
  const enc = new LtxEncoder({ write: () => Promise.reject(boom) }, hdr({ commit: 1 }));
  await enc.encodePage(1, filled(1024, 9));
  await assert.rejects(() => enc.finish(), (e) => e === boom);
  await assert.rejects(() => enc.finish(), /failed/);
});

Deno.test("encoder: frame page encoding (ltx v0.5.0/0.5.1 compatible) round trips", async () => {
  const pages: [number, Uint8Array][] = [[1, filled(4096, 0)], [
    2,
    crypto.getRandomValues(new Uint8Array(4096)),
  ]];
  const f = await encodeLtxToBytes(hdr({ pageSize: 4096, commit: 2 }), pages, { pageEncoding: "frame" });
  const dec = new LtxDecoder(f, "frames.ltx");
  for (const [pgno, data] of pages) {
    const p = await dec.nextPage();
    assert.equal(p!.flags, 0);
    assert.equal(p!.pgno, pgno);
    assert.deepEqual(p!.data, data);
  }
  assert.equal(await dec.nextPage(), null);
  await dec.finish();
});
