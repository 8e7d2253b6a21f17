/**
 * `walrust watch` end to end against a real S3 server (s3rver) behind the fault proxy, which enforces
 * conditional writes (so the lease is real) and injects 503s, connection resets and latency. Includes a
 * kill -9 and restart (the killed process's lease must be taken over) and a full outage during which the
 * queue grows and then drains in order.
 */

import assert from "node:assert/strict";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { S3ObjectStore } from "../src/storage/s3.ts";
import { checkReplica, spawnWalrust, waitUntil, type WatchProcess } from "../src/replicate/testing.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { type S3rver, startS3rver } from "./support/s3rver.ts";
import { ALL_OPS, readWriterLog, spawnWriter, TestWriter } from "./support/writer.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function env(s3: S3rver): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_REGION: s3.region,
  };
}

async function startWatch(args: string[], s3: S3rver): Promise<WatchProcess> {
  const p = spawnWalrust(["watch", ...args, "--no-metrics", "--sync-interval", "100ms"], env(s3));
  await waitUntil(
    () => p.log().includes("watching") || p.log().includes("walrust:"),
    30_000,
    "watch to start",
  );
  assert.ok(p.log().includes("watching"), `watch failed to start:\n${p.log()}`);
  return p;
}

/** A client reading s3rver directly (no faults). */
function directClient(s3: S3rver, name: string): ReplicaClient {
  const store = new S3ObjectStore({
    bucket: s3.bucket,
    prefix: "backups",
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
  return new ReplicaClient(store, name);
}

Deno.test("watch to S3 through injected faults, with kill -9 and restart: everything committed is restored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-s3-" });
  const s3 = await startS3rver();
  const proxy = await startFaultProxy(s3.endpoint);
  let watch: WatchProcess | null = null;
  let writer: ReturnType<typeof spawnWriter> | null = null;
  try {
    proxy.setFaults({
      seed: 5,
      rules: [
        { kind: "error_503", method: "PUT", path: ".ltx", probability: 0.15 },
        { kind: "reset", method: "PUT", path: ".ltx", probability: 0.05, afterUpstream: true },
        { kind: "latency", probability: 0.1, latencyMs: 80 },
      ],
    });
    const db = `${dir}/main.db`;
    const log = `${dir}/writer.log`;
    TestWriter.open(db, { log }).close();
    const args = [db, "-b", `s3://${s3.bucket}/backups`, "--endpoint", proxy.endpoint];
    watch = await startWatch(args, s3);
    writer = spawnWriter(db, { durationMs: 3000, rate: 80, mix: ALL_OPS, autocheckpoint: 50, seed: 21, log });
    await writer.ready;
    await sleep(1200);
    await watch.kill9();
    watch = await startWatch(args, s3); // the killed process's lease is still there: it must be taken over
    assert.match(watch.log(), /taking over the lease left by an earlier walrust process/);
    assert.equal((await writer.status).code, 0);
    writer = null;
    assert.equal(await watch.stop(), 0, `clean shutdown exits 0:\n${watch.log()}`);
    watch = null;
    assert.ok(proxy.injectedTotal() > 0, "faults were injected");

    const client = directClient(s3, "main");
    const records = await readWriterLog(log);
    const check = await checkReplica(client, records, dir, 3);
    assert.equal(check.seq, records[records.length - 1].seq, "the last committed transaction is there");
    const keys: string[] = [];
    for await (const o of client.store.list("main/")) keys.push(o.key); // keys relative to s3://bucket/backups
    assert.ok(keys.some((k) => /^main\/0000\/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$/.test(k)), `L0 keys: ${keys}`);
    assert.ok(keys.some((k) => /^main\/0009\/0000000000000001-[0-9a-f]{16}\.ltx$/.test(k)), "L9 keys");
    assert.ok(!keys.includes("main/lease.json"), "the lease was released on shutdown");
    client.store.close();
  } finally {
    await writer?.kill().catch(() => {});
    await watch?.kill9().catch(() => {});
    await proxy.stop();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch to S3: during a full outage the local queue grows, then drains in order when S3 is back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-watch-s3-" });
  const s3 = await startS3rver();
  const proxy = await startFaultProxy(s3.endpoint);
  let watch: WatchProcess | null = null;
  try {
    const db = `${dir}/app.db`;
    const log = `${dir}/writer.log`;
    TestWriter.open(db, { log }).close();
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[retry]\nmax_attempts = 2\nbase_delay = "20ms"\nmax_delay = "100ms"\nbreaker_cooldown = "300ms"\n` +
        `[sync]\nshutdown_timeout = "500ms"\n`,
    );
    watch = await startWatch(
      [
        "--config",
        `${dir}/walrust.toml`,
        db,
        "-b",
        `s3://${s3.bucket}/backups`,
        "--endpoint",
        proxy.endpoint,
      ],
      s3,
    );
    proxy.setFaults({ rules: [{ kind: "error_503" }] }); // S3 is down
    const writer = spawnWriter(db, { count: 40, rate: 40, seed: 3, log });
    assert.equal((await writer.status).code, 0);
    const queueDir = `${dir}/.app.db-walrust/ltx/0`;
    await waitUntil(() => [...Deno.readDirSync(queueDir)].length >= 3, 10_000, "files to queue up locally");
    assert.match(watch.log(), /upload failed/);
    // Stopped during the outage: exit 130, nothing lost, the files wait in the local queue.
    assert.equal(await watch.stop(), 130, watch.log());
    assert.match(watch.log(), /file\(s\) still in the local queue; nothing is lost/);
    watch = null;
    proxy.setFaults({ rules: [] }); // S3 is back: the next start ships them
    watch = await startWatch(
      [
        "--config",
        `${dir}/walrust.toml`,
        db,
        "-b",
        `s3://${s3.bucket}/backups`,
        "--endpoint",
        proxy.endpoint,
      ],
      s3,
    );
    assert.equal(await watch.stop(), 0, `the queue drained:\n${watch.log()}`);
    watch = null;
    const client = directClient(s3, "app");
    const check = await checkReplica(client, await readWriterLog(log), dir, 2);
    assert.equal(check.seq, 40);
    client.store.close();
  } finally {
    await watch?.kill9().catch(() => {});
    await proxy.stop();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
