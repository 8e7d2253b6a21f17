import assert from "node:assert/strict";
import { UsageError } from "../src/errors.ts";
import { EventBus } from "../src/observe/events.ts";
import type { LogFields, Logger } from "../src/observe/log.ts";
import { signBody, startWebhooks, WEBHOOK_EVENTS, type WebhookPayload } from "../src/observe/webhooks.ts";
import { VERSION } from "../src/version.ts";

interface Received {
  headers: Headers;
  body: string;
  path: string;
}

/**
 * A local webhook receiver on a free port. `respond` decides each response (by 1-based request number);
 * `hang` makes requests wait until `release()`.
 */
function receiver(respond: (n: number) => number = () => 200) {
  const got: Received[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let hang = false;
  let releaseAll: () => void = () => {};
  let hung = new Promise<void>((r) => (releaseAll = r));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = await req.text();
    got.push({ headers: req.headers, body, path: new URL(req.url).pathname });
    for (const w of waiters.filter((w) => got.length >= w.n)) w.resolve();
    if (hang) await hung;
    return new Response("ok", { status: respond(got.length) });
  });
  return {
    got,
    url: `http://127.0.0.1:${server.addr.port}/hooks/T0KEN-in-path`,
    setHang(on: boolean) {
      hang = on;
    },
    /** Resolves once `n` requests have arrived. */
    waitFor(n: number): Promise<void> {
      if (got.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      hang = false;
      releaseAll();
      hung = Promise.resolve();
      await server.shutdown();
    },
  };
}

/** A logger that records lines (message + fields as JSON). */
function captureLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (msg: string, f?: LogFields) =>
    void lines.push(`${level} ${msg} ${JSON.stringify(f)}`);
  const l: Logger & { lines: string[] } = {
    lines,
    debug: rec("debug"),
    info: rec("info"),
    warn: rec("warn"),
    error: rec("error"),
    child: () => l,
  };
  return l;
}

