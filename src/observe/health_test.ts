import assert from "node:assert/strict";
import type { DbStatus } from "./events.ts";
import { computeHealth, dbHealth, healthResponse, httpStatusOf, worse } from "./health.ts";
import { registerSecret } from "./log.ts";
import { fakeDbStatus, FakeStatusProvider } from "./testing.ts";

const NOW = 1_800_000_000_000;
const at = (secondsAgo: number) => NOW - secondsAgo * 1000;
const verdict = (o: Partial<DbStatus>) => dbHealth(fakeDbStatus({ lastUploadAt: at(1), ...o }), NOW).status;
const err = (secondsAgo: number, errorClass: "connection" | "auth" = "connection") => ({
  message: "connection refused",
  errorClass,
  at: at(secondsAgo),
});

Deno.test("health rules: healthy cases", () => {
  assert.equal(verdict({}), "healthy");
  // An idle database with nothing to ship, even one that never uploaded, is healthy.
  assert.equal(
    verdict({ state: "idle", lastUploadAt: null, lastSyncAt: null, txid: 0, replicatedTxid: 0 }),
    "healthy",
  );
  assert.equal(verdict({ state: "starting" }), "healthy");
  assert.equal(verdict({ state: "syncing", lagSeconds: 5 }), "healthy");
  // An old error followed by a successful upload no longer counts.
  assert.equal(verdict({ lastError: err(30), lastUploadAt: at(10) }), "healthy");
  assert.equal(verdict({ lastError: err(600), lastUploadAt: null }), "healthy");
});

Deno.test("health rules: degraded cases", () => {
  assert.equal(verdict({ lagSeconds: 5.1 }), "degraded");
  assert.equal(verdict({ state: "error", lagSeconds: 2, lastError: err(1) }), "degraded");
  assert.equal(verdict({ circuit: "half_open" }), "degraded");
  assert.equal(verdict({ state: "stopped" }), "degraded");
  assert.equal(verdict({ lastError: err(30), lastUploadAt: at(60) }), "degraded");
  const h = dbHealth(fakeDbStatus({ lagSeconds: 7 }), NOW);
  assert.deepEqual(h.reasons, ["replication lag 7.0 s (> 5 s)"]);
});

Deno.test("health rules: unhealthy cases", () => {
  assert.equal(verdict({ circuit: "open" }), "unhealthy");
  assert.equal(verdict({ state: "error", lagSeconds: 61, lastError: err(1) }), "unhealthy");
  assert.equal(verdict({ state: "syncing", lagSeconds: 301 }), "unhealthy");
  // Error state with small lag is only degraded; large lag without error only degraded until 300 s.
  assert.equal(verdict({ state: "error", lagSeconds: 59 }), "degraded");
  assert.equal(verdict({ state: "syncing", lagSeconds: 299 }), "degraded");
});

Deno.test("health: overall is the worst database, with 503 only for unhealthy", () => {
  assert.equal(worse("healthy", "degraded"), "degraded");
  assert.equal(worse("unhealthy", "degraded"), "unhealthy");
  assert.equal(httpStatusOf("healthy"), 200);
  assert.equal(httpStatusOf("degraded"), 200);
  assert.equal(httpStatusOf("unhealthy"), 503);
  const p = new FakeStatusProvider([fakeDbStatus({ name: "a" }), fakeDbStatus({ name: "b", lagSeconds: 9 })]);
  assert.equal(computeHealth(p).status, "degraded");
  p.update("a", { circuit: "open" });
  const r = computeHealth(p);
  assert.equal(r.status, "unhealthy");
  assert.equal(r.databases.a.status, "unhealthy");
  assert.equal(r.databases.b.status, "degraded");
  assert.equal(r.replica.reachable, false);
  assert.equal(computeHealth(new FakeStatusProvider([])).status, "healthy");
});

Deno.test("health: report shape, RFC 3339 times and reachability", () => {
  const p = new FakeStatusProvider([
    fakeDbStatus({
      name: "app",
      txid: 7,
      replicatedTxid: 6,
      lagSeconds: 0.5,
      lastSyncAt: at(2),
      lastUploadAt: at(3),
      queueFiles: 1,
    }),
    fakeDbStatus({ name: "b", lastUploadAt: at(1) }),
  ], 12_345);
  const r = computeHealth(p, NOW);
  assert.deepEqual(Object.keys(r).sort(), ["databases", "replica", "status", "uptime_seconds"]);
  assert.equal(r.databases.app.txid, 7);
  assert.equal(r.databases.app.replicated_txid, 6);
  assert.equal(r.databases.app.lag_seconds, 0.5);
  assert.equal(r.databases.app.last_sync, new Date(at(2)).toISOString());
  assert.equal(r.databases.app.last_upload, new Date(at(3)).toISOString());
  assert.equal(r.databases.app.last_error, null);
  assert.equal(r.databases.app.queue_files, 1);
  assert.deepEqual(r.replica, { reachable: true, last_successful_upload: new Date(at(1)).toISOString() });
  // An auth error after the last upload makes the replica unreachable (and the db degraded).
  p.update("b", { lastError: err(0.5, "auth") });
  const r2 = computeHealth(p, NOW);
  assert.equal(r2.replica.reachable, false);
  assert.equal(r2.databases.b.status, "degraded");
  assert.equal(r2.databases.b.last_error?.class, "auth");
  assert.equal(r2.databases.b.last_error?.at, new Date(at(0.5)).toISOString());
});

Deno.test("health: response status codes and no secrets in the body", async () => {
  const secret = "sk-health-test-secret-123";
  registerSecret(secret);
  const p = new FakeStatusProvider([
    fakeDbStatus({
      lastError: {
        message: `PUT https://key:${secret}@s3.example.com/b?X-Amz-Credential=AKIAXYZ failed`,
        errorClass: "connection",
        at: Date.now(),
      },
      lastUploadAt: Date.now() - 60_000,
    }),
  ]);
  let res = healthResponse(p);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /application\/json/);
  const text = await res.text();
  assert.ok(!text.includes(secret) && !text.includes("AKIAXYZ"), text);
  assert.equal(JSON.parse(text).status, "degraded");
  p.update("app", { circuit: "open" });
  res = healthResponse(p);
  assert.equal(res.status, 503);
  assert.equal((await res.json()).status, "unhealthy");
});
