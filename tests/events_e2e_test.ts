/**
 * The failure events reach an operator: `watch` against s3rver behind the fault proxy, with a webhook receiver
 * (`Deno.serve` on port 0, `[[webhooks]]` in walrust.toml), through
 * - wrong credentials (the proxy answers 403 InvalidAccessKeyId, then SignatureDoesNotMatch: s3rver itself does
 *   not check signatures) → `auth_failure` once per change of message, `upload_failed`; each failure costs one
 *   request (never retried), one log line per change, and the queue stays on disk until the credentials work;
 * - a damaged file in the local queue → `corruption_detected`, then the queue is rebuilt and nothing is lost;
 * - an outage (503 on every request) → `circuit_breaker_open`, then `circuit_breaker_closed` when it is over;
 * - rejected credentials at start (the real CLI, a child process) → exit 4 at once and `auth_failure`.
 * `verify_failed` and `corruption_detected` from the periodic validation are in `validation_test.ts`.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runWatch } from "../src/cli/watch.ts";
import type { CliIO } from "../src/cli/command.ts";
import { resolveWatchSettings } from "../src/config/cli.ts";
import { ExitCode } from "../src/errors.ts";
import type { WalrustEvent, WalrustEventType } from "../src/observe/events.ts";
import { configureLogging } from "../src/observe/log.ts";
import type { Supervisor } from "../src/replicate/supervisor.ts";
import { waitUntil } from "../src/replicate/testing.ts";
import { restoreDatabase } from "../src/restore/restore.ts";
import { flipByte } from "../src/restore/testing.ts";
import { openObjectStore } from "../src/storage/open.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { spawnProcess } from "./support/cli.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { startS3rver } from "./support/s3rver.ts";
import { tableCounts } from "./support/sqlite_state.ts";

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

/** An IO that sees no environment, so AWS_* variables of the machine cannot change the test. */
const QUIET_IO: CliIO = { stdout() {}, stderr() {}, isTTY: false, env: () => undefined };

const stderrWriter = (line: string) => {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
};

