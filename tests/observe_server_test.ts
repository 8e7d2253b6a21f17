import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import { EventBus } from "../src/observe/events.ts";
import { registerSecret } from "../src/observe/log.ts";
import { formatListenAddr, parseListenAddr, startObserveServer } from "../src/observe/server.ts";
import { fakeDbStatus, FakeStatusProvider } from "../src/observe/testing.ts";

async function get(
  base: string,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(`http://${base}${path}`, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

Deno.test("observe server: routes, content types and live data", async () => {
  const bus = new EventBus();
  const status = new FakeStatusProvider([fakeDbStatus({ name: "app", txid: 12, replicatedTxid: 12 })]);
  const srv = await startObserveServer({ addr: "127.0.0.1:0", bus, status });
  try {
    assert.match(srv.addr, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(srv.addr, "127.0.0.1:0", "the real port is reported");

    let m = await get(srv.addr, "/metrics");
    assert.equal(m.status, 200);
    assert.equal(m.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.match(m.body, /^# HELP /);
    assert.match(m.body, /\nwalrust_current_txid\{db="app"\} 12\n/);
    assert.match(m.body, /\nwalrust_databases 1\n/);
    assert.doesNotMatch(m.body, /walrust_snapshots_total\{/);
    bus.emit({ type: "snapshot", db: "app", txid: 12, bytes: 4096, seconds: 0.25 });
    status.update("app", { txid: 13 });
    m = await get(srv.addr, "/metrics");
    assert.match(m.body, /\nwalrust_snapshots_total\{db="app"\} 1\n/);
    assert.match(m.body, /\nwalrust_current_txid\{db="app"\} 13\n/);

    const h = await get(srv.addr, "/health");
    assert.equal(h.status, 200);
    assert.match(h.headers.get("content-type")!, /^application\/json/);
    const health = JSON.parse(h.body);
    assert.equal(health.status, "healthy");
    assert.equal(health.databases.app.txid, 13);

    const api = await get(srv.addr, "/api/status");
    assert.equal(api.status, 200);
    assert.equal(JSON.parse(api.body).databases[0].name, "app");

    const page = await get(srv.addr, "/");
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.ok(page.headers.get("content-security-policy")?.includes("default-src 'none'"));
    assert.match(page.body, /<title>walrust<\/title>/);

    assert.equal((await get(srv.addr, "/nope")).status, 404);
    const post = await get(srv.addr, "/metrics", { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  } finally {
    await srv.close();
  }
});

Deno.test("observe server: /health answers 503 when unhealthy and 200 when degraded", async () => {
  const status = new FakeStatusProvider([fakeDbStatus({ name: "app" })]);
  const srv = await startObserveServer({ addr: "127.0.0.1:0", bus: new EventBus(), status });
  try {
    status.update("app", { lagSeconds: 8 });
    let h = await get(srv.addr, "/health");
    assert.equal(h.status, 200);
    assert.equal(JSON.parse(h.body).status, "degraded");
    status.update("app", {
      state: "error",
      lagSeconds: 120,
      lastError: { message: "connection refused", errorClass: "connection", at: Date.now() },
    });
    h = await get(srv.addr, "/health");
    assert.equal(h.status, 503);
    assert.equal(JSON.parse(h.body).status, "unhealthy");
    assert.equal(JSON.parse(h.body).databases.app.last_error.message, "connection refused");
  } finally {
    await srv.close();
  }
});

Deno.test("observe server: a port in use is a one-line usage error naming the flags", async () => {
  const status = new FakeStatusProvider();
  const first = await startObserveServer({ addr: "127.0.0.1:0", bus: new EventBus(), status });
  try {
    await assert.rejects(
      startObserveServer({ addr: first.addr, bus: new EventBus(), status }),
      (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.equal(
          e.message,
          `metrics address ${first.addr} is in use; pass --metrics-addr or --no-metrics`,
        );
        assert.equal(e.exitCode, 2);
        return true;
      },
    );
    // The first server still works.
    assert.equal((await get(first.addr, "/health")).status, 200);
  } finally {
    await first.close();
  }
});

Deno.test("observe server: listen address parsing", async () => {
  assert.deepEqual(parseListenAddr("127.0.0.1:16767"), { hostname: "127.0.0.1", port: 16767 });
  assert.deepEqual(parseListenAddr("0.0.0.0:9090"), { hostname: "0.0.0.0", port: 9090 });
  assert.deepEqual(parseListenAddr(":9090"), { hostname: "127.0.0.1", port: 9090 });
  assert.deepEqual(parseListenAddr("9090"), { hostname: "127.0.0.1", port: 9090 });
  assert.deepEqual(parseListenAddr("[::1]:80"), { hostname: "::1", port: 80 });
  assert.deepEqual(parseListenAddr("localhost:0"), { hostname: "localhost", port: 0 });
  for (const bad of ["", "abc", "host:", "1.2.3.4:99999", "::1:80", "h:-1"]) {
    assert.throws(() => parseListenAddr(bad), UsageError, bad);
  }
  assert.equal(formatListenAddr("::1", 5), "[::1]:5");
  // A bare port binds loopback.
  const srv = await startObserveServer({ addr: ":0", bus: new EventBus(), status: new FakeStatusProvider() });
  try {
    assert.match(srv.addr, /^127\.0\.0\.1:\d+$/);
  } finally {
    await srv.close();
  }
});

Deno.test("observe server: no secret in any output; a failing provider gives 500 on /health only", async () => {
  const secret = "observe-server-secret-9f8e7d";
  registerSecret(secret);
  const status = new FakeStatusProvider([
    fakeDbStatus({
      name: "app",
      replica: `https://AKIAOBSERVE:${secret}@minio.local/bucket?X-Amz-Signature=deadbeef`,
      state: "error",
      lastError: {
        message: `403 for key ${secret} at https://u:${secret}@h/x`,
        errorClass: "auth",
        at: Date.now(),
      },
    }),
  ]);
  const bus = new EventBus();
  const srv = await startObserveServer({ addr: "127.0.0.1:0", bus, status });
  try {
    bus.emit({
      type: "circuit_breaker_open",
      destination: `s3://AKIAOBSERVE:${secret}@bucket`,
      failures: 10,
    });
    for (const path of ["/metrics", "/health", "/api/status", "/"]) {
      const r = await get(srv.addr, path);
      for (const bad of [secret, "AKIAOBSERVE", "deadbeef"]) {
        assert.ok(!r.body.includes(bad), `${path} leaks '${bad}'`);
      }
    }
    status.failWith = new Error(`provider failed with ${secret}`);
    const h = await get(srv.addr, "/health");
    assert.equal(h.status, 500);
    assert.ok(!h.body.includes(secret));
    assert.equal((await get(srv.addr, "/metrics")).status, 200);
  } finally {
    await srv.close();
  }
});

Deno.test("observe server: close() stops listening, frees the port and is idempotent", async () => {
  const bus = new EventBus();
  const srv = await startObserveServer({ addr: "127.0.0.1:0", bus, status: new FakeStatusProvider() });
  await srv.close();
  await srv.close();
  await assert.rejects(fetch(`http://${srv.addr}/health`));
  // The port is free again.
  const again = await startObserveServer({ addr: srv.addr, bus, status: new FakeStatusProvider() });
  await again.close();
});
