/**
 * `walrust snapshot <db> -b <url>`: a level-9 snapshot on demand, standalone; it keeps the TXID chain
 * contiguous (an L0 file for a database that changed since the replica's newest TXID), refuses while a
 * `watch` replicates the database, and a later `watch` continues the chain.
 */

import assert from "node:assert/strict";
import { ExitCode } from "../src/errors.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { checkReplica, spawnWalrust, waitUntil, type WatchProcess } from "../src/replicate/testing.ts";
import { runInProcess } from "./support/cli.ts";
import { readWriterLog, spawnWriter, TestWriter } from "./support/writer.ts";

function levels(files: { level: number; minTXID: number; maxTXID: number }[]): string[] {
  return files.map((f) => `${f.level}:${f.minTXID}-${f.maxTXID}`);
}

Deno.test("snapshot: on demand, keeps the TXID chain contiguous, and a later watch continues it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-snapshot-" });
  let watch: WatchProcess | null = null;
  try {
    const db = `${dir}/app.db`;
    const log = `${dir}/writer.log`;
    const replica = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(replica), "app");
    let w = TestWriter.open(db, { log, seed: 4 });
    for (let i = 0; i < 5; i++) w.step("inserts");
    w.close();

    const first = await runInProcess(["snapshot", db, "-b", replica]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /snapshot of app at TXID 0000000000000001 \(\d+ bytes\) uploaded to /);
    assert.deepEqual(levels(await client.allLtxFiles()), ["0:1-1", "9:1-1"]);

    w = TestWriter.open(db, { log, seed: 5 });
    for (let i = 0; i < 5; i++) w.step("blobs");
    w.close();
    const second = await runInProcess(["snapshot", db, "-b", replica, "--json"]);
    assert.equal(second.code, 0, second.stderr);
    const out = JSON.parse(second.stdout);
    assert.equal(out.txid, 2, "the changed database got a new TXID");
    assert.equal(out.txidHex, "0000000000000002");
    assert.ok(out.bytes > 0);
    assert.deepEqual(levels(await client.allLtxFiles()), ["0:1-1", "0:2-2", "9:1-1", "9:1-2"]);

    // A watch started afterwards continues the chain.
    watch = spawnWalrust(["watch", db, "-b", replica, "--no-metrics", "--sync-interval", "100ms"]);
    await waitUntil(
      () => watch!.log().includes("watching") || watch!.log().includes("walrust:"),
      30_000,
      "watch",
    );
    const writer = spawnWriter(db, { count: 30, rate: 60, seed: 6, log });
    assert.equal((await writer.status).code, 0);
    assert.equal(await watch.stop(), 0, watch.log());
    watch = null;
    const check = await checkReplica(client, await readWriterLog(log), dir, 3);
    const records = await readWriterLog(log);
    assert.equal(check.seq, records[records.length - 1].seq);
    assert.ok(check.txid > 2);
  } finally {
    await watch?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshot: refused with exit 11 while a watch replicates the database", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-snapshot-" });
  let watch: WatchProcess | null = null;
  try {
    const db = `${dir}/app.db`;
    TestWriter.open(db).close();
    watch = spawnWalrust(["watch", db, "-b", `${dir}/replica`, "--no-metrics"]);
    await waitUntil(
      () => watch!.log().includes("watching") || watch!.log().includes("walrust:"),
      30_000,
      "watch",
    );
    const r = await runInProcess(["snapshot", db, "-b", `${dir}/replica`]);
    assert.equal(r.code, ExitCode.CONFLICT, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `is being replicated by process ${watch.child.pid} .*the running watch takes snapshots on its own schedule`,
      ),
    );
    assert.equal(await watch.stop(), 0);
    watch = null;
    const usage = await runInProcess(["snapshot", "-b", `${dir}/replica`]);
    assert.equal(usage.code, ExitCode.USAGE);
  } finally {
    await watch?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});
