/**
 * Corruption corpus: real LTX files (the product's encoder over a real SQLite database's pages) in a replica,
 * mutated in every region — header fields, page headers, size prefixes, compressed payloads, page index,
 * trailer — truncated, renamed, removed from the middle of the chain, emptied. `walrust restore` and
 * `walrust verify` must refuse with one line naming the object and what is wrong, exit 7 (corruption) or
 * 8 (gap), and never write a wrong database or leave a partial output file.
 *
 * Single-byte corruptions: every byte offset of a small snapshot and a small incremental file, in both page
 * encodings, is mutated (four single-bit flips and the full inversion per byte) and decoded in-process. The
 * inversion is detected at every offset. Of the bit flips, a few inside LZ4 *match offsets* decode to exactly
 * the same page (a run of equal bytes copied from a different distance): LTX's file checksum covers the
 * decompressed pages, so no LTX rule can see those (the restored database would be byte-identical). The
 * codec test checks that each such case is harmless (same pages, same header and trailer) and lies inside a
 * compressed payload; then every one of them is planted in a directory replica, where the SHA-256 recorded
 * beside each file catches it (restore and the store's reads refuse: 100 % detected), and on S3 the stored
 * sha256 metadata does the same (last tests).
 */
import assert from "node:assert/strict";
import { runInProcess, runProcess } from "./support/cli.ts";
import { startS3rver } from "./support/s3rver.ts";
import { configureLogging } from "../src/observe/log.ts";
import { CorruptionError } from "../src/errors.ts";
import { LtxDecoder } from "../src/ltx/decoder.ts";
import { formatLtxFilename, HEADER_SIZE } from "../src/ltx/types.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { openObjectStore } from "../src/storage/open.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { type DbHistory, ltxFor, putLtx, sampleHistory } from "../src/restore/testing.ts";
import { restoreDatabase } from "../src/restore/restore.ts";

configureLogging({ level: "error" });

interface Decoded {
  header: string;
  trailer: string;
  pages: [number, Uint8Array][];
  /** Compressed payload byte ranges [start, end) of each frame. */
  payloads: [number, number][];
}

/** Decodes a whole file; throws what the decoder throws. */
async function decodeAll(bytes: Uint8Array): Promise<Decoded> {
  const d = new LtxDecoder(bytes, "mutant");
  const h = await d.readHeader();
  const pages: [number, Uint8Array][] = [];
  const payloads: [number, number][] = [];
  for (let p = await d.nextPage(); p !== null; p = await d.nextPage()) {
    pages.push([p.pgno, p.data]);
    payloads.push([p.offset + (p.flags & 1 ? 10 : 6), p.offset + p.size]);
  }
  const { trailer } = await d.finish();
  const big = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString(16) : v);
  return { header: JSON.stringify(h, big), trailer: JSON.stringify(trailer, big), pages, payloads };
}

function samePages(a: [number, Uint8Array][], b: [number, Uint8Array][]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i][0] !== b[i][0] || a[i][1].length !== b[i][1].length) return false;
    for (let j = 0; j < a[i][1].length; j++) if (a[i][1][j] !== b[i][1][j]) return false;
  }
  return true;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-corruption-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A history of 6 TXIDs at page size 512 (a few pages, so every byte can be mutated quickly). */
function smallHistory(dir: string): DbHistory {
  return sampleHistory(dir, 6, { pageSize: 512 });
}

/** The mutations applied at every byte: four single-bit flips and the full inversion. */
const MASKS = [0x01, 0x04, 0x10, 0x80, 0xff];

