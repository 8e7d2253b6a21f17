/**
 * `segment.ts`: the WebAssembly frame loop against a reference built in JavaScript — any page size, any read
 * sizes (frames straddling reads), the lock page's zeros, page checksums, bytes after the end marker — with
 * sinks that copy and sinks that borrow the decoder's memory and release it late; every broken rule declines;
 * `fileRangeSource` reads exact ranges and stops when aborted.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { InterruptedError } from "../errors.ts";
import { Crc64, pageChecksum } from "../ltx/checksum.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import { compressBlock } from "../ltx/lz4.ts";
import { CHECKSUM_FLAG, lockPgno } from "../ltx/types.ts";
import {
  FastPathDeclined,
  fileRangeSource,
  type FrameSource,
  releaseChunk,
  type ReleasingSink,
  SegmentDecoder,
  type SegmentSpec,
} from "./segment.ts";

/** A run of frames and what a correct decoder makes of it. */
interface Fixture {
  spec: SegmentSpec;
  /** Frames, end marker, then `tail`. */
  bytes: Uint8Array;
  /** The database bytes the frames stand for (the lock page as zeros). */
  pages: Uint8Array;
  pgnos: number[];
  sizes: number[];
  /** CRC-64 of frame headers, sizes, decompressed pages and the end marker. */
  crc: bigint;
  /** XOR of the page checksums without the flag. */
  xor: bigint;
  /** Offset just after the end marker. */
  end: number;
  tail: Uint8Array;
}

function be32(n: number): Uint8Array {
  return new Uint8Array([n >>> 24, n >>> 16, n >>> 8, n]);
}

/** A page: random bytes, or a short pattern repeated (compressible), chosen by `seed`. */
function makePage(ps: number, seed: number): Uint8Array {
  const page = new Uint8Array(ps);
  if (seed % 3 === 0) {
    for (let i = 0; i < ps; i += 65536) crypto.getRandomValues(page.subarray(i, Math.min(ps, i + 65536)));
  } else {
    for (let i = 0; i < ps; i++) page[i] = (i * seed) % 7 === 0 ? seed & 0xff : (i >> 4) & 0xff;
  }
  return page;
}

/** Frames for pages `first`, `first + 1`, … (`count` of them, skipping the lock page), end marker, `tail`. */
function fixture(ps: number, first: number, count: number, checksums: boolean, tail: Uint8Array): Fixture {
  const lock = lockPgno(ps);
  const parts: Uint8Array[] = [];
  const pages: Uint8Array[] = [];
  const pgnos: number[] = [];
  const sizes: number[] = [];
  const crc = new Crc64();
  let xor = 0n;
  let pgno = first;
  for (let k = 0; k < count; k++, pgno++) {
    if (pgno === lock) {
      pages.push(new Uint8Array(ps));
      pgno++;
    }
    const page = makePage(ps, pgno * 31 + k);
    const block = compressBlock(page);
    const head = new Uint8Array([...be32(pgno), 0, 1, ...be32(block.length)]);
    parts.push(head, block);
    crc.update(head).update(page);
    xor ^= pageChecksum(pgno, page) & ~CHECKSUM_FLAG;
    pages.push(page);
    pgnos.push(pgno);
    sizes.push(head.length + block.length);
  }
  // A frame for the page before the lock page owes the lock page's zeros.
  if (pgno === lock) pages.push(new Uint8Array(ps));
  const marker = new Uint8Array(6);
  crc.update(marker);
  parts.push(marker, tail);
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (bytes.set(p, o), o + p.length), 0);
  const all = new Uint8Array(pages.length * ps);
  pages.forEach((p, i) => all.set(p, i * ps));
  const commit = Math.max(pgno - 1, lock <= pgno ? lock : 0);
  return {
    spec: { pageSize: ps, commit, first, checksums, name: "fixture" },
    bytes,
    pages: all,
    pgnos,
    sizes,
    crc: crc.digest(),
    xor,
    end: bytes.length - tail.length,
    tail,
  };
}