async function hmacHex(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return [...sig].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("webhooks: payload, headers and HMAC signature reach the receiver", async () => {
  const rx = receiver();
  const bus = new EventBus();
  const secret = "whsec-test-0123456789";
  const hooks = startWebhooks(bus, [{ url: rx.url, events: [], secret }], { logger: captureLogger() });
  try {
    bus.emit({
      type: "upload_failed",
      db: "app",
      error: "PUT timed out",
      errorClass: "connection",
      attempts: 5,
    });
    await rx.waitFor(1);
    const { headers, body, path } = rx.got[0];
    assert.equal(path, "/hooks/T0KEN-in-path");
    const p = JSON.parse(body) as WebhookPayload;
    assert.deepEqual(Object.keys(p).sort(), [
      "database",
      "details",
      "error",
      "event",
      "timestamp",
      "version",
    ]);
    assert.equal(p.event, "upload_failed");
    assert.equal(p.database, "app");
    assert.equal(p.error, "PUT timed out");
    assert.equal(p.version, VERSION);
    assert.deepEqual(p.details, { errorClass: "connection", attempts: 5, suppressed: 0 });
    assert.match(p.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.ok(Math.abs(Date.parse(p.timestamp) - Date.now()) < 60_000);
    assert.equal(headers.get("content-type"), "application/json");
    assert.equal(headers.get("user-agent"), `walrust/${VERSION}`);
    assert.equal(headers.get("x-walrust-event"), "upload_failed");
    assert.equal(headers.get("x-walrust-signature"), `sha256=${await hmacHex(secret, body)}`);
    assert.equal(signBody(secret, body), headers.get("x-walrust-signature"));
    // The secret itself never travels.
    assert.ok(!body.includes(secret));
    for (const [, v] of headers) assert.ok(!v.includes(secret));
  } finally {
    await hooks.close();
    await rx.close();
  }
});

Deno.test("webhooks: per-receiver event filter, default all, no signature without a secret", async () => {
  const a = receiver();
  const b = receiver();
  const bus = new EventBus();
  const hooks = startWebhooks(bus, [
    { url: a.url, events: ["circuit_breaker_open"] },
    { url: b.url, events: [] },
  ], { logger: captureLogger() });
  try {
    bus.emit({ type: "sync", db: "app", txid: 1, pages: 1, bytes: 1, walBytes: 1, seconds: 0 });
    bus.emit({ type: "upload_failed", db: "app", error: "x", errorClass: "connection", attempts: 1 });
    bus.emit({ type: "circuit_breaker_open", destination: "s3://u:pw@bucket/p?sig=1", failures: 10 });
    bus.emit({ type: "circuit_breaker_closed", destination: "s3://bucket/p" });
    bus.emit({ type: "checkpoint_emergency", db: "app", walPages: 130_000 });
    bus.emit({ type: "verify_failed", db: "app", exitCode: 8, message: "gap between 5 and 9" });
    bus.emit({ type: "auth_failure", error: "AccessDenied" });
    bus.emit({ type: "corruption_detected", db: "app", object: "app/ltx/0/x.ltx", error: "bad checksum" });
    await hooks.close();
    assert.deepEqual(a.got.map((r) => JSON.parse(r.body).event), ["circuit_breaker_open"]);
    const events = b.got.map((r) => JSON.parse(r.body) as WebhookPayload);
    // Delivered in order, and every webhook event is delivered by default.
    assert.deepEqual(events.map((e) => e.event), [
      "upload_failed",
      "circuit_breaker_open",
      "circuit_breaker_closed",
      "checkpoint_emergency",
      "verify_failed",
      "auth_failure",
      "corruption_detected",
    ]);
    assert.deepEqual([...WEBHOOK_EVENTS].sort(), events.map((e) => e.event).sort());
    const open = events[1];
    assert.equal(open.database, null);
    assert.deepEqual(open.details, { destination: "s3://bucket/p", failures: 10 });
    assert.equal(events[2].error, null);
    assert.equal(events[4].details.exitCode, 8);
    assert.equal(events[5].database, null);
    assert.equal(events[6].details.object, "app/ltx/0/x.ltx");
    for (const r of [...a.got, ...b.got]) assert.equal(r.headers.get("x-walrust-signature"), null);
    assert.deepEqual(hooks.stats(), { delivered: 8, failed: 0, dropped: 0, pending: 0 });
  } finally {
    await hooks.close();
    await a.close();
    await b.close();
  }
});

Deno.test("webhooks: upload_failed is sent once per episode and message, repeated after a while with the count held back", async () => {
  const rx = receiver();
  let now = Date.UTC(2026, 0, 1);
  const bus = new EventBus(() => now);
  const hooks = startWebhooks(bus, [{ url: rx.url, events: ["upload_failed"] }], {
    repeatAfterMs: 60_000,
    logger: captureLogger(),
  });
  const fail = (db: string, error = "503 SlowDown") =>
    bus.emit({ type: "upload_failed", db, error, errorClass: "connection", attempts: 5 });
  try {
    for (let i = 0; i < 5; i++, now += 1000) fail("app"); // one alert for five failures
    fail("other"); // another database has its own episode
    fail("app", "connection refused"); // a new message is news
    for (let i = 0; i < 3; i++, now += 1000) fail("app", "connection refused");
    now += 60_000;
    fail("app", "connection refused"); // still failing a minute later: repeated, with the count held back
    bus.emit({
      type: "upload",
      db: "app",
      level: 0,
      minTXID: 1,
      maxTXID: 1,
      bytes: 1,
      seconds: 0,
      readAt: now,
    });
    fail("app", "connection refused"); // after a success, a failure starts a new episode
    await hooks.close();
    const sent = rx.got.map((r) => JSON.parse(r.body) as WebhookPayload);
    assert.deepEqual(
      sent.map((p) => [p.database, p.error, p.details.suppressed]),
      [
        ["app", "503 SlowDown", 0],
        ["other", "503 SlowDown", 0],
        ["app", "connection refused", 4],
        ["app", "connection refused", 3],
        ["app", "connection refused", 0],
      ],
    );
  } finally {
    await hooks.close();
    await rx.close();
  }
});

Deno.test("webhooks: a 500 is retried with the same delivery id; a 400 is not", async () => {
  const rx = receiver((n) => (n <= 2 ? 500 : 200));
  const bad = receiver(() => 400);
  const bus = new EventBus();
  const logger = captureLogger();
  const hooks = startWebhooks(bus, [{ url: rx.url, events: [] }, { url: bad.url, events: [] }], {
    retryDelaysMs: [5, 10],
    logger,
  });
  try {
    bus.emit({ type: "auth_failure", db: "app", error: "InvalidAccessKeyId" });
    await hooks.close();
    assert.equal(rx.got.length, 3);
    const ids = new Set(rx.got.map((r) => r.headers.get("x-walrust-delivery")));
    assert.equal(ids.size, 1);
    assert.equal(new Set(rx.got.map((r) => r.body)).size, 1);
    assert.equal(bad.got.length, 1, "a 400 is not retried");
    assert.deepEqual(hooks.stats(), { delivered: 1, failed: 1, dropped: 0, pending: 0 });
    assert.ok(logger.lines.some((l) => l.includes("rejected") && l.includes('"status":400')));
  } finally {
    await hooks.close();
    await rx.close();
    await bad.close();
  }
});

Deno.test("webhooks: gives up after 3 tries and logs without the URL's path token", async () => {
  const rx = receiver(() => 503);
  const bus = new EventBus();
  const logger = captureLogger();
  const hooks = startWebhooks(bus, [{ url: rx.url, events: [], secret: "s3cr3t-value" }], {
    retryDelaysMs: [1],
    logger,
  });
  try {
    bus.emit({ type: "verify_failed", db: "app", exitCode: 7, message: "corrupt" });
    await hooks.close();
    assert.equal(rx.got.length, 3);
    assert.equal(hooks.stats().failed, 1);
    const out = logger.lines.join("\n");
    assert.match(out, /webhook delivery failed/);
    assert.match(out, /HTTP 503/);
    assert.ok(!out.includes("T0KEN"), out);
    assert.ok(!out.includes("s3cr3t-value"), out);
  } finally {
    await rx.close();
  }
});

Deno.test("webhooks: a hanging receiver never blocks emit; the queue drops oldest; close() times out", async () => {
  const rx = receiver();
  rx.setHang(true);
  const bus = new EventBus();
  const logger = captureLogger();
  const hooks = startWebhooks(bus, [{ url: rx.url, events: [] }], {
    maxQueue: 5,
    flushTimeoutMs: 50,
    logger,
  });
  try {
    let returned = 0;
    for (let i = 0; i < 50; i++) {
      bus.emit({ type: "checkpoint_emergency", db: "app", walPages: i });
      returned++;
    }
    // emit is synchronous and did no network work: nothing has reached the receiver yet.
    assert.equal(returned, 50);
    assert.equal(rx.got.length, 0);
    // The queue holds 5: the 45 oldest were dropped before the worker even started.
    assert.deepEqual(hooks.stats(), { delivered: 0, failed: 0, dropped: 45, pending: 5 });
    assert.ok(logger.lines.some((l) => l.includes("queue full")));
    await rx.waitFor(1); // the oldest surviving event is now stuck in the receiver
    assert.equal(JSON.parse(rx.got[0].body).details.walPages, 45);
    // Emitting while the receiver hangs still returns at once (one slot was freed by the in-flight one).
    bus.emit({ type: "checkpoint_emergency", db: "app", walPages: 999 });
    assert.deepEqual(hooks.stats(), { delivered: 0, failed: 0, dropped: 45, pending: 6 });
    await hooks.close();
    assert.deepEqual(hooks.stats(), { delivered: 0, failed: 0, dropped: 51, pending: 0 });
    assert.ok(
      logger.lines.some((l) => l.includes("shutdown") && l.includes('"dropped":6')),
      logger.lines.join("\n"),
    );
  } finally {
    await hooks.close();
    await rx.close();
  }
});

Deno.test("webhooks: a try that exceeds the timeout is aborted and retried", async () => {
  const rx = receiver();
  rx.setHang(true);
  const bus = new EventBus();
  const logger = captureLogger();
  const hooks = startWebhooks(bus, [{ url: rx.url, events: [] }], {
    timeoutMs: 30,
    retryDelaysMs: [1],
    attempts: 2,
    logger,
  });
  try {
    bus.emit({ type: "upload_failed", db: "app", error: "x", errorClass: "connection", attempts: 1 });
    await hooks.close();
    assert.equal(rx.got.length, 2);
    assert.equal(hooks.stats().failed, 1);
    assert.ok(logger.lines.some((l) => l.includes("timed out")), logger.lines.join("\n"));
  } finally {
    await rx.close();
  }
});

Deno.test("webhooks: bad settings are usage errors; no hooks means no work", async () => {
  const bus = new EventBus();
  assert.throws(() => startWebhooks(bus, [{ url: "ftp://x/y", events: [] }]), UsageError);
  assert.throws(() => startWebhooks(bus, [{ url: "not a url", events: [] }]), UsageError);
  assert.throws(
    () => startWebhooks(bus, [{ url: "http://127.0.0.1:1/x", events: ["sync_failed"] }]),
    (e: unknown) => e instanceof UsageError && /unknown event 'sync_failed'/.test(e.message),
  );
  const hooks = startWebhooks(bus, []);
  bus.emit({ type: "auth_failure", error: "x" });
  await hooks.close();
  assert.deepEqual(hooks.stats(), { delivered: 0, failed: 0, dropped: 0, pending: 0 });
});
