import assert from "node:assert/strict";
import { runInProcess, runProcess } from "./support/cli.ts";
import { encodeLtxToBytes } from "../src/ltx/encoder.ts";
import { LtxDecoder } from "../src/ltx/decoder.ts";
import { formatLtxFilename, type LtxHeader } from "../src/ltx/types.ts";

function header(over: Partial<LtxHeader> = {}): LtxHeader {
  return {
    flags: 2,
    pageSize: 1024,
    commit: 3,
    minTXID: 1,
    maxTXID: 5,
    timestamp: 1754000000123,
    preApplyChecksum: 0n,
    walOffset: 32,
    walSize: 4152,
    walSalt1: 0x1234,
    walSalt2: 7,
    nodeID: 0n,
    ...over,
  };
}

async function ltxFile(h: LtxHeader): Promise<Uint8Array> {
  const pages: [number, Uint8Array][] = [];
  for (let p = h.minTXID === 1 ? 1 : h.commit; p <= h.commit; p++) {
    pages.push([p, new Uint8Array(h.pageSize).fill(p)]);
  }
  return await encodeLtxToBytes(h, pages);
}

/** A temp dir with: a valid snapshot, a valid incremental in a subdirectory, and a non-LTX file. */
async function fixture(): Promise<{ dir: string; snap: string; inc: string; snapBytes: Uint8Array }> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-cli-" });
  await Deno.mkdir(`${dir}/ltx/0`, { recursive: true });
  const snapBytes = await ltxFile(header());
  const snap = `${dir}/ltx/${formatLtxFilename(1, 5)}`;
  await Deno.writeFile(snap, snapBytes);
  const inc = `${dir}/ltx/0/${formatLtxFilename(6, 6)}`;
  await Deno.writeFile(inc, await ltxFile(header({ minTXID: 6, maxTXID: 6, commit: 4 })));
  await Deno.writeFile(`${dir}/ltx/notes.txt`, new TextEncoder().encode("not an ltx file"));
  return { dir, snap, inc, snapBytes };
}

Deno.test("ltx --help and 'help ltx' print real usage text", async () => {
  for (const args of [["ltx", "--help"], ["help", "ltx"]]) {
    const r = await runInProcess(args);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: walrust ltx dump FILE \[--json\]/);
    assert.match(r.stdout, /walrust ltx verify FILE\|DIR/);
  }
  const main = await runInProcess(["--help"]);
  assert.match(main.stdout, /ltx\s+inspect \(dump\) and check \(verify\) LTX/);
});

