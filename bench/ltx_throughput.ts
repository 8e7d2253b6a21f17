/**
 * LTX codec throughput on a realistic database (default 64 MB of 4 KB pages, written by node:sqlite: text,
 * JSON, integers, some blobs, an index): snapshot encode and decode in MB/s of page data, next to the limits
 * measured in the same run. Target (the issue): encode and decode ≥ 70 % of their lz4 limit.
 *
 * The limits, as the issue defines them: encode limit = lz4-wasm `compress` alone, decode limit = lz4-wasm
 * `decompress` alone, both called through lz4-wasm's published JS API on every page; CRC-64 alone is shown
 * too, because both directions must also hash every page. The table then shows what the codec actually runs
 * (lz4-wasm's raw exports for compression, the strict LZ4 kernel and the CRC kernel in WebAssembly) and the
 * zero-overhead bound 1/(1/lz4 + 1/crc) of each design: with lz4-wasm decompress + a JS CRC, decode could
 * never reach 70 % of the limit, which is why the decoder no longer uses lz4-wasm.
 *
 * Usage: deno run -A bench/ltx_throughput.ts [--mb 64] [--runs 5]
 * Writes bench/results/ltx_throughput.json and prints a table (best of `runs` after a warm-up round; the
 * median is printed and kept in the JSON) with the load average at start and end.
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { compress as wasmCompress, decompress as wasmDecompress } from "lz4-wasm";
import { Crc64, KERNEL_LAYOUT } from "../src/ltx/checksum.ts";
import {
  compressBlockInto,
  decompressBlockInKernel,
  decompressBlockLz4Wasm,
  lz4BlockBound,
} from "../src/ltx/lz4.ts";
import { encodeLtxToBytes, LtxEncoder } from "../src/ltx/encoder.ts";
import { decodeDatabaseTo, LtxDecoder } from "../src/ltx/decoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, type LtxHeader } from "../src/ltx/types.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "64" }, runs: { type: "string", default: "5" } },
});
const targetBytes = Number(values.mb) * 1024 * 1024;
const runs = Math.max(1, Number(values.runs));
const PS = 4096;

/** Builds the database and returns its bytes (journal_mode=DELETE, so the file is complete). */
async function buildDatabase(): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "bench-ltx-" });
  try {
    const path = `${dir}/bench.db`;
    const db = new DatabaseSync(path);
    db.exec("PRAGMA journal_mode=DELETE; PRAGMA page_size=4096;");
    db.exec(
      `CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, meta TEXT, n INTEGER, price REAL, blob BLOB);
      CREATE INDEX items_name ON items(name);`,
    );
    const ins = db.prepare("INSERT INTO items(name, meta, n, price, blob) VALUES (?, ?, ?, ?, ?)");
    const words = [
      "alpha",
      "bravo",
      "charlie",
      "delta",
      "echo",
      "foxtrot",
      "golf",
      "hotel",
      "india",
      "juliet",
    ];
    let i = 0;
    while ((await Deno.stat(path)).size < targetBytes) {
      db.exec("BEGIN");
      for (let k = 0; k < 5000; k++, i++) {
        // Some blobs: every 4th row a small random one, every 100th one larger than a page (overflow pages).
        const blob = i % 100 === 0
          ? crypto.getRandomValues(new Uint8Array(6000))
          : i % 4 === 0
          ? crypto.getRandomValues(new Uint8Array(16 + (i % 120)))
          : null;
        const text = `${words[i % 10]} ${words[(i * 7) % 10]} item ${i} ${(i * 2654435761) % 1000003}`;
        const meta = JSON.stringify({
          id: i,
          tags: [words[i % 10], words[(i >> 3) % 10]],
          ok: i % 3 === 0,
          v: i / 7,
        });
        ins.run(text, meta, i * 31, (i % 1000) / 10, blob);
      }
      db.exec("COMMIT");
    }
    db.close();
    const bytes = await Deno.readFile(path);
    return bytes.subarray(0, bytes.length - (bytes.length % PS));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Best and median MB/s of one measurement. */
interface Rate {
  best: number;
  median: number;
}

/**
 * Runs every case once per round (after a warm-up round) and returns MB/s of `bytes` per case. Rounds
 * interleave the cases so that load from other processes on the shared cores hits limits and codec alike.
 */
async function measureAll<K extends string>(
  bytes: number,
  cases: Record<K, () => Promise<void> | void>,
): Promise<Record<K, Rate>> {
  const names = Object.keys(cases) as K[];
  const rates = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let r = -1; r < runs; r++) {
    for (const n of names) {
      const t = performance.now();
      await cases[n]();
      const s = (performance.now() - t) / 1000;
      if (r >= 0) rates[n].push(bytes / 1e6 / s);
    }
  }
  return Object.fromEntries(
    names.map((n) => [n, { best: Math.max(...rates[n]), median: median(rates[n]) }]),
  ) as Record<
    K,
    Rate
  >;
}