/** Sweeps every byte of `file`: returns counts and the offsets (if any) where the inversion went unnoticed. */
async function sweep(file: Uint8Array): Promise<{
  mutations: number;
  detected: number;
  harmless: number;
  harmlessCases: [number, number][];
  problems: string[];
}> {
  const orig = await decodeAll(file);
  const inPayload = (i: number) => orig.payloads.some(([a, b]) => i >= a && i < b);
  let mutations = 0;
  let detected = 0;
  let harmless = 0;
  const harmlessCases: [number, number][] = [];
  const problems: string[] = [];
  for (let i = 0; i < file.length; i++) {
    for (const mask of MASKS) {
      const m = file.slice();
      m[i] ^= mask;
      mutations++;
      let got: Decoded;
      try {
        got = await decodeAll(m);
      } catch (err) {
        if (err instanceof CorruptionError) {
          detected++;
          continue;
        }
        problems.push(`offset ${i} ^0x${mask.toString(16)}: not a CorruptionError: ${err}`);
        continue;
      }
      // Not detected: allowed only when nothing changed for a reader, and only inside an LZ4 payload.
      const same = samePages(got.pages, orig.pages) && got.header === orig.header &&
        got.trailer === orig.trailer;
      if (mask === 255) problems.push(`offset ${i} ^0xff: not detected`);
      else if (!same) {
        problems.push(`offset ${i} ^0x${mask.toString(16)}: decoded to DIFFERENT pages undetected`);
      } else if (!inPayload(i)) {
        problems.push(`offset ${i} ^0x${mask.toString(16)}: undetected outside a payload`);
      } else {
        harmless++;
        harmlessCases.push([i, mask]);
      }
    }
  }
  return { mutations, detected, harmless, harmlessCases, problems };
}

Deno.test("corruption: every single-byte mutation of real snapshot and incremental files, both encodings, is detected — by the LTX checks, or (decoding to identical pages) by the directory replica's recorded sha256", async () => {
  await withDir(async (dir) => {
    const h = smallHistory(dir);
    let total = 0;
    let detected = 0;
    let byDigest = 0;
    for (const pageEncoding of ["block", "frame"] as const) {
      // A directory replica restorable at TXID 6 through both files under test: L9 1-6 alone, and
      // L9 1-3 + L0 4-5 + L0 6 (restore reads them all from disk, where the sidecars are checked).
      const root = `${dir}/replica-${pageEncoding}`;
      const client = new ReplicaClient(new FileObjectStore(root), "app");
      for (const [level, min, max] of [[9, 1, 3], [0, 6, 6]]) {
        await client.writeLtxFile(level, min, max, await ltxFor(h, min, max, { pageEncoding }), {
          timestamp: h.times[max],
        });
      }
      for (const [level, min, max] of [[9, 1, 6], [0, 4, 5]]) {
        const file = await ltxFor(h, min, max, { pageEncoding });
        const r = await sweep(file);
        assert.deepEqual(r.problems, [], `${pageEncoding} ${min}-${max}`);
        assert.ok(r.harmless <= r.mutations * 0.01, `${pageEncoding} ${min}-${max}: ${r.harmless} harmless`);
        total += r.mutations;
        detected += r.detected;
        assert.equal(r.detected + r.harmless, r.mutations);
        // Every mutation the LTX checks cannot see, planted in the replica: refused, nothing written.
        const info = await client.writeLtxFile(level, min, max, file, { timestamp: h.times[max] });
        const path = `${root}/${info.key}`;
        for (const [k, [at, mask]] of r.harmlessCases.entries()) {
          const m = file.slice();
          m[at] ^= mask;
          await Deno.writeFile(path, m);
          const out = `${dir}/out-${pageEncoding}-${min}-${at}-${mask}.db`;
          await assert.rejects(
            // A few snapshot cases through the two-thread path (each thread folds the recorded CRC-64 over its
            // segments; a mismatch falls back to the sequential path, which names the SHA-256), the rest sequential.
            restoreDatabase(client, {
              output: out,
              integrityCheck: false,
              parallelMinBytes: level === 9 && k < 3 ? 0 : undefined,
            }),
            (e: unknown) =>
              e instanceof CorruptionError && /sha256/.test(e.message) && e.message.includes(info.key),
            `${pageEncoding} ${min}-${max} offset ${at} ^0x${mask.toString(16)}`,
          );
          assert.equal(await Deno.stat(out).catch(() => null), null);
          await assert.rejects(client.readLtxFile(level, min, max), CorruptionError);
          byDigest++;
        }
        // Next, the incremental file: without the snapshot 1-6, restore reads 1-3, 4-5 and 6.
        await client.deleteLtxFiles([{ level, minTXID: min, maxTXID: max }]);
      }
    }
    console.error(
      `single-byte mutations: ${total}; detected by the LTX checks ${detected} (${
        ((100 * detected) / total).toFixed(3)
      } %); the other ${byDigest} (LZ4 match offsets inside runs of equal bytes, decoding to identical pages) ` +
        `by the directory replica's sha256: ${detected + byDigest} of ${total} detected`,
    );
    assert.equal(detected + byDigest, total);
  });
});

