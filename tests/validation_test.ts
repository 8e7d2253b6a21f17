/**
 * `watch --validation-interval`: the real CLI as a child process runs `verify` on its replica on a timer. A byte
 * flipped in an uploaded level-0 file of the local-directory replica must reach an operator: a `verify_failed`
 * webhook at a local receiver, and `walrust_validations_total{result="failure"}` on /metrics. Replication goes
 * on meanwhile (validation is off the hot path).
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { waitUntil } from "../src/replicate/testing.ts";
import { flipByte } from "../src/restore/testing.ts";
import { spawnProcess } from "./support/cli.ts";

/** One webhook delivery as the receiver saw it. */
interface Delivery {
  event: string;
  database: string | null;
  error: string | null;
  details: Record<string, unknown>;
}

/** A webhook receiver on 127.0.0.1 that keeps every JSON body it is sent. */
function startReceiver(): { url: string; bodies: Delivery[]; close(): Promise<void> } {
  const bodies: Delivery[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    bodies.push(await req.json());
    return new Response("ok");
  });
  return { url: `http://127.0.0.1:${server.addr.port}/hook`, bodies, close: () => server.shutdown() };
}

/** Level-0 files of `app` in the directory replica, sorted by name (= TXID). */
async function replicaL0(replica: string): Promise<string[]> {
  const dir = `${replica}/app/ltx/0`;
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".ltx")) out.push(`${dir}/${e.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

async function metrics(addr: string): Promise<string> {
  const res = await fetch(`http://${addr}/metrics`);
  return await res.text();
}

Deno.test('validation: watch --validation-interval notices a corrupted L0 file on the replica → verify_failed webhook and walrust_validations_total{result="failure"}', async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-validation-" });
  const receiver = startReceiver();
  let child: Deno.ChildProcess | null = null;
  let drained: Promise<void> = Promise.resolve();
  // Like any application: wait for locks (watch takes the write lock briefly at start, to create _walrust_seq).
  const db = new DatabaseSync(`${dir}/app.db`, { timeout: 5000 });
  try {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    insert.run("first");
    const replica = `${dir}/replica`;
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]
url = "${replica}"

[sync]
interval = "100ms"

[metrics]
addr = "127.0.0.1:0"

[[webhooks]]
url = "${receiver.url}"
events = ["verify_failed", "corruption_detected"]
`,
    );
    child = spawnProcess([
      "watch",
      `${dir}/app.db`,
      "--config",
      `${dir}/walrust.toml`,
      "--validation-interval",
      "300ms",
    ]);
    let log = "";
    const dec = new TextDecoder();
    const stderr = child.stderr;
    drained = (async () => {
      for await (const c of stderr) log += dec.decode(c, { stream: true });
    })();
    await child.stdout.cancel();

    await waitUntil(
      () => /metrics, health and dashboard addr=(\S+)/.test(log),
      20_000,
      `the metrics address:\n${log}`,
    );
    const addr = /metrics, health and dashboard addr=(\S+)/.exec(log)![1];

    // Before any damage, validations pass: a failure later is caused by the flipped byte, not by a race with
    // uploads, compaction or retention.
    insert.run("second");
    await waitUntil(
      async () => /walrust_validations_total\{db="app",result="ok"\} [1-9]/.test(await metrics(addr)),
      20_000,
      `a successful validation:\n${log}`,
    );
    assert.equal(
      receiver.bodies.length,
      0,
      `no webhook while the replica is sound: ${JSON.stringify(receiver.bodies)}`,
    );
    assert.doesNotMatch(await metrics(addr), /result="failure"/);

    // Flip one byte in the middle of an uploaded level-0 file.
    await waitUntil(async () => (await replicaL0(replica)).length > 0, 20_000, "an uploaded L0 file");
    const victim = (await replicaL0(replica))[0];
    const size = (await Deno.stat(victim)).size;
    await flipByte(victim, Math.floor(size / 2));

    await waitUntil(
      () => receiver.bodies.some((b) => b.event === "verify_failed"),
      20_000,
      `a verify_failed webhook:\n${log}`,
    );
    const failed = receiver.bodies.find((b) => b.event === "verify_failed")!;
    assert.equal(failed.database, "app");
    assert.equal(failed.details.exitCode, 7, JSON.stringify(failed));
    assert.match(failed.error ?? "", new RegExp(victim.split("/").pop()!.replace(/\./g, "\\.")));
    assert.ok(
      receiver.bodies.some((b) => b.event === "corruption_detected" && b.database === "app"),
      `corruption_detected names the file too: ${JSON.stringify(receiver.bodies)}`,
    );
    assert.match(await metrics(addr), /walrust_validations_total\{db="app",result="failure"\} [1-9]/);

    // Replication carries on while validations keep failing.
    const before = (await replicaL0(replica)).length;
    insert.run("third");
    await waitUntil(async () => (await replicaL0(replica)).length > before, 20_000, "a new upload");

    child.kill("SIGTERM");
    const status = await child.status;
    child = null;
    await drained;
    assert.equal(status.code, 0, log);
  } finally {
    db.close();
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    }
    await drained;
    await receiver.close();
    await Deno.remove(dir, { recursive: true });
  }
});