const loadStart = Deno.loadavg();
const db = await buildDatabase();
const pageCount = db.length / PS;
const pages: Uint8Array[] = [];
for (let p = 0; p < pageCount; p++) pages.push(db.subarray(p * PS, (p + 1) * PS));
const header: LtxHeader = {
  flags: HEADER_FLAG_NO_CHECKSUM,
  pageSize: PS,
  commit: pageCount,
  minTXID: 1,
  maxTXID: 1,
  timestamp: Date.now(),
  preApplyChecksum: 0n,
  walOffset: 0,
  walSize: 0,
  walSalt1: 0,
  walSalt2: 0,
  nodeID: 0n,
};
// A file-like source: the encoded file in 1 MiB chunks, as Deno.FsFile.readable / S3 bodies deliver it.
// The file is made once here; the timed encode below hands its chunks to a sink that only keeps them.
const CHUNK = 1 << 20;
const encoded = await encodeLtxToBytes(
  header,
  pages.map((p, i): [number, Uint8Array] => [i + 1, p]),
);
const prefixed = pages.map((p) => wasmCompress(p)); // lz4-wasm's own format (size prefix + block)
const blocks = prefixed.map((c) => c.subarray(4));
const blockOut = new Uint8Array(CHUNK + lz4BlockBound(PS));

async function* source(): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < encoded.length; o += CHUNK) yield encoded.subarray(o, o + CHUNK);
}
const m = await measureAll(db.length, {
  // The limits: lz4-wasm through its JS API, and the CRC as any caller gets it.
  lz4Compress: () => {
    for (const p of pages) wasmCompress(p);
  },
  lz4Decompress: () => {
    for (const c of prefixed) wasmDecompress(c);
  },
  crc64: () => {
    const c = new Crc64();
    for (const p of pages) c.update(p);
  },
  // The building blocks the codec runs.
  compressInto: () => {
    let o = 0;
    for (const p of pages) {
      o += compressBlockInto(p, blockOut, o);
      if (o > CHUNK) o = 0;
    }
  },
  kernelDecode: () => {
    for (const b of blocks) decompressBlockInKernel(b, PS);
  },
  crcKernel: () => {
    // Hashing speed does not depend on the bytes: whatever the output region holds stands in for a page.
    const c = new Crc64();
    for (let p = 0; p < pageCount; p++) c.updateKernel(KERNEL_LAYOUT.output, PS);
  },
  kernelDecodeCrc: () => {
    const c = new Crc64();
    for (const b of blocks) c.updateKernel(decompressBlockInKernel(b, PS), PS);
  },
  lz4WasmStrict: () => {
    for (const b of blocks) decompressBlockLz4Wasm(b, PS);
  },
  encode: async () => {
    const chunks: Uint8Array[] = [];
    const enc = new LtxEncoder({ write: (c) => Promise.resolve(void chunks.push(c)) }, header);
    for (let p = 0; p < pageCount; p++) await enc.encodePage(p + 1, pages[p]);
    await enc.finish();
    if (enc.bytesWritten !== encoded.length) throw new Error("encode: output size changed between runs");
  },
  decode: async () => {
    const dec = new LtxDecoder(source(), "bench.ltx");
    while ((await dec.nextPage()) !== null) { /* consume */ }
    await dec.finish();
  },
  decodeDatabaseTo: async () => {
    await decodeDatabaseTo(new LtxDecoder(source(), "bench.ltx"), { write: () => Promise.resolve() });
  },
});
const loadEnd = Deno.loadavg();
const { lz4Compress, lz4Decompress, crc64, encode, decode } = m;
const restore = m.decodeDatabaseTo;
// Zero-overhead bound of doing two passes over every page: 1/(1/a + 1/b).
const bound = (a: number, b: number) => 1 / (1 / a + 1 / b);
const bounds = {
  // The framing: lz4-wasm (JS API) plus the CRC.
  encodeLz4WasmPlusCrc: bound(lz4Compress.best, crc64.best),
  decodeLz4WasmPlusCrc: bound(lz4Decompress.best, crc64.best),
  // What the codec runs: raw-export compression + CRC (page copied into the kernel); kernel decode + CRC.
  encodeCodec: bound(m.compressInto.best, crc64.best),
  decodeCodec: bound(m.kernelDecode.best, m.crcKernel.best),
};

