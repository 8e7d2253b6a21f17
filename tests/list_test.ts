/**
 * End-to-end tests of `walrust list`: text and JSON, deterministic order, one name, v0.3 data.
 */
import assert from "node:assert/strict";
import { runInProcess } from "./support/cli.ts";
import { configureLogging } from "../src/observe/log.ts";
import { encodeLz4Frame, putV3Object } from "../src/litestream/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";

configureLogging({ level: "error" });

async function withReplica(fn: (url: string, times: number[]) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-list-e2e-" });
  try {
    const h = sampleHistory(dir, 8);
    const url = `${dir}/replica`;
    const store = new FileObjectStore(url);
    // Written in non-alphabetical order on purpose.
    for (const name of ["zeta", "app"]) {
      const c = new ReplicaClient(store, name);
      await putLtx(c, h, 9, 1, 3);
      await putLtx(c, h, 1, 4, 6);
      await putL0Range(c, h, 4, name === "app" ? 8 : 6);
    }
    await putV3Object(
      store,
      "legacy/generations/00000000000000aa/snapshots/00000000.snapshot.lz4",
      encodeLz4Frame(h.states[2]),
      new Date(h.times[2]),
    );
    await fn(url, h.times);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("list CLI: text lists databases sorted, levels ascending with range, files, size, newest", async () => {
  await withReplica(async (url, times) => {
    const r = await runInProcess(["list", "-b", url]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], `databases in ${url}:`);
    const names = lines.filter((l) => /^[a-z]/.test(l) && !l.startsWith("databases"));
    assert.deepEqual(names, ["app", "legacy", "zeta"]);
    const app = r.stdout.slice(r.stdout.indexOf("\napp\n"), r.stdout.indexOf("\nlegacy\n"));
    assert.match(app, /level\s+TXIDs\s+files\s+size\s+newest/);
    assert.match(
      app,
      new RegExp(`L0\\s+4-8\\s+5 files\\s+[\\d.]+ KiB\\s+${new Date(times[8]).toISOString()}`),
    );
    assert.match(app, /L1\s+4-6\s+1 file\s/);
    assert.match(app, /L9\s+1-3\s+1 file\s/);
    assert.ok(app.indexOf("L0") < app.indexOf("L1") && app.indexOf("L1") < app.indexOf("L9"));
    assert.match(
      r.stdout,
      /legacy\n {2}Litestream v0\.3: 1 generation, 1 snapshot, 0 WAL segments, .*, newest /,
    );
    // Same input, same output.
    assert.equal((await runInProcess(["list", "-b", url])).stdout, r.stdout);
  });
});

Deno.test("list CLI: --json, one database by name, unknown name exits 10", async () => {
  await withReplica(async (url, times) => {
    const r = await runInProcess(["list", "-b", url, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.replica, url);
    assert.deepEqual(j.databases.map((d: { name: string }) => d.name), ["app", "legacy", "zeta"]);
    const app = j.databases[0];
    assert.equal(app.maxTXID, 8);
    assert.deepEqual(
      app.levels.map((l: { level: number; minTXID: number; maxTXID: number; files: number }) => [
        l.level,
        l.minTXID,
        l.maxTXID,
        l.files,
      ]),
      [[0, 4, 8, 5], [1, 4, 6, 1], [9, 1, 3, 1]],
    );
    assert.equal(app.levels[0].newest, new Date(times[8]).toISOString());
    assert.ok(app.levels.every((l: { bytes: number }) => l.bytes > 0));
    assert.equal(app.v3, null);
    assert.equal(j.databases[1].v3.snapshots, 1);
    assert.deepEqual(j.databases[1].levels, []);

    const one = await runInProcess(["list", "-b", url, "zeta", "--json"]);
    assert.equal(one.code, 0, one.stderr);
    const z = JSON.parse(one.stdout);
    assert.deepEqual(z.databases.map((d: { name: string }) => d.name), ["zeta"]);
    assert.equal(z.databases[0].maxTXID, 6);

    const none = await runInProcess(["list", "-b", url, "nope"]);
    assert.equal(none.code, 10);
    assert.match(none.stderr, /no backup of nope/);
  });
});

Deno.test("list CLI: an empty replica says so and exits 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-list-empty-" });
  try {
    const r = await runInProcess(["list", "-b", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `no databases found in ${dir}\n`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
