import assert from "node:assert/strict";
import type { RetrySettings } from "../config/types.ts";
import { AuthError, ConflictError, ConnectionError, NotFoundError } from "../errors.ts";
import { EventBus, type WalrustEvent } from "../observe/events.ts";
import { FileObjectStore } from "./file.ts";
import { MemoryObjectStore } from "./memory.ts";
import type { ListOptions, ObjectInfo } from "./object_store.ts";
import { backoffDelay, CircuitBreaker, type RetryClock, RetryingObjectStore } from "./retry.ts";

const enc = new TextEncoder();

/** A memory store whose calls fail with queued errors first. */
class FlakyStore extends MemoryObjectStore {
  failures: unknown[] = [];
  calls = 0;
  /** Fail the listing after yielding this many items (once), when set. */
  listFailAfter: number | null = null;

  #maybeFail(): void {
    this.calls++;
    const err = this.failures.shift();
    if (err !== undefined) throw err;
  }
  override get(key: string): Promise<Uint8Array> {
    try {
      this.#maybeFail();
    } catch (err) {
      return Promise.reject(err);
    }
    return super.get(key);
  }
  override put(key: string, body: Uint8Array): Promise<{ etag?: string }> {
    try {
      this.#maybeFail();
    } catch (err) {
      return Promise.reject(err);
    }
    return super.put(key, body);
  }
  override async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    this.#maybeFail();
    let n = 0;
    for await (const o of super.list(prefix, options)) {
      if (this.listFailAfter !== null && n === this.listFailAfter) {
        this.listFailAfter = null;
        throw new ConnectionError("connection reset while listing");
      }
      n++;
      yield o;
    }
  }
}

class ManualClock implements RetryClock {
  t = 1_000_000;
  sleeps: number[] = [];
  r = 0.5;
  now = () => this.t;
  sleep = (ms: number) => {
    this.sleeps.push(ms);
    this.t += ms;
    return Promise.resolve();
  };
  random = () => this.r;
}

const SETTINGS: RetrySettings = {
  maxAttempts: 5,
  baseDelayMs: 100,
  maxDelayMs: 30_000,
  breakerThreshold: 0,
  breakerCooldownMs: 60_000,
};

function setup(settings: Partial<RetrySettings> = {}) {
  const inner = new FlakyStore("s3", "flaky");
  const clock = new ManualClock();
  const bus = new EventBus();
  const events: WalrustEvent[] = [];
  bus.subscribe((e) => void events.push(e));
  const store = new RetryingObjectStore(inner, { ...SETTINGS, ...settings }, bus, "app", { clock });
  return { inner, clock, events, store };
}

Deno.test("retry: transient errors are retried with full-jitter exponential backoff, then succeed", async () => {
  const { inner, clock, events, store } = setup();
  await inner.put("k", enc.encode("v"));
  inner.calls = 0;
  inner.failures = [new ConnectionError("503"), new ConnectionError("reset"), new ConnectionError("timeout")];
  assert.deepEqual(await store.get("k"), enc.encode("v"));
  assert.equal(inner.calls, 4);
  assert.deepEqual(clock.sleeps, [50, 100, 200]); // 0.5 · min(30 000, 100 · 2^(n−1))
  assert.deepEqual(
    events.map((e) => e.type === "retry" ? [e.operation, e.attempt, e.delayMs, e.errorClass, e.db] : e.type),
    [["download", 1, 50, "connection", "app"], ["download", 2, 100, "connection", "app"], [
      "download",
      3,
      200,
      "connection",
      "app",
    ]],
  );
});

Deno.test("retry: gives up after maxAttempts with a ConnectionError saying so", async () => {
  const { inner, store } = setup({ maxAttempts: 3 });
  inner.failures = Array.from({ length: 10 }, () => new ConnectionError("s3://b/k: HTTP 503"));
  await assert.rejects(store.put("k", enc.encode("v")), (e: Error) => {
    assert.ok(e instanceof ConnectionError);
    assert.match(e.message, /HTTP 503 \(gave up after 3 attempts\)/);
    return true;
  });
  assert.equal(inner.calls, 3);
});

Deno.test("retry: auth, not-found, conflict and bugs fail at once", async () => {
  for (
    const err of [
      new AuthError("denied"),
      new NotFoundError("nope"),
      new ConflictError("412"),
      new TypeError("bug"),
    ]
  ) {
    const { inner, events, store } = setup();
    inner.failures = [err];
    await assert.rejects(store.get("k"), (e) => e === err);
    assert.equal(inner.calls, 1);
    assert.deepEqual(events, []);
  }
});

Deno.test("retry: a non-transient ConnectionError (e.g. wrong region) is not retried", async () => {
  const { inner, store } = setup();
  inner.failures = [new ConnectionError("wrong region", { transient: false })];
  await assert.rejects(store.get("k"), ConnectionError);
  assert.equal(inner.calls, 1);
});