Deno.test("ltx: usage errors exit 2 with one line", async () => {
  for (
    const [args, re] of [
      [["ltx"], /expected a subcommand/],
      [["ltx", "frobnicate"], /unknown subcommand 'frobnicate'/],
      [["ltx", "dump"], /exactly one FILE/],
      [["ltx", "dump", "a", "b"], /exactly one FILE/],
      [["ltx", "verify"], /expected FILE or DIR/],
      [["ltx", "verify", "--bogus", "x"], /Unknown option '--bogus'/],
    ] as const
  ) {
    const r = await runInProcess([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1);
  }
});

Deno.test("ltx dump: header, every frame, index and trailer (text and --json)", async () => {
  const { dir, snap, snapBytes } = await fixture();
  try {
    const dec = new LtxDecoder(snapBytes, "x");
    const frames = [];
    for (let p = await dec.nextPage(); p; p = await dec.nextPage()) frames.push(p);
    const { trailer } = await dec.finish();
    const text = await runInProcess(["ltx", "dump", snap]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`file +${snap} \\(${snapBytes.length} bytes\\)`));
    assert.match(text.stdout, /TXID 1-5 \(snapshot\), page size 1024, commit 3 pages/);
    assert.match(
      text.stdout,
      /flags 0x00000002 \(NoChecksum\), timestamp 1754000000123 \(2025-07-31T22:13:20\.123Z\)/,
    );
    assert.match(text.stdout, /salts 00001234\/00000007/);
    for (const f of frames) {
      assert.match(
        text.stdout,
        new RegExp(`\\n +${f.pgno} +${f.offset} +${f.size}  0x0001 \\(size \\+ LZ4 block\\)`),
      );
    }
    assert.match(text.stdout, /index +3 entries/);
    assert.match(
      text.stdout,
      new RegExp(`file checksum ${trailer.fileChecksum.toString(16)} \\(verified\\)`),
    );
    assert.match(text.stdout, /\nvalid\n$/);

    const json = await runInProcess(["ltx", "dump", "--json", snap]);
    assert.equal(json.code, 0);
    const d = JSON.parse(json.stdout);
    assert.equal(d.valid, true);
    assert.equal(d.size, snapBytes.length);
    assert.deepEqual(
      { min: d.header.minTXID, max: d.header.maxTXID, ps: d.header.pageSize, snap: d.header.snapshot },
      { min: 1, max: 5, ps: 1024, snap: true },
    );
    assert.equal(d.header.time, "2025-07-31T22:13:20.123Z");
    assert.deepEqual(
      d.pages,
      frames.map((f) => ({ pgno: f.pgno, offset: f.offset, size: f.size, flags: 1 })),
    );
    assert.deepEqual(d.index, frames.map((f) => ({ pgno: f.pgno, offset: f.offset, size: f.size })));
    assert.equal(d.trailer.fileChecksum, trailer.fileChecksum.toString(16).padStart(16, "0"));
    assert.equal(d.trailer.postApplyChecksum, "0000000000000000");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ltx dump: a corrupted file prints what was read, then exits 7 naming the file and byte", async () => {
  const { dir, snap, snapBytes } = await fixture();
  try {
    const bad = snapBytes.slice();
    bad[bad.length - 1] ^= 1;
    await Deno.writeFile(snap, bad);
    const r = await runInProcess(["ltx", "dump", snap]);
    assert.equal(r.code, 7);
    assert.match(r.stdout, /pages +3/);
    assert.match(r.stdout, /INVALID: .*file checksum mismatch/);
    assert.match(r.stderr, new RegExp(`^walrust: ${snap} at byte ${bad.length - 8}: file checksum mismatch`));
    const j = await runInProcess(["ltx", "dump", "--json", snap]);
    assert.equal(j.code, 7);
    const d = JSON.parse(j.stdout);
    assert.equal(d.valid, false);
    assert.match(d.error, /file checksum mismatch/);
    assert.equal(d.trailer, null);
    const missing = await runInProcess(["ltx", "dump", `${dir}/nope.ltx`]);
    assert.equal(missing.code, 10);
    assert.match(missing.stderr, /no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ltx verify: recurses into directories for *.ltx, exit 0 when all valid", async () => {
  const { dir, snap, inc } = await fixture();
  try {
    const r = await runInProcess(["ltx", "verify", dir]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, "verified 2 LTX files: 2 ok, 0 bad\n");
    const v = await runInProcess(["ltx", "verify", "-v", dir]);
    assert.match(v.stdout, new RegExp(`ok  ${inc} \\(TXID 6-6, 1 pages\\)`));
    assert.match(v.stdout, new RegExp(`ok  ${snap} \\(TXID 1-5, 3 pages\\)`));
    const one = await runInProcess(["ltx", "verify", snap]);
    assert.equal(one.code, 0);
    assert.equal(one.stdout, "verified 1 LTX file: 1 ok, 0 bad\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ltx verify: one line per bad file naming what is wrong; exit 7", async () => {
  const { dir, snap, inc } = await fixture();
  try {
    const b = await Deno.readFile(inc);
    b[110] ^= 0x40;
    await Deno.writeFile(inc, b);
    const misnamed = `${dir}/ltx/${formatLtxFilename(1, 6)}`;
    await Deno.copyFile(snap, misnamed);
    await Deno.writeFile(`${dir}/ltx/short.ltx`, (await Deno.readFile(snap)).subarray(0, 60));
    const r = await runInProcess(["ltx", "verify", dir]);
    assert.equal(r.code, 7);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 4, r.stdout);
    assert.match(r.stdout, new RegExp(`BAD ${inc} at byte \\d+: `));
    assert.match(
      r.stdout,
      new RegExp(`BAD ${misnamed} at byte 16: file name says TXIDs 1-6 but the header holds 1-5`),
    );
    assert.match(r.stdout, /BAD .*short\.ltx at byte 60: file is truncated/);
    assert.equal(lines[3], "verified 4 LTX files: 1 ok, 3 bad");
    const j = await runInProcess(["ltx", "verify", "--json", dir]);
    assert.equal(j.code, 7);
    const d = JSON.parse(j.stdout);
    assert.deepEqual([d.files, d.ok, d.bad], [4, 1, 3]);
    assert.ok(d.results.every((x: { ok: boolean; error?: string }) => x.ok || /at byte/.test(x.error!)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ltx verify: a missing path or a directory without .ltx files exits 10", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-ltx-cli-" });
  try {
    const r = await runInProcess(["ltx", "verify", `${dir}/missing`]);
    assert.equal(r.code, 10);
    assert.match(r.stderr, /missing: no such file or directory/);
    const e = await runInProcess(["ltx", "verify", dir]);
    assert.equal(e.code, 10);
    assert.match(e.stderr, /no \.ltx files found under/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ltx verify as a real process (product permissions): exit codes 0 then 7 after corruption", async () => {
  const { dir, snap } = await fixture();
  try {
    const ok = await runProcess(["ltx", "verify", dir]);
    assert.equal(ok.code, 0, ok.stderr);
    const b = await Deno.readFile(snap);
    b[40] ^= 1; // pre-apply checksum of a snapshot must be zero
    await Deno.writeFile(snap, b);
    const bad = await runProcess(["ltx", "verify", dir]);
    assert.equal(bad.code, 7);
    assert.match(
      bad.stdout,
      /BAD .* at byte 40: invalid header: pre-apply checksum must be zero on snapshots/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