const result = {
  date: new Date().toISOString(),
  deno: Deno.version.deno,
  runs,
  loadAverage: { start: loadStart, end: loadEnd },
  database: { bytes: db.length, pages: pageCount, pageSize: PS },
  ltxBytes: encoded.length,
  compressionRatio: encoded.length / db.length,
  mbPerSecond: m,
  ratio: {
    encodeVsCompress: encode.best / lz4Compress.best,
    decodeVsDecompress: decode.best / lz4Decompress.best,
    encodeVsCodecBound: encode.best / bounds.encodeCodec,
    decodeVsCodecBound: decode.best / bounds.decodeCodec,
  },
  boundMBps: bounds,
  target: 0.7,
};
await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${ROOT}/bench/results/ltx_throughput.json`, JSON.stringify(result, null, 2) + "\n");

const row = (name: string, r: Rate, note = "") =>
  `  ${name.padEnd(54)} ${r.best.toFixed(0).padStart(6)} ${r.median.toFixed(0).padStart(7)}  ${note}`;
const fixed = (name: string, v: number, note = "") =>
  `  ${name.padEnd(54)} ${v.toFixed(0).padStart(6)}  ${note}`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
console.log(
  `LTX throughput: ${(db.length / 1e6).toFixed(1)} MB database, ${pageCount} pages of ${PS} B, ` +
    `LTX ${(encoded.length / 1e6).toFixed(1)} MB (ratio ${result.compressionRatio.toFixed(2)}), ` +
    `best/median of ${runs}; load average ${load(loadStart)} at start, ${load(loadEnd)} at end`,
);
console.log(`  ${"MB/s of page data".padEnd(54)} ${"best".padStart(6)} ${"median".padStart(7)}`);
console.log("limits (the issue's definition: lz4-wasm through its JS API, every page):");
console.log(row("lz4-wasm compress alone = encode limit", lz4Compress));
console.log(row("lz4-wasm decompress alone = decode limit", lz4Decompress));
console.log(row("CRC-64/GO-ISO alone (Crc64.update, page copied in)", crc64));
console.log("building blocks the codec runs:");
console.log(row("lz4-wasm compress via raw exports (compressBlockInto)", m.compressInto));
console.log(row("strict LZ4 kernel decode (decompressBlockInKernel)", m.kernelDecode));
console.log(row("CRC-64 kernel on a page already in kernel memory", m.crcKernel));
console.log(row("kernel decode + CRC in place (decode's inner loop)", m.kernelDecodeCrc));
console.log(row("lz4-wasm decompress + strict pass (previous decoder)", m.lz4WasmStrict));
console.log("codec:");
console.log(
  row(
    "snapshot encode (LtxEncoder)",
    encode,
    `${pct(result.ratio.encodeVsCompress)} of the encode limit (≥ 70 %)`,
  ),
);
console.log(
  row(
    "snapshot decode (LtxDecoder)",
    decode,
    `${pct(result.ratio.decodeVsDecompress)} of the decode limit (≥ 70 %)`,
  ),
);
console.log(row("decodeDatabaseTo (restore path)", restore));
console.log("zero-overhead bounds 1/(1/lz4 + 1/crc) of two passes over every page, from the best values:");
console.log(
  fixed(
    "encode: lz4-wasm compress + CRC",
    bounds.encodeLz4WasmPlusCrc,
    `${pct(bounds.encodeLz4WasmPlusCrc / lz4Compress.best)} of the encode limit`,
  ),
);
const decodeViaLz4Wasm = bounds.decodeLz4WasmPlusCrc / lz4Decompress.best;
console.log(
  fixed(
    "decode: lz4-wasm decompress + CRC",
    bounds.decodeLz4WasmPlusCrc,
    `${pct(decodeViaLz4Wasm)} of the decode limit` +
      (decodeViaLz4Wasm < 0.7 ? ": 70 % is out of reach on this path (why decode uses the kernel)" : ""),
  ),
);
console.log(
  fixed(
    "encode: compressBlockInto + CRC (this codec)",
    bounds.encodeCodec,
    `encode reaches ${pct(result.ratio.encodeVsCodecBound)} of it`,
  ),
);
console.log(
  fixed(
    "decode: kernel decode + kernel CRC (this codec)",
    bounds.decodeCodec,
    `decode reaches ${pct(result.ratio.decodeVsCodecBound)} of it`,
  ),
);
console.log(`wrote bench/results/ltx_throughput.json`);