Deno.test("retry: backoff delays are capped and never negative", () => {
  const s = { ...SETTINGS, baseDelayMs: 100, maxDelayMs: 1_000 };
  assert.equal(backoffDelay(s, 1, () => 0.999), 99);
  assert.equal(backoffDelay(s, 10, () => 0.999), 999);
  assert.equal(backoffDelay(s, 1000, () => 0.999), 999);
  assert.equal(backoffDelay(s, 3, () => 0), 0);
});

Deno.test("circuit breaker: opens after N consecutive failures, fails fast, half-open trial, closes", async () => {
  const { inner, clock, events, store } = setup({
    maxAttempts: 1,
    breakerThreshold: 3,
    breakerCooldownMs: 60_000,
  });
  await inner.put("k", enc.encode("v"));
  inner.calls = 0;
  inner.failures = [1, 2, 3].map(() => new ConnectionError("down"));
  for (let i = 0; i < 3; i++) await assert.rejects(store.get("k"), ConnectionError);
  assert.equal(store.circuitState, "open");
  assert.deepEqual(events.filter((e) => e.type !== "retry"), [
    { type: "circuit_breaker_open", destination: "memory://flaky", failures: 3 },
  ]);
  // While open: fail fast without touching the destination.
  await assert.rejects(store.get("k"), (e: Error) => {
    assert.ok(e instanceof ConnectionError);
    assert.equal(e.message, "circuit breaker open for memory://flaky after 3 failures; retrying in 60s");
    return true;
  });
  assert.equal(inner.calls, 3);
  clock.t += 30_000;
  await assert.rejects(store.get("k"), /retrying in 30s/);
  // After the cool-down one trial goes through; it fails: open again for another cool-down.
  clock.t += 30_000;
  assert.equal(store.circuitState, "half_open");
  inner.failures = [new ConnectionError("still down")];
  await assert.rejects(store.get("k"), /still down/);
  assert.equal(inner.calls, 4);
  assert.equal(store.circuitState, "open");
  await assert.rejects(store.get("k"), /circuit breaker open/);
  // Next trial succeeds: closed, and requests flow again.
  clock.t += 60_000;
  assert.deepEqual(await store.get("k"), enc.encode("v"));
  assert.equal(store.circuitState, "closed");
  assert.deepEqual(await store.get("k"), enc.encode("v"));
  assert.deepEqual(events.filter((e) => e.type !== "retry").map((e) => e.type), [
    "circuit_breaker_open",
    "circuit_breaker_open",
    "circuit_breaker_closed",
  ]);
});

Deno.test("circuit breaker: only one half-open trial at a time; success resets the failure count", () => {
  let now = 0;
  const clock: RetryClock = { now: () => now, sleep: () => Promise.resolve(), random: () => 0 };
  const b = new CircuitBreaker("dest", 2, 1_000, clock);
  b.failure();
  b.success();
  b.failure();
  assert.equal(b.state, "closed", "the count is of consecutive failures");
  b.failure();
  assert.equal(b.state, "open");
  now = 1_000;
  assert.equal(b.acquire(), true, "first caller after the cool-down is the trial");
  assert.throws(() => b.acquire(), /circuit breaker open for dest after 2 failures/);
  b.release(); // the trial ended without an answer: the next caller may try
  now = 1_500;
  assert.equal(b.acquire(), true);
  assert.throws(() => b.acquire(), ConnectionError);
  b.success();
  assert.equal(b.state, "closed");
  assert.equal(b.acquire(), false);
});

Deno.test("circuit breaker: threshold 0 disables it", async () => {
  const { inner, store } = setup({ maxAttempts: 1, breakerThreshold: 0 });
  inner.failures = Array.from({ length: 20 }, () => new ConnectionError("down"));
  for (let i = 0; i < 20; i++) await assert.rejects(store.get("k"), /down/);
  assert.equal(inner.calls, 20);
  assert.equal(store.circuitState, "closed");
});

Deno.test("retry: an interrupted listing resumes after the last key, without duplicates", async () => {
  const { inner, clock, store } = setup();
  for (let i = 0; i < 7; i++) await inner.put(`k${i}`, enc.encode("x"));
  inner.listFailAfter = 3;
  inner.failures = [new ConnectionError("first page failed")];
  const keys: string[] = [];
  for await (const o of store.list("")) keys.push(o.key);
  assert.deepEqual(keys, ["k0", "k1", "k2", "k3", "k4", "k5", "k6"]);
  assert.equal(clock.sleeps.length, 2);
});

Deno.test("retry: stores of one destination share the breaker unless a clock is injected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-retry-" });
  try {
    const settings = { ...SETTINGS, breakerThreshold: 1 };
    const a = new RetryingObjectStore(new FileObjectStore(dir), settings);
    const b = new RetryingObjectStore(new FileObjectStore(dir), settings);
    assert.equal(a.breaker, b.breaker);
    assert.equal(a.localPath?.("x/y"), `${dir}/x/y`, "localPath is forwarded for file leases");
    assert.equal(a.kind, "file");
    assert.equal(a.displayUrl, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
