/**
 * End-to-end tests of `walrust restore` against hand-built replicas: a local directory and a real s3rver.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runInProcess } from "./support/cli.ts";
import { runCli } from "../src/cli/main.ts";
import { startS3rver } from "./support/s3rver.ts";
import { configureLogging } from "../src/observe/log.ts";
import { formatTxid } from "../src/ltx/types.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { openObjectStore } from "../src/storage/open.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { type DbHistory, flipByte, putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";

configureLogging({ level: "warn" });

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-e2e-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

function integrity(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[])
      .map((r) => r.integrity_check).join(";");
  } finally {
    db.close();
  }
}

/** A local replica of `app`: L9 1-5, L2 1-9 (created late), L1 6-8, L0 6…12. */
async function localReplica(dir: string): Promise<{ h: DbHistory; url: string; client: ReplicaClient }> {
  const h = sampleHistory(dir, 12);
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  await putLtx(client, h, 9, 1, 5);
  await putLtx(client, h, 2, 1, 9, { timestamp: h.times[12] + 60_000 });
  await putLtx(client, h, 1, 6, 8);
  await putL0Range(client, h, 6, 12);
  return { h, url, client };
}

Deno.test("restore CLI: latest, --txid (decimal and hex) and --timestamp from a directory replica", async () => {
  await withDir(async (dir) => {
    const { h, url } = await localReplica(dir);
    const latest = `${dir}/latest.db`;
    let r = await runInProcess(["restore", "app", "-o", latest, "-b", url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `restored app to ${latest} at TXID 12 (${new Date(h.times[12]).toISOString()})\n`);
    assert.deepEqual(await Deno.readFile(latest), h.states[12]);
    assert.equal(integrity(latest), "ok");

    for (const [arg, t] of [["7", 7], [formatTxid(9), 9], ["5", 5]] as const) {
      const out = `${dir}/t${t}.db`;
      r = await runInProcess(["restore", "app", "-o", out, "-b", url, "--txid", arg]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`at TXID ${t} `));
      assert.deepEqual(await Deno.readFile(out), h.states[t], `--txid ${arg}`);
    }

    // Between TXID 10 and 11: the L2 file (created later) is not eligible; L0/L1 reach exactly 10.
    const ts = `${dir}/ts.db`;
    r = await runInProcess([
      "restore",
      "app",
      "-o",
      ts,
      "-b",
      url,
      "--timestamp",
      new Date(h.times[10] + 500).toISOString(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 10 /);
    assert.deepEqual(await Deno.readFile(ts), h.states[10]);
  });
});

Deno.test("restore CLI: --json summary lists the plan", async () => {
  await withDir(async (dir) => {
    const { url } = await localReplica(dir);
    const r = await runInProcess(["restore", "app", "-o", `${dir}/o.db`, "-b", url, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.status, "restored");
    assert.equal(j.txid, 12);
    assert.equal(j.txidHex, formatTxid(12));
    assert.equal(j.integrityCheck, "ok");
    // From the snapshot (TXID 5) the L2 file 1-9 reaches furthest (it overlaps), then L0 10…12.
    assert.deepEqual(
      j.files.map((f: { level: number; minTXID: number; maxTXID: number }) =>
        `${f.level}:${f.minTXID}-${f.maxTXID}`
      ),
      ["9:1-5", "2:1-9", "0:10-10", "0:11-11", "0:12-12"],
    );
  });
});

Deno.test("restore CLI: a gap exits 8 naming the missing TXIDs and leaves no file", async () => {
  await withDir(async (dir) => {
    const h = sampleHistory(dir, 9);
    const url = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(url), "app");
    await putLtx(client, h, 9, 1, 4);
    await putL0Range(client, h, 5, 5);
    await putL0Range(client, h, 8, 9);
    await Deno.mkdir(`${dir}/out`);
    const r = await runInProcess(["restore", "app", "-o", `${dir}/out/app.db`, "-b", url]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /TXIDs 6–7 missing/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.deepEqual(await names(`${dir}/out`), []);
    // Restoring up to before the gap still works.
    const ok = await runInProcess(["restore", "app", "-o", `${dir}/out/app.db`, "-b", url, "--txid", "5"]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

Deno.test("restore CLI: a flipped byte exits 7 naming the object and leaves no file", async () => {
  await withDir(async (dir) => {
    const { url, client } = await localReplica(dir);
    const key = client.ltxKey(0, 11, 11);
    await flipByte(`${url}/${key}`, 150);
    await Deno.mkdir(`${dir}/out`);
    const r = await runInProcess(["restore", "app", "-o", `${dir}/out/app.db`, "-b", url]);
    assert.equal(r.code, 7, r.stderr);
    assert.ok(r.stderr.includes(key), r.stderr);
    assert.deepEqual(await names(`${dir}/out`), []);
  });
});

Deno.test("restore CLI: existing output exits 11 unless --force; --if-db-not-exists exits 0", async () => {
  await withDir(async (dir) => {
    const { h, url } = await localReplica(dir);
    const out = `${dir}/app.db`;
    await Deno.writeTextFile(out, "precious");
    let r = await runInProcess(["restore", "app", "-o", out, "-b", url]);
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /--force/);
    assert.equal(await Deno.readTextFile(out), "precious");
    r = await runInProcess(["restore", "app", "-o", out, "-b", url, "--if-db-not-exists"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.equal(await Deno.readTextFile(out), "precious");
    await Deno.writeTextFile(`${out}-wal`, "stale wal");
    await Deno.writeTextFile(`${out}-shm`, "stale shm");
    r = await runInProcess(["restore", "app", "-o", out, "-b", url, "--force"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(out), h.states[12]);
    assert.deepEqual((await names(dir)).filter((n) => n.startsWith("app.db")), ["app.db"]);
  });
});

Deno.test("restore CLI: no backup exits 10, or 0 with --if-replica-exists; targets before the first backup exit 10", async () => {
  await withDir(async (dir) => {
    const { h, url } = await localReplica(dir);
    let r = await runInProcess(["restore", "other", "-o", `${dir}/x.db`, "-b", url]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /no backup of other/);
    r = await runInProcess(["restore", "other", "-o", `${dir}/x.db`, "-b", url, "--if-replica-exists"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runInProcess(["restore", "app", "-o", `${dir}/x.db`, "-b", url, "--txid", "3"]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /no backup covers TXID 3/);
    r = await runInProcess([
      "restore",
      "app",
      "-o",
      `${dir}/x.db`,
      "-b",
      url,
      "--timestamp",
      new Date(h.times[1] - 3_600_000).toISOString(),
    ]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /no backup at or before .*; the first backup is at /);
    assert.equal(await Deno.stat(`${dir}/x.db`).then(() => true, () => false), false);
  });
});

Deno.test("restore CLI: usage errors exit 2", async () => {
  await withDir(async (dir) => {
    for (
      const args of [
        ["restore", "app", "-b", dir],
        ["restore", "-o", `${dir}/x.db`, "-b", dir],
        ["restore", "app", "-o", `${dir}/x.db`, "-b", dir, "--txid", "12abc"],
        ["restore", "app", "-o", `${dir}/x.db`, "-b", dir, "--timestamp", "yesterday"],
        [
          "restore",
          "app",
          "-o",
          `${dir}/x.db`,
          "-b",
          dir,
          "--txid",
          "3",
          "--timestamp",
          "2025-01-01T00:00:00Z",
        ],
      ]
    ) {
      const r = await runInProcess(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    }
  });
});

Deno.test("restore and verify CLI against s3rver: latest, --txid, --timestamp (metadata times), sha256, corrupt object", async () => {
  const s3 = await startS3rver();
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-s3-" });
  const env = {
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_REGION: s3.region,
  };
  const url = `s3://${s3.bucket}/backups`;
  const store = openObjectStore({
    url,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
  try {
    const h = sampleHistory(dir, 10);
    const client = new ReplicaClient(store, "app");
    await putLtx(client, h, 9, 1, 4);
    await putLtx(client, h, 1, 5, 8, { pageEncoding: "frame" });
    await putL0Range(client, h, 5, 10);
    const base = ["-b", url, "--endpoint", s3.endpoint];

    let r = await runInProcess(["restore", "app", "-o", `${dir}/a.db`, ...base], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/a.db`), h.states[10]);
    assert.equal(integrity(`${dir}/a.db`), "ok");

    r = await runInProcess(["restore", "app", "-o", `${dir}/b.db`, ...base, "--txid", "6"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(`${dir}/b.db`), h.states[6]);

    // s3rver's LastModified is "now"; the restore must use the litestream-timestamp metadata instead.
    const at = new Date(h.times[7] + 10).toISOString();
    r = await runInProcess(["restore", "app", "-o", `${dir}/c.db`, ...base, "--timestamp", at], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 7 /);
    assert.deepEqual(await Deno.readFile(`${dir}/c.db`), h.states[7]);

    // verify on S3 compares every object's sha256 metadata too.
    r = await runInProcess(["verify", "app", ...base, "--json"], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).sha256Checked, 8);

    // Flip a byte of an object on s3rver's disk: its sha256 metadata (and LTX checksum) no longer match.
    const key = client.ltxKey(0, 9, 9);
    await flipByte(`${s3.dir}/${s3.bucket}/backups/${key}._S3rver_object`, 120);
    r = await runInProcess(["restore", "app", "-o", `${dir}/d.db`, ...base], env);
    assert.equal(r.code, 7, r.stderr);
    assert.ok(r.stderr.includes(key), r.stderr);
    assert.equal(await Deno.stat(`${dir}/d.db`).then(() => true, () => false), false);
    r = await runInProcess(["verify", "app", ...base, "--json"], env);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.ok(JSON.parse(r.stdout).problems[0].message.includes(key));
  } finally {
    store.close();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore CLI: progress (bytes, rate, ETA) on a terminal only", async () => {
  await withDir(async (dir) => {
    const { url } = await localReplica(dir);
    for (const isTTY of [true, false]) {
      let err = "";
      let out = "";
      const code = await runCli(["restore", "app", "-o", `${dir}/p-${isTTY}.db`, "-b", url], {
        stdout: (t) => void (out += t),
        stderr: (t) => void (err += t),
        isTTY,
        env: (n) => Deno.env.get(n),
      });
      assert.equal(code, 0, err);
      assert.match(out, /^restored app to /);
      if (isTTY) {
        assert.match(err, /\rrestoring app {2}[\d.]+ (B|KiB) \/ [\d.]+ KiB {2}\d+%/);
        assert.ok(err.endsWith("\r\x1b[K"), JSON.stringify(err));
      } else {
        assert.equal(err, "");
      }
    }
  });
});
