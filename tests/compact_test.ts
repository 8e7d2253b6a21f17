/**
 * End-to-end tests of `walrust compact`: the dry run prints the plan and changes nothing; `--force` compacts
 * and deletes exactly that plan, and the kept restore points still restore.
 */
import assert from "node:assert/strict";
import { runInProcess } from "./support/cli.ts";
import { configureLogging } from "../src/observe/log.ts";
import { type DbHistory, putLtx, sampleHistory } from "../src/restore/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";

configureLogging({ level: "warn" });

const N = 40;
const SNAPSHOTS = [5, 10, 15, 20, 30];
const ZERO = ["--hourly", "0", "--daily", "0", "--weekly", "0", "--monthly", "0"];

/**
 * A replica of `app` relative to the real clock (the command has none to inject): TXIDs 1–20 every 4 hours
 * from four days ago, 21–40 every 90 s up to 90 s ago (38–40 are inside the 5-minute grace period), L0 files
 * for all and snapshots at 5, 10, 15, 20 and 30.
 */
async function replica(dir: string): Promise<{ h: DbHistory; url: string; client: ReplicaClient }> {
  const h = sampleHistory(dir, N);
  const now = Date.now();
  for (let t = 1; t <= N; t++) {
    h.times[t] = t <= 20
      ? now - 4 * 86_400_000 + (t - 1) * 4 * 3_600_000
      : now - 30 * 60_000 + (t - 21) * 90_000;
  }
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  for (let t = 1; t <= N; t++) {
    await putLtx(client, h, 0, t, t);
    if (SNAPSHOTS.includes(t)) await putLtx(client, h, 9, 1, t);
  }
  return { h, url, client };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-compact-e2e-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listing(client: ReplicaClient): Promise<string[]> {
  return (await client.allLtxFiles()).map((f) => `${f.key}@${f.createdAt.getTime()}:${f.size}`);
}

const l0 = (t: number) =>
  `app/ltx/0/${t.toString(16).padStart(16, "0")}-${t.toString(16).padStart(16, "0")}.ltx`;
const snap = (t: number) => `app/ltx/9/0000000000000001-${t.toString(16).padStart(16, "0")}.ltx`;

Deno.test("compact CLI: the dry run prints every compaction and deletion with its reason and changes nothing", async () => {
  await withDir(async (dir) => {
    const { url, client } = await replica(dir);
    const before = await listing(client);
    const r = await runInProcess(["compact", "app", "-b", url, ...ZERO]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^Plan for app in .*replica\/app \(dry run at \d{4}-.*Z\):$/);
    const compactLines = lines.filter((l) => l.startsWith("compact "));
    assert.deepEqual(compactLines, [
      "compact   app/ltx/1/0000000000000001-0000000000000028.ltx  merge 40 level-0 files (TXIDs 1–40) into empty level 1",
      "compact   app/ltx/2/0000000000000001-0000000000000028.ltx  merge 1 level-1 file (TXIDs 1–40) into empty level 2",
      "compact   app/ltx/3/0000000000000001-0000000000000028.ltx  merge 1 level-2 file (TXIDs 1–40) into empty level 3",
    ]);
    const deleteLines = lines.filter((l) => l.startsWith("delete "));
    assert.equal(deleteLines.length, 34);
    for (let t = 1; t <= 30; t++) {
      assert.ok(
        deleteLines.includes(`delete    ${l0(t)}  before the oldest kept snapshot (TXID 30)`),
        `L0 ${t}`,
      );
    }
    for (const t of [5, 10, 15, 20]) {
      assert.ok(
        deleteLines.includes(
          `delete    ${snap(t)}  snapshot not kept by GFS: older than every GFS tier keeps (all tiers are 0)`,
        ),
        `snapshot ${t}`,
      );
    }
    assert.ok(lines.includes(`keep      ${snap(30)}  snapshot kept: newest`));
    assert.match(
      r.stdout,
      /\nTotals: 3 compactions \(42 files merged\); delete 34 of 48 files \(.*\), keep 14 files/,
    );
    assert.match(
      r.stdout,
      /\nRestore points: 4 points: latest TXID 40, 1 snapshot, point-in-time from TXID 30\.\n/,
    );
    assert.match(r.stdout, /Dry run: nothing was changed; run again with --force to apply\.\n$/);
    assert.deepEqual(await listing(client), before, "a dry run changes nothing");

    const j = await runInProcess(["compact", "app", "-b", url, "--json", ...ZERO]);
    assert.equal(j.code, 0, j.stderr);
    const out = JSON.parse(j.stdout);
    assert.equal(out.dryRun, true);
    assert.equal(out.db, "app");
    assert.deepEqual(out.retention, { hourly: 0, daily: 0, weekly: 0, monthly: 0 });
    assert.deepEqual(out.compactions.map((c: { level: number }) => c.level), [1, 2, 3]);
    assert.equal(out.compactions[0].sources.length, 40);
    assert.equal(out.deletions.length, 34);
    assert.deepEqual(out.deletions[0], {
      key: l0(30),
      level: 0,
      minTXID: 30,
      maxTXID: 30,
      size: out.deletions[0].size,
      reason: "before the oldest kept snapshot (TXID 30)",
    });
    assert.deepEqual(
      out.snapshots.filter((s: { kept: boolean }) => s.kept).map((s: { maxTXID: number }) => s.maxTXID),
      [
        30,
      ],
    );
    assert.deepEqual(out.restorePoints, { count: 4, snapshots: 1, latestTXID: 40, pitrFromTXID: 30 });
    assert.equal(out.totals.deleteFiles, 34);
    assert.equal(out.totals.deleted, 0);
    assert.deepEqual(await listing(client), before);
  });
});

Deno.test("compact CLI: --force compacts and deletes the plan; the kept points restore, older ones do not", async () => {
  await withDir(async (dir) => {
    const { h, url, client } = await replica(dir);
    const r = await runInProcess(["compact", "app", "-b", url, "--force", ...ZERO]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Compaction and retention of app in .* at .*Z:\n/);
    assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("compacted ")).length, 3);
    assert.equal(r.stdout.split("\n").filter((l) => l.startsWith("deleted ")).length, 34);
    assert.doesNotMatch(r.stdout, /Dry run/);
    const keys = (await client.allLtxFiles()).map((f) => f.key);
    const hex = (t: number) => t.toString(16).padStart(16, "0");
    assert.deepEqual(keys, [
      ...Array.from({ length: 10 }, (_, i) => l0(31 + i)),
      `app/ltx/1/${hex(1)}-${hex(40)}.ltx`,
      `app/ltx/2/${hex(1)}-${hex(40)}.ltx`,
      `app/ltx/3/${hex(1)}-${hex(40)}.ltx`,
      snap(30),
    ]);
    const l3 = (await client.ltxFiles(3))[0];
    assert.equal(l3.createdAt.getTime(), h.times[40], "a compacted file carries its last input's time");

    for (const t of [40, 38, 30]) {
      const out = `${dir}/r${t}.db`;
      const res = await runInProcess(["restore", "app", "-o", out, "-b", url, "--txid", String(t)]);
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(await Deno.readFile(out), h.states[t], `TXID ${t}`);
    }
    const gone = await runInProcess(["restore", "app", "-o", `${dir}/r25.db`, "-b", url, "--txid", "25"]);
    assert.equal(gone.code, 10, gone.stderr);

    // Nothing is left to do.
    const again = await runInProcess(["compact", "app", "-b", url, "--force", "--json", ...ZERO]);
    assert.equal(again.code, 0, again.stderr);
    const j = JSON.parse(again.stdout);
    assert.deepEqual([j.compactions.length, j.deletions.length, j.totals.deleted], [0, 0, 0]);
  });
});

