/**
 * `walrust watch` end to end against a local directory replica: the real CLI as a child process, a separate
 * writer process committing inserts, updates, deletes, blobs larger than a page, schema changes, VACUUM and
 * application checkpoints (with SQLite's autocheckpoint on), then restores compared with the writer's log.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ExitCode } from "../src/errors.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { restoreDatabase } from "../src/restore/restore.ts";
import { checkReplica, spawnWalrust, waitUntil, type WatchProcess } from "../src/replicate/testing.ts";
import { runInProcess } from "./support/cli.ts";
import { databaseDigest } from "./support/sqlite_state.ts";
import { ALL_OPS, readWriterLog, spawnWriter, TestWriter } from "./support/writer.ts";

function createDb(path: string, log: string): void {
  const w = TestWriter.open(path, { log });
  w.close();
}

async function waitWatching(p: WatchProcess): Promise<void> {
  await waitUntil(
    () => p.log().includes("watching") || p.log().includes("walrust:"),
    30_000,
    "watch to start",
  );
  assert.ok(p.log().includes("watching"), `watch failed to start:\n${p.log()}`);
}

Deno.test("watch: mixed workload with VACUUM, schema changes, app checkpoints and autocheckpoint; two databases; restores equal the source, byte for byte", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-file-" });
  const watch: WatchProcess[] = [];
  const writers: ReturnType<typeof spawnWriter>[] = [];
  try {
    const dbs = [`${dir}/main.db`, `${dir}/second.db`];
    const logs = [`${dir}/main.log`, `${dir}/second.log`];
    dbs.forEach((p, i) => createDb(p, logs[i]));
    const replica = `${dir}/replica`;
    watch.push(spawnWalrust([
      "watch",
      ...dbs,
      "-b",
      replica,
      "--no-metrics",
      "--sync-interval",
      "100ms",
      "--min-checkpoint-pages",
      "150",
      "--checkpoint-interval",
      "1s",
      "--snapshot-interval",
      "1500ms",
    ]));
    await waitWatching(watch[0]);
    writers.push(spawnWriter(dbs[0], {
      durationMs: 3500,
      rate: 120,
      mix: ALL_OPS,
      autocheckpoint: 50,
      seed: 7,
      log: logs[0],
    }));
    writers.push(spawnWriter(dbs[1], { durationMs: 2000, rate: 40, seed: 8, log: logs[1] }));
    for (const w of writers) assert.equal((await w.status).code, 0, "writer succeeded");
    const code = await watch[0].stop();
    assert.equal(code, 0, `clean shutdown exits 0:\n${watch[0].log()}`);
    if (Deno.env.get("WALRUST_TEST_DEBUG")) console.log(watch[0].log());
    assert.match(watch[0].log(), /checkpoint/, "walrust checkpointed during the run");
    assert.match(watch[0].log(), /snapshot queued/, "periodic snapshots were taken");

    const store = new FileObjectStore(replica);
    for (const [i, name] of ["main", "second"].entries()) {
      const records = await readWriterLog(logs[i]);
      const client = new ReplicaClient(store, name);
      const check = await checkReplica(client, records, dir, i === 0 ? 5 : 2);
      if (Deno.env.get("WALRUST_TEST_DEBUG")) {
        console.log(
          name,
          check,
          records.length,
          records.map((r) => r.op).filter((o) => o !== "inserts").join(","),
        );
      }
      assert.equal(
        check.seq,
        records[records.length - 1].seq,
        `${name}: the last committed transaction is there`,
      );
      assert.ok((await client.ltxFiles(9)).length >= 1, `${name}: has a snapshot`);
      // Every process is gone and the last one checkpointed the WAL: the source file is complete. A restore
      // is then the same file, byte for byte.
      const src = new DatabaseSync(dbs[i], { timeout: 5000 });
      src.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      const digest = databaseDigest(src);
      src.close();
      const out = `${dir}/${name}-restored.db`;
      await restoreDatabase(client, { output: out });
      assert.equal(databaseDigest(out), digest);
      const [a, b] = [await Deno.readFile(dbs[i]), await Deno.readFile(out)];
      assert.equal(b.length, a.length, `${name}: same size`);
      assert.ok(a.every((x, j) => x === b[j]), `${name}: byte-identical`);
    }
  } finally {
    for (const w of writers) await w.kill().catch(() => {});
    for (const p of watch) await p.kill9().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch: a second watch of the same database, or of another database with the same replica name, exits 11", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-file-" });
  let first: WatchProcess | null = null;
  try {
    await Deno.mkdir(`${dir}/other`);
    createDb(`${dir}/app.db`, `${dir}/a.log`);
    createDb(`${dir}/other/app.db`, `${dir}/b.log`);
    first = spawnWalrust(["watch", `${dir}/app.db`, "-b", `${dir}/replica`, "--metrics-addr", "127.0.0.1:0"]);
    await waitWatching(first);
    // The running watch serves /health and /metrics from its live status.
    const addr = /metrics, health and dashboard addr=(\S+)/.exec(first.log())?.[1];
    assert.ok(addr, `metrics address logged:\n${first.log()}`);
    await waitUntil(
      async () => {
        const h = await (await fetch(`http://${addr}/health`)).json();
        return h.databases?.app?.replicated_txid >= 1;
      },
      10_000,
      "the first TXID to be replicated",
    );
    const metrics = await (await fetch(`http://${addr}/metrics`)).text();
    assert.match(metrics, /walrust_replicated_txid\{db="app"\} [1-9]/);
    const same = await runInProcess(["watch", `${dir}/app.db`, "-b", `${dir}/replica`, "--no-metrics"]);
    assert.equal(same.code, ExitCode.CONFLICT, same.stderr);
    assert.match(same.stderr, new RegExp(`is being replicated by process ${first.child.pid}`));
    const sameName = await runInProcess([
      "watch",
      `${dir}/other/app.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
    ]);
    assert.equal(sameName.code, ExitCode.CONFLICT, sameName.stderr);
    assert.match(sameName.stderr, /is being written by/);
    assert.equal(await first.stop(), 0);
    first = null;
  } finally {
    await first?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch: a missing database or one not in WAL mode exits 3 with a clear message", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-file-" });
  try {
    const missing = await runInProcess(["watch", `${dir}/nope.db`, "-b", `${dir}/replica`, "--no-metrics"]);
    assert.equal(missing.code, ExitCode.DATABASE, missing.stderr);
    assert.match(missing.stderr, /nope\.db/);
    const db = new DatabaseSync(`${dir}/rollback.db`);
    db.exec("CREATE TABLE t (x)");
    db.close();
    const notWal = await runInProcess([
      "watch",
      `${dir}/rollback.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
    ]);
    assert.equal(notWal.code, ExitCode.DATABASE, notWal.stderr);
    assert.match(notWal.stderr, /not in WAL mode/);
    const text = new TextEncoder().encode(
      "this is not a database, just text that is long enough to have a header",
    );
    await Deno.writeFile(`${dir}/text.db`, text);
    const notDb = await runInProcess(["watch", `${dir}/text.db`, "-b", `${dir}/replica`, "--no-metrics"]);
    assert.equal(notDb.code, ExitCode.DATABASE, notDb.stderr);
    assert.match(notDb.stderr, /not a SQLite database/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch --exec: runs the command, stops when it exits, and returns its exit code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-file-" });
  try {
    createDb(`${dir}/app.db`, `${dir}/a.log`);
    const r = await runInProcess([
      "watch",
      `${dir}/app.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
      "--log-level",
      "error",
      "--exec",
      `sleep 0.3; exit 7`,
    ]);
    assert.equal(r.code, 7, r.stderr);
    const files = await new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app").allLtxFiles();
    assert.ok(files.some((f) => f.level === 0 && f.minTXID === 1), "replicated while the command ran");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