/** A local replica of `app`: L9 1-3, L0 1…6 (L0 1 full). Restore latest uses L9 1-3 + L0 4, 5, 6. */
async function replica(dir: string): Promise<{ url: string; client: ReplicaClient; h: DbHistory }> {
  const h = smallHistory(dir);
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  await putLtx(client, h, 9, 1, 3);
  for (let t = 1; t <= 6; t++) await putLtx(client, h, 0, t, t);
  return { url, client, h };
}

async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

function l0Path(url: string, t: number): string {
  return `${url}/app/ltx/0/${formatLtxFilename(t, t)}`;
}

/**
 * Runs restore (latest) and verify against the replica and checks: exit `code`, one stderr line naming
 * `object` and matching `what`, and the output directory unchanged (no output, no temp file).
 */
async function expectRefused(
  url: string,
  outDir: string,
  code: number,
  object: string,
  what: RegExp,
  label: string,
): Promise<void> {
  const before = await listing(outDir);
  const r = await runInProcess(["restore", "app", "-o", `${outDir}/out.db`, "-b", url]);
  assert.equal(r.code, code, `${label}: restore exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `${label}: ${r.stderr}`);
  assert.ok(lines[0].includes(object), `${label}: restore message does not name ${object}: ${lines[0]}`);
  assert.match(lines[0], what, label);
  assert.deepEqual(await listing(outDir), before, `${label}: restore left files behind`);
  const v = await runInProcess(["verify", "app", "-b", url]);
  assert.equal(v.code, code, `${label}: verify exit ${v.code}: ${v.stdout}${v.stderr}`);
  assert.ok((v.stdout + v.stderr).includes(object), `${label}: verify does not name ${object}`);
}

/** Byte offsets in each region of an LTX file (block encoding) of `len` bytes. */
function regions(file: Uint8Array): [string, number, RegExp][] {
  const len = file.length;
  const csize = new DataView(file.buffer, file.byteOffset).getUint32(HEADER_SIZE + 6);
  return [
    ["magic", 0, /magic|LTX1|checksum/i],
    ["flags", 7, /flag|checksum/i],
    ["page size", 10, /page size|checksum/i],
    ["commit", 15, /commit|page|checksum/i],
    ["min TXID", 23, /TXID|transaction|checksum/i],
    ["max TXID", 31, /TXID|transaction|checksum/i],
    ["timestamp", 39, /checksum/i],
    ["pre-apply checksum", 47, /checksum/i],
    ["WAL offset", 55, /WAL|checksum/i],
    ["WAL salt", 67, /WAL|salt|checksum/i],
    ["reserved", 90, /checksum|reserved/i],
    ["page header pgno", HEADER_SIZE + 3, /page|checksum/i],
    ["page header flags", HEADER_SIZE + 5, /flag|page|checksum|LZ4/i],
    ["size prefix", HEADER_SIZE + 9, /size|LZ4|truncated|index|checksum/i],
    ["compressed payload", HEADER_SIZE + 10 + Math.floor(csize / 2), /LZ4|checksum/i],
    ["page index", len - 24 - 3, /index|checksum/i],
    ["index size", len - 17, /index|checksum/i],
    ["post-apply checksum", len - 9, /checksum|trailer/i],
    ["file checksum", len - 1, /checksum/i],
  ];
}

Deno.test("corruption CLI: each region of an LTX file in the chain → exit 7 naming the object, nothing written", async () => {
  await withDir(async (dir) => {
    const { url } = await replica(dir);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    const path = l0Path(url, 5);
    const good = await Deno.readFile(path);
    for (const [label, at, what] of regions(good)) {
      const bad = good.slice();
      bad[at] ^= 0xff;
      await Deno.writeFile(path, bad);
      await expectRefused(url, out, 7, formatLtxFilename(5, 5), what, `${label} (byte ${at})`);
    }
    await Deno.writeFile(path, good);
    const ok = await runInProcess(["restore", "app", "-o", `${out}/ok.db`, "-b", url]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

Deno.test("corruption CLI: the snapshot corrupted → exit 7; the existing output of --force is untouched", async () => {
  await withDir(async (dir) => {
    const { url } = await replica(dir);
    const snap = `${url}/app/ltx/9/${formatLtxFilename(1, 3)}`;
    const b = await Deno.readFile(snap);
    b[HEADER_SIZE + 40] ^= 0x10;
    await Deno.writeFile(snap, b);
    const out = `${dir}/existing.db`;
    await Deno.writeTextFile(out, "precious");
    const r = await runInProcess(["restore", "app", "-o", out, "-b", url, "--force"]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /0000000000000001-0000000000000003\.ltx/);
    assert.equal(await Deno.readTextFile(out), "precious");
    assert.deepEqual(await listing(dir), ["existing.db", "replica"]);
  });
});

Deno.test("corruption CLI: truncations, a zero-byte object and trailing garbage → exit 7", async () => {
  await withDir(async (dir) => {
    const { url } = await replica(dir);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    const path = l0Path(url, 4);
    const good = await Deno.readFile(path);
    const name = formatLtxFilename(4, 4);
    for (
      const len of [
        0,
        1,
        50,
        99,
        100,
        104,
        110,
        Math.floor(good.length / 2),
        good.length - 17,
        good.length - 1,
      ]
    ) {
      await Deno.writeFile(path, good.subarray(0, len));
      await expectRefused(
        url,
        out,
        7,
        name,
        /truncated|short|empty|size|index|checksum/i,
        `truncated to ${len}`,
      );
    }
    const longer = new Uint8Array(good.length + 3);
    longer.set(good);
    await Deno.writeFile(path, longer);
    await expectRefused(url, out, 7, name, /index|unexpected|checksum|trailer/i, "3 bytes appended");
  });
});

Deno.test("corruption CLI: a file under the wrong name (contents of TXID 5 named 4) → exit 7", async () => {
  await withDir(async (dir) => {
    const { url } = await replica(dir);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    const four = await Deno.readFile(l0Path(url, 4));
    const five = await Deno.readFile(l0Path(url, 5));
    await Deno.writeFile(l0Path(url, 4), five);
    await Deno.writeFile(l0Path(url, 5), four);
    await expectRefused(url, out, 7, formatLtxFilename(4, 4), /header says TXIDs 5/, "swapped names");
  });
});

Deno.test("corruption CLI: a file missing in the middle of the chain → exit 8 naming the TXIDs; earlier points still restore", async () => {
  await withDir(async (dir) => {
    const { url, h } = await replica(dir);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    await Deno.remove(l0Path(url, 5));
    const r = await runInProcess(["restore", "app", "-o", `${out}/out.db`, "-b", url]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr.trim(), /^walrust: app: backup chain has a gap: TXID 5 missing/);
    assert.deepEqual(await listing(out), []);
    const v = await runInProcess(["verify", "app", "-b", url]);
    assert.equal(v.code, 8, v.stdout);
    assert.match(v.stdout, /gap.*TXID 5\b/);
    const t4 = await runInProcess(["restore", "app", "-o", `${out}/t4.db`, "-b", url, "--txid", "4"]);
    assert.equal(t4.code, 0, t4.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/t4.db`), h.states[4]);
  });
});