Deno.test("compact CLI: settings from walrust.toml ([compaction] levels = [] and [retention])", async () => {
  await withDir(async (dir) => {
    const { url, client } = await replica(dir);
    const config = `${dir}/walrust.toml`;
    await Deno.writeTextFile(
      config,
      `[replica]\nurl = "${url}"\n\n[compaction]\nlevels = []\n\n[retention]\nhourly = 0\ndaily = 0\nweekly = 0\nmonthly = 0\n`,
    );
    const r = await runInProcess(["compact", "app", "-c", config, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.compactions, []);
    // Without compaction nothing covers 31–37: only what precedes the kept snapshot goes.
    assert.equal(j.deletions.length, 34);
    assert.equal(j.totals.keepFiles, 11);
    // A flag overrides the file: keeping one daily snapshot adds nothing older than today's newest.
    const d = await runInProcess(["compact", "app", "-c", config, "--json", "--daily", "1"]);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(JSON.parse(d.stdout).retention.daily, 1);
    assert.equal((await client.allLtxFiles()).length, 45, "still a dry run");
  });
});

Deno.test("compact CLI: help, usage errors and a missing database", async () => {
  let r = await runInProcess(["compact", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage: walrust compact <name> -b <url>/);
  assert.match(r.stdout, /--force/);
  assert.match(r.stdout, /--hourly <n>/);
  r = await runInProcess(["compact", "-b", "/tmp/nowhere"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /give exactly one database name/);
  r = await runInProcess(["compact", "app", "-b", "/tmp/nowhere", "--hourly", "x"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--hourly: expected an integer >= 0, got 'x'/);
  r = await runInProcess(["compact", "app", "--bogus"]);
  assert.equal(r.code, 2);
  await withDir(async (dir) => {
    r = await runInProcess(["compact", "nothing", "-b", dir]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /no backup of nothing found in /);
  });
});