Deno.test({
  name:
    "events: wrong credentials, a damaged queued file and an outage reach the webhook receiver; credentials fail fast, are logged once per change, and the queue survives",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const s3 = await startS3rver();
  const proxy = await startFaultProxy(s3.endpoint);
  const receiver = startReceiver();
  const dir = await Deno.makeTempDir({ prefix: "walrust-events-" });
  const lines: string[] = [];
  configureLogging({ level: "info", write: (l) => lines.push(l) });
  const db = new DatabaseSync(`${dir}/app.db`, { timeout: 5000 });
  let stop: () => void = () => {};
  const stopPromise = new Promise<void>((r) => (stop = r));
  let watching: Promise<number> | null = null;
  try {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    let rows = 0;
    const write = () => insert.run(`row ${++rows} ${"x".repeat(300)}`);
    write();
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]
url = "s3://${s3.bucket}/events"
endpoint = "${proxy.endpoint}"
region = "${s3.region}"
force_path_style = true
access_key_id = "${s3.accessKeyId}"
secret_access_key = "${s3.secretAccessKey}"

[sync]
interval = "100ms"

[retry]
max_attempts = 3
base_delay = "10ms"
max_delay = "20ms"
breaker_threshold = 3
breaker_cooldown = "300ms"

[metrics]
enabled = false

[[webhooks]]
url = "${receiver.url}"
`,
    );
    const settings = await resolveWatchSettings(
      [`${dir}/app.db`],
      { config: `${dir}/walrust.toml` },
      QUIET_IO,
    );
    const events: WalrustEvent[] = [];
    let onStarted: (s: Supervisor) => void = () => {};
    const started = new Promise<Supervisor>((r) => (onStarted = r));
    watching = runWatch(settings, QUIET_IO, {
      stop: stopPromise,
      onStarted,
      supervisor: {
        // The store opener is the one place the test can listen to watch's own event bus.
        openStore: (d, bus) => {
          bus.subscribe((e) => void events.push(e));
          return openObjectStore(d.replica, { retry: d.retry, bus, db: d.name });
        },
        // Short failure backoffs so that many passes fit in a short test (defaults: 1 s … 30 s, 60 s for auth).
        replicator: { uploader: { idleMs: 100, minBackoffMs: 100, maxBackoffMs: 300, authBackoffMs: 150 } },
      },
    });
    const sup = await Promise.race([
      started,
      watching.then((code): never => {
        throw new Error(`watch ended early with ${code}:\n${lines.join("\n")}`);
      }),
    ]);
    const rep = sup.replicators[0];
    const since = (mark: number, type: WalrustEventType) => events.slice(mark).filter((e) => e.type === type);
    const caughtUp = () => {
      const s = rep.status();
      return s.txid > 0 && s.replicatedTxid === s.txid && s.queueFiles === 0;
    };
    const authLines = () => lines.filter((l) => l.includes("rejected the credentials")).length;
    await waitUntil(caughtUp, 20_000, "the first upload");

    // ---- wrong access key: every pass fails at once, one log line, one auth_failure, queue kept.
    let mark = events.length;
    proxy.setFaults({ rules: [{ kind: "auth_invalid_key", method: "PUT", path: ".ltx" }] });
    write();
    write();
    await waitUntil(() => since(mark, "upload_failed").length >= 4, 10_000, "four failed upload passes");
    const failures = since(mark, "upload_failed") as Extract<WalrustEvent, { type: "upload_failed" }>[];
    for (const f of failures) {
      assert.equal(f.errorClass, "auth", f.error);
      assert.equal(f.attempts, 1, "credentials are never retried");
      assert.match(f.error, /InvalidAccessKeyId/);
    }
    assert.deepEqual(
      (since(mark, "retry") as Extract<WalrustEvent, { type: "retry" }>[]).filter((e) =>
        e.errorClass === "auth"
      ),
      [],
      "no request retried after 403",
    );
    const injected = proxy.stats.injected.auth_invalid_key ?? 0;
    assert.ok(
      injected <= since(mark, "upload_failed").length + 1,
      `one request per failed pass (max_attempts is 3): ${injected} requests refused, ${failures.length} failures`,
    );
    assert.equal(since(mark, "auth_failure").length, 1, "auth_failure once, not once per pass");
    assert.equal(authLines(), 1, `logged once, not once per pass:\n${lines.join("\n")}`);
    const queued = rep.status();
    assert.ok(queued.queueFiles >= 1 && queued.txid > queued.replicatedTxid, JSON.stringify(queued));
    const queueDir = `${settings.databases[0].queueDir}/ltx/0`;
    const pendingFiles = [...Deno.readDirSync(queueDir)].map((e) => e.name).filter((n) => n.endsWith(".ltx"))
      .sort().filter((n) => parseInt(n.slice(0, 16), 16) > queued.replicatedTxid);
    assert.ok(pendingFiles.length >= 1, "the unshipped files are still on disk");

    // ---- a different credential error is a change: logged and reported once more.
    mark = events.length;
    proxy.setFaults({ rules: [{ kind: "auth_bad_signature", method: "PUT", path: ".ltx" }] });
    await waitUntil(() => since(mark, "upload_failed").length >= 3, 10_000, "three more failed passes");
    assert.equal(since(mark, "auth_failure").length, 1);
    assert.match((since(mark, "auth_failure")[0] as { error: string }).error, /secret access key is wrong/);
    assert.equal(authLines(), 2, lines.join("\n"));

    // ---- a damaged file in the local queue (still no upload possible): detected before it is shipped.
    mark = events.length;
    await flipByte(`${queueDir}/${pendingFiles[0]}`, 120);
    await waitUntil(() => since(mark, "corruption_detected").length >= 1, 10_000, "corruption_detected");
    const damaged = since(mark, "corruption_detected")[0] as Extract<
      WalrustEvent,
      { type: "corruption_detected" }
    >;
    assert.equal(damaged.db, "app");
    assert.ok(damaged.object.endsWith(pendingFiles[0]), damaged.object);

    // ---- credentials fixed: the queue drains by itself, in order.
    proxy.setFaults({ rules: [] });
    await waitUntil(caughtUp, 20_000, "the queue to drain after the credentials were fixed");

    // ---- an outage opens the circuit breaker; its end closes it.
    mark = events.length;
    proxy.setFaults({ rules: [{ kind: "error_503" }] });
    write();
    await waitUntil(() => since(mark, "circuit_breaker_open").length >= 1, 10_000, "circuit_breaker_open");
    assert.ok(rep.status().queueFiles >= 1, "the new file waits in the queue");
    proxy.setFaults({ rules: [] });
    await waitUntil(
      () => since(mark, "circuit_breaker_closed").length >= 1,
      10_000,
      "circuit_breaker_closed",
    );
    await waitUntil(caughtUp, 20_000, "the queue to drain after the outage");

    stop();
    assert.equal(await watching, 0, lines.join("\n"));
    watching = null;

    // Every event reached the receiver (watch flushes webhooks before it returns).
    const got = (event: string) => receiver.bodies.filter((b) => b.event === event);
    assert.equal(got("auth_failure").length, 2, JSON.stringify(receiver.bodies));
    assert.ok(got("auth_failure").every((b) => b.database === "app"));
    // upload_failed alerts once per episode and message (the bus saw every failure), each counting the
    // failures it held back since the previous one.
    const alerts = got("upload_failed");
    const failed = events.filter((e) => e.type === "upload_failed").length;
    assert.ok(alerts.length >= 2 && alerts.length < failed, `${alerts.length} alerts for ${failed} failures`);
    const accounted = alerts.reduce((n, a) => n + 1 + Number(a.details.suppressed), 0);
    assert.ok(accounted <= failed, `${accounted} failures accounted for, ${failed} happened`);
    assert.equal(alerts[0].details.errorClass, "auth");
    assert.equal(got("corruption_detected").length, 1, JSON.stringify(got("corruption_detected")));
    assert.equal(got("corruption_detected")[0].database, "app");
    assert.ok(got("circuit_breaker_open").length >= 1);
    assert.ok(got("circuit_breaker_closed").length >= 1);
    assert.equal(got("circuit_breaker_open")[0].database, null, "the breaker is per destination");

    // Nothing was lost on the way: the replica restores to the source's rows.
    const client = new ReplicaClient(openObjectStore({ ...settings.databases[0].replica }), "app");
    try {
      await restoreDatabase(client, { output: `${dir}/restored.db` });
    } finally {
      client.store.close();
    }
    assert.deepEqual(tableCounts(`${dir}/restored.db`), tableCounts(db));
    assert.equal(tableCounts(db).t, rows);
  } finally {
    stop();
    await watching?.catch(() => {});
    db.close();
    configureLogging({ level: "info", write: stderrWriter });
    await receiver.close();
    await proxy.stop();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "events: watch with credentials rejected at start exits 4 at once, one stderr line, auth_failure delivered",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const s3 = await startS3rver();
  const proxy = await startFaultProxy(s3.endpoint);
  const receiver = startReceiver();
  const dir = await Deno.makeTempDir({ prefix: "walrust-events-start-" });
  try {
    const db = new DatabaseSync(`${dir}/app.db`);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    db.close();
    await Deno.writeTextFile(`${dir}/walrust.toml`, `[[webhooks]]\nurl = "${receiver.url}"\n`);
    proxy.setFaults({ rules: [{ kind: "auth_invalid_key" }] });
    const child = spawnProcess([
      "watch",
      `${dir}/app.db`,
      "-b",
      `s3://${s3.bucket}/start`,
      "--endpoint",
      proxy.endpoint,
      "--no-metrics",
      "--log-level",
      "error",
      "--config",
      `${dir}/walrust.toml`,
    ], {
      env: { AWS_ACCESS_KEY_ID: "WRONGKEY", AWS_SECRET_ACCESS_KEY: "wrong-secret", AWS_REGION: s3.region },
    });
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, ExitCode.AUTH, stderr);
    const errLines = stderr.split("\n").filter((l) => l.trim() !== "");
    assert.equal(errLines.length, 1, stderr);
    assert.match(errLines[0], /^walrust: .*InvalidAccessKeyId.*AWS_ACCESS_KEY_ID/);
    assert.doesNotMatch(stderr, /wrong-secret/);
    assert.equal(proxy.stats.requests, 1, "the first 403 ends it: no retry");
    const auth = receiver.bodies.filter((b) => b.event === "auth_failure");
    assert.equal(auth.length, 1, JSON.stringify(receiver.bodies));
    assert.equal(auth[0].database, "app");
  } finally {
    await receiver.close();
    await proxy.stop();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