Deno.test("corruption CLI: through the real binary (subprocess) too", async () => {
  await withDir(async (dir) => {
    const { url } = await replica(dir);
    const path = l0Path(url, 6);
    const b = await Deno.readFile(path);
    b[HEADER_SIZE + 12] ^= 0x01;
    await Deno.writeFile(path, b);
    const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /0000000000000006-0000000000000006\.ltx/);
    assert.equal(await Deno.stat(`${dir}/out.db`).catch(() => null), null);
    const v = await runProcess(["verify", "app", "-b", url]);
    assert.equal(v.code, 7);
    assert.match(v.stdout + v.stderr, /0000000000000006-0000000000000006\.ltx/);
  });
});

/** A mutation of `file` (offset, xor mask) that decodes to the same pages: the LTX checks cannot see it. */
async function findHarmless(file: Uint8Array): Promise<[number, number]> {
  const orig = await decodeAll(file);
  for (const [a, b] of orig.payloads) {
    for (let i = a; i < b; i++) {
      for (const mask of [1, 2, 4, 8, 16]) {
        const m = file.slice();
        m[i] ^= mask;
        try {
          if (samePages((await decodeAll(m)).pages, orig.pages)) return [i, mask];
        } catch { /* detected */ }
      }
    }
  }
  throw new Error("the sample file has no harmless mutation (the test needs one)");
}

