/**
 * Micro-benchmarks of the LTX codec building blocks (`deno bench -A bench/ltx_bench.ts`): per-page CRC (page
 * copied into the kernel, or already there), LZ4 block compress (lz4-wasm's JS API and its raw exports) and
 * decompress (the strict kernel, lz4-wasm + strict pass, the TS decoder), xxh32, and whole-file
 * encode/decode/compact of 1 MiB snapshots. Throughput of a realistic 64 MB database is in `ltx_throughput.ts`.
 */
import { Crc64, crc64, KERNEL_LAYOUT, pageChecksum } from "../src/ltx/checksum.ts";
import {
  compressBlock,
  compressBlockInto,
  decompressBlock,
  decompressBlockJs,
  decompressBlockLz4Wasm,
  lz4BlockBound,
  xxh32,
} from "../src/ltx/lz4.ts";
import { encodeLtxToBytes } from "../src/ltx/encoder.ts";
import { LtxDecoder } from "../src/ltx/decoder.ts";
import { compactLtx } from "../src/ltx/compactor.ts";
import { HEADER_FLAG_NO_CHECKSUM, type LtxHeader } from "../src/ltx/types.ts";

const PS = 4096;
const text = new TextEncoder().encode(
  JSON.stringify(
    Array.from({ length: 200 }, (_, i) => ({ id: i, name: `row ${(i * 7919) % 1000}`, ok: i % 3 === 0 })),
  ),
);

/** A page of SQLite-ish content: JSON text, a few random bytes, zero padding. */
function page(seed: number): Uint8Array {
  const p = new Uint8Array(PS);
  p.set(text.subarray(seed % 400, (seed % 400) + 3000));
  crypto.getRandomValues(p.subarray(3000, 3200));
  return p;
}

const one = page(1);
const block = compressBlock(one);
const pages: [number, Uint8Array][] = Array.from({ length: 256 }, (_, i) => [i + 1, page(i)]);

function header(over: Partial<LtxHeader> = {}): LtxHeader {
  return {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize: PS,
    commit: 256,
    minTXID: 1,
    maxTXID: 1,
    timestamp: 0,
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
    ...over,
  };
}

const snapshot = await encodeLtxToBytes(header(), pages);
const incrementals = await Promise.all(
  Array.from({ length: 8 }, (_, k) =>
    encodeLtxToBytes(
      header({ minTXID: k + 2, maxTXID: k + 2 }),
      pages.filter(([p]) => p % 8 === k).map(([p, d]) => [p, d]),
    )),
);

Deno.bench("crc64 of a 4 KiB page", { group: "crc" }, () => {
  crc64(one);
});
const kernelCrc = new Crc64();
Deno.bench("CRC of a 4 KiB page already in kernel memory (updateKernel)", { group: "crc" }, () => {
  kernelCrc.updateKernel(KERNEL_LAYOUT.output, PS);
});
Deno.bench("pageChecksum of a 4 KiB page", { group: "crc" }, () => {
  pageChecksum(7, one);
});
Deno.bench("xxh32 of a 4 KiB page", { group: "crc" }, () => {
  xxh32(one);
});
Deno.bench("compressBlock 4 KiB (lz4-wasm JS API)", { group: "lz4" }, () => {
  compressBlock(one);
});
const into = new Uint8Array(lz4BlockBound(PS));
Deno.bench("compressBlockInto 4 KiB (lz4-wasm raw exports)", { group: "lz4" }, () => {
  compressBlockInto(one, into, 0);
});
Deno.bench("decompressBlock 4 KiB (strict LZ4 kernel)", { group: "lz4", baseline: true }, () => {
  decompressBlock(block, PS);
});
Deno.bench("decompressBlockLz4Wasm 4 KiB (lz4-wasm + strict pass)", { group: "lz4" }, () => {
  decompressBlockLz4Wasm(block, PS);
});
Deno.bench("decompressBlockJs 4 KiB (TS decoder)", { group: "lz4" }, () => {
  decompressBlockJs(block, PS);
});
Deno.bench("encode a 1 MiB snapshot (256 pages)", { group: "file" }, async () => {
  await encodeLtxToBytes(header(), pages);
});
Deno.bench("decode + verify a 1 MiB snapshot", { group: "file", baseline: true }, async () => {
  const dec = new LtxDecoder(snapshot, "bench.ltx");
  while ((await dec.nextPage()) !== null) { /* consume */ }
  await dec.finish();
});
Deno.bench("compact snapshot + 8 incrementals", { group: "file" }, async () => {
  const chunks: Uint8Array[] = [];
  await compactLtx(
    [snapshot, ...incrementals].map((b, i) => new LtxDecoder(b, `f${i}`)),
    { write: (c) => Promise.resolve(void chunks.push(c)) },
  );
});