/** `bytes` served in reads of the given sizes (cycled; each at least 1 byte). */
function splitSource(bytes: Uint8Array, steps: number[]): FrameSource {
  let off = 0;
  let k = 0;
  return {
    read(into: Uint8Array): Promise<number> {
      const step = steps.length === 0 ? into.length : Math.max(1, steps[k++ % steps.length]);
      const n = Math.min(into.length, step, bytes.length - off);
      into.set(bytes.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
  };
}

/** A sink that keeps copies of what it is given. */
function copyingSink(): ByteSink & { out: Uint8Array[] } {
  const out: Uint8Array[] = [];
  return { out, write: (c) => (out.push(c.slice()), Promise.resolve()) };
}

/**
 * A sink that borrows the decoder's memory: it "writes" (copies) each chunk `delay` ms later and only then
 * releases it, so memory the decoder reused too early would show up as wrong bytes.
 */
function lateSink(delay: number): ReleasingSink & { out: Uint8Array[]; finish(): Promise<void> } {
  const out: Uint8Array[] = [];
  let last = Promise.resolve();
  return {
    releasesChunks: true,
    out,
    write(c: Uint8Array): Promise<void> {
      last = new Promise((resolve) =>
        setTimeout(() => {
          out.push(c.slice());
          releaseChunk(c);
          resolve();
        }, delay)
      );
      return Promise.resolve();
    },
    finish: () => last,
  };
}

function joined(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/** Decodes `f` in reads of `steps` bytes; `rest` is what the decoder left unread in the source. */
async function decodeFixture(
  f: Fixture,
  steps: number[],
  sink: ByteSink,
  start = 1000,
): Promise<Awaited<ReturnType<SegmentDecoder["decode"]>> & { crc: bigint; rest: Uint8Array }> {
  const crc = new Crc64();
  const source = splitSource(f.bytes, steps);
  const res = await new SegmentDecoder().decode(source, start, f.spec, crc, null, sink);
  const rest: Uint8Array[] = [];
  for (let buf = new Uint8Array(64), n = await source.read(buf); n > 0; n = await source.read(buf)) {
    rest.push(buf.slice(0, n));
  }
  return { ...res, crc: crc.digest(), rest: joined(rest) };
}

Deno.test("SegmentDecoder: any page size and read sizes give the pages, frames, CRCs and leftover of the reference", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(512, 1024, 4096, 65536),
      fc.integer({ min: 1, max: 12 }),
      fc.boolean(),
      fc.boolean(),
      fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 6 }),
      fc.uint8Array({ maxLength: 40 }),
      async (ps, count, nearLock, checksums, steps, tail) => {
        // Near the lock page: the segment starts a few pages before it, so its zeros fall inside.
        const first = nearLock ? lockPgno(ps) - Math.min(count, 3) : 2;
        const f = fixture(ps, first, count, checksums, tail);
        const sink = copyingSink();
        const res = await decodeFixture(f, steps, sink);
        assert.deepEqual(joined(sink.out), f.pages);
        assert.deepEqual(res.pgnos, f.pgnos);
        assert.deepEqual(res.sizes, f.sizes);
        assert.deepEqual(
          res.offsets,
          f.sizes.map((_, i) => 1000 + f.sizes.slice(0, i).reduce((a, b) => a + b, 0)),
        );
        assert.equal(res.ended, true);
        assert.equal(res.consumed, 1000 + f.end);
        // Bytes read past the end marker come back; the rest stays in the source.
        assert.deepEqual(joined([res.leftover, res.rest]), f.tail);
        assert.equal(res.crc, f.crc);
        assert.equal(res.hashed, f.pgnos.length * (10 + ps) + 6);
        assert.equal(res.xor, checksums ? f.xor : 0n);
        assert.equal(
          res.next,
          f.pgnos[f.pgnos.length - 1] + 1 + (f.pgnos.at(-1)! + 1 === lockPgno(ps) ? 1 : 0),
        );
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("SegmentDecoder: a sink that borrows its memory and releases it late still gets every byte right", async () => {
  // ~26 MB of pages: more output than the decoder's four 4 MiB regions, so each is reused several times.
  const f = fixture(65536, 2, 400, false, new Uint8Array(0));
  for (const lag of [0, 30]) {
    const sink = lateSink(lag);
    const res = await decodeFixture(f, [], sink);
    await sink.finish();
    assert.equal(res.ended, true);
    assert.equal(sink.out.length, Math.ceil(f.pages.length / (4 << 20)), "whole 4 MiB chunks");
    assert.deepEqual(joined(sink.out), f.pages, `lag ${lag}`);
  }
  // A sink that copies gets copies (it may keep them): the same bytes.
  const sink = copyingSink();
  await decodeFixture(f, [123_457], sink);
  assert.deepEqual(joined(sink.out), f.pages);
});

Deno.test("SegmentDecoder: every broken rule declines; input ending mid-frame stops at the last whole frame", async () => {
  const ps = 4096;
  const f = fixture(ps, 2, 5, false, new Uint8Array(0));
  const at = f.sizes[0] + f.sizes[1]; // the third frame
  const declines = async (bytes: Uint8Array, spec: SegmentSpec, reason: RegExp) => {
    await assert.rejects(
      new SegmentDecoder().decode(splitSource(bytes, [777]), 0, spec, new Crc64(), null, copyingSink()),
      (e: unknown) => e instanceof FastPathDeclined && reason.test(e.message),
    );
  };
  const mutate = (fn: (b: Uint8Array, v: DataView) => void) => {
    const b = f.bytes.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  await declines(mutate((_, v) => v.setUint16(at + 4, 0)), f.spec, /not a block-encoded page/);
  await declines(mutate((_, v) => v.setUint32(at + 6, 0)), f.spec, /compressed size out of range/);
  await declines(mutate((_, v) => v.setUint32(at + 6, ps + 100)), f.spec, /compressed size out of range/);
  await declines(mutate((_, v) => v.setUint32(at, 9)), f.spec, /page out of order/);
  await declines(f.bytes, { ...f.spec, first: 3 }, /page out of order/);
  await declines(f.bytes, { ...f.spec, commit: 4 }, /page out of order/);
  await declines(mutate((b) => b.fill(0xff, at + 10, at + 14)), f.spec, /LZ4 block refused/);
  await declines(f.bytes, { ...f.spec, first: lockPgno(ps), commit: lockPgno(ps) + 3 }, /lock page/);

  // The input ends inside the fourth frame: three frames decoded, the segment did not end.
  const cut = f.sizes[0] + f.sizes[1] + f.sizes[2] + 7;
  const crc = new Crc64();
  const sink = copyingSink();
  const res = await new SegmentDecoder().decode(
    splitSource(f.bytes.subarray(0, cut), []),
    50,
    f.spec,
    crc,
    null,
    sink,
  );
  assert.equal(res.ended, false);
  assert.deepEqual(res.pgnos, [2, 3, 4]);
  assert.equal(res.consumed, 50 + cut - 7);
  assert.equal(res.next, 5);
  assert.deepEqual(joined(sink.out), f.pages.subarray(0, 3 * ps));
});

Deno.test("fileRangeSource: reads exactly [start, end) in any buffer sizes; an aborted signal stops it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/f.bin`;
    const data = new Uint8Array(3 << 20);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
    await Deno.writeFile(path, data);
    for (const [start, end, size] of [[0, data.length, 1 << 20], [100, 2_000_001, 65_537], [5, 5, 10]]) {
      let counted = 0;
      const src = await fileRangeSource(path, start, end, undefined, (n) => (counted += n));
      const parts: Uint8Array[] = [];
      for (let buf = new Uint8Array(size), n = await src.read(buf); n > 0; n = await src.read(buf)) {
        parts.push(buf.slice(0, n));
      }
      src.close();
      assert.deepEqual(joined(parts), data.subarray(start, end));
      assert.equal(counted, end - start);
    }
    const ac = new AbortController();
    const src = await fileRangeSource(path, 0, data.length, ac.signal);
    assert.equal(await src.read(new Uint8Array(10)), 10);
    ac.abort();
    await assert.rejects(src.read(new Uint8Array(10)), InterruptedError);
    src.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