Deno.test("corruption directory: a mutation that decodes identically is caught by the recorded sha256 (restore and verify exit 7)", async () => {
  await withDir(async (dir) => {
    const h = smallHistory(dir);
    const file = await ltxFor(h, 1, 6);
    const [at, mask] = await findHarmless(file);
    const url = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(url), "app");
    const info = await client.writeLtxFile(9, 1, 6, file, { timestamp: h.times[6] });
    const path = `${url}/${info.key}`;
    const stored = await Deno.readFile(path);
    stored[at] ^= mask;
    await Deno.writeFile(path, stored);
    const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /sha256/);
    assert.match(r.stderr, /0000000000000001-0000000000000006\.ltx/);
    assert.equal(await Deno.stat(`${dir}/out.db`).catch(() => null), null);
    const v = await runProcess(["verify", "app", "-b", url]);
    assert.equal(v.code, 7, v.stdout + v.stderr);
    assert.match(v.stdout + v.stderr, /sha256/);
  });
});

Deno.test({
  name: "corruption S3: a mutation that decodes identically is still caught by the stored sha256 (exit 7)",
  sanitizeResources: false,
  async fn() {
    await withDir(async (dir) => {
      const h = smallHistory(dir);
      const file = await ltxFor(h, 1, 6);
      const found = await findHarmless(file);
      const s3 = await startS3rver();
      try {
        const store = openObjectStore({
          url: `s3://${s3.bucket}/corrupt`,
          endpoint: s3.endpoint,
          accessKeyId: s3.accessKeyId,
          secretAccessKey: s3.secretAccessKey,
          region: s3.region,
        });
        const client = new ReplicaClient(store, "app");
        await client.writeLtxFile(9, 1, 6, file, { timestamp: h.times[6] });
        store.close();
        const obj = `${s3.dir}/${s3.bucket}/corrupt/app/0009/${formatLtxFilename(1, 6)}._S3rver_object`;
        const stored = await Deno.readFile(obj);
        stored[found[0]] ^= found[1];
        await Deno.writeFile(obj, stored);
        const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
        const args = ["-b", `s3://${s3.bucket}/corrupt`, "--endpoint", s3.endpoint];
        const r = await runInProcess(["restore", "app", "-o", `${dir}/out.db`, ...args], env);
        assert.equal(r.code, 7, r.stderr);
        assert.match(r.stderr, /sha256/);
        assert.match(r.stderr, /0000000000000001-0000000000000006\.ltx/);
        assert.equal(await Deno.stat(`${dir}/out.db`).catch(() => null), null);
        const v = await runInProcess(["verify", "app", ...args], env);
        assert.equal(v.code, 7, v.stdout);
        assert.match(v.stdout + v.stderr, /sha256/);
      } finally {
        await s3.stop();
      }
    });
  },
});
