/**
 * The S3 backend, retries and the lease through `fault_proxy.ts` in front of a real s3rver: transient
 * faults are retried and succeed, cut or short responses never yield wrong bytes, stalls do not hang,
 * and conditional writes (enforced by the proxy) make the lease exclusive.
 */

import assert from "node:assert/strict";
import type { RetrySettings } from "../src/config/types.ts";
import { AuthError, ConflictError, ConnectionError, CorruptionError, NotFoundError } from "../src/errors.ts";
import { crc64 } from "../src/ltx/checksum.ts";
import { sha256Hex } from "../src/storage/digest.ts";
import { EventBus, type WalrustEvent } from "../src/observe/events.ts";
import { acquireLease } from "../src/storage/lease.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { RetryingObjectStore } from "../src/storage/retry.ts";
import { MULTIPART_PART_BYTES, S3ObjectStore, type S3StoreOptions } from "../src/storage/s3.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { startS3rver } from "./support/s3rver.ts";

const FAST_RETRY: RetrySettings = {
  maxAttempts: 6,
  baseDelayMs: 1,
  maxDelayMs: 5,
  breakerThreshold: 0,
  breakerCooldownMs: 1_000,
};

function payload(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

Deno.test("storage through the fault proxy", async (t) => {
  const server = await startS3rver({ bucket: "faults" });
  const proxy = await startFaultProxy(server.endpoint);
  const closers: { close(): void }[] = [];
  const direct = (o: Partial<S3StoreOptions> = {}): S3ObjectStore => {
    const s = new S3ObjectStore({
      bucket: server.bucket,
      endpoint: proxy.endpoint,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      connectTimeoutMs: 2_000,
      ...o,
    });
    closers.push(s);
    return s;
  };
  const retrying = (o: Partial<S3StoreOptions> = {}, settings = FAST_RETRY) => {
    const bus = new EventBus();
    const events: WalrustEvent[] = [];
    bus.subscribe((e) => void events.push(e));
    const store = new RetryingObjectStore(direct(o), settings, bus, "app");
    return { store, events };
  };
  try {
    await t.step("a clean proxy forwards everything unchanged", async () => {
      proxy.setFaults({ rules: [] });
      const s = direct({ prefix: "clean" });
      const body = payload(300_000, 1);
      await s.put("k", body);
      assert.deepEqual(await s.get("k"), body);
      assert.equal((await s.head("k"))?.size, body.byteLength);
      assert.ok(proxy.stats.forwarded >= 3);
      assert.equal(proxy.injectedTotal(), 0);
    });

    await t.step("conditional writes are enforced (s3rver alone ignores them)", async () => {
      proxy.setFaults({ rules: [] });
      const s = direct({ prefix: "cond" });
      const first = await s.put("lease.json", new TextEncoder().encode("1"), { ifNoneMatch: "*" });
      await assert.rejects(
        s.put("lease.json", new TextEncoder().encode("2"), { ifNoneMatch: "*" }),
        ConflictError,
      );
      await assert.rejects(
        s.put("lease.json", new TextEncoder().encode("3"), { ifMatch: '"0000"' }),
        ConflictError,
      );
      const second = await s.put("lease.json", new TextEncoder().encode("4"), { ifMatch: first.etag });
      assert.notEqual(second.etag, first.etag);
      await assert.rejects(
        s.put("absent.json", new TextEncoder().encode("5"), { ifMatch: first.etag }),
        NotFoundError,
      );
      assert.equal(new TextDecoder().decode(await s.get("lease.json")), "4");
      assert.ok(proxy.stats.preconditionFailed >= 3);
    });

    await t.step("lease: the second acquirer gets ConflictError; expired leases are taken over", async () => {
      proxy.setFaults({ rules: [] });
      const s = direct({ prefix: "leases" });
      const lease = await acquireLease(s, "app", "walrust watch", 60_000, { renewIntervalMs: 0 });
      await assert.rejects(acquireLease(s, "app", "intruder", 60_000, { renewIntervalMs: 0 }), (e: Error) => {
        assert.ok(e instanceof ConflictError);
        assert.match(
          e.message,
          /^replica s3:\/\/faults\/leases\/app is being written by walrust watch \(pid \d+, host .+\) until \d{4}-.*; stop it or wait$/,
        );
        return true;
      });
      await lease.renew();
      // A process that died without releasing: its lease expires and is taken over; it then finds it lost.
      let now = Date.now();
      const stale = await acquireLease(s, "other", "crashed", 1_000, { renewIntervalMs: 0, now: () => now });
      now += 5_000;
      const next = await acquireLease(s, "other", "successor", 1_000, { renewIntervalMs: 0, now: () => now });
      await assert.rejects(stale.renew(), /was lost/);
      await next.release();
      await lease.release();
      assert.equal(await s.head("app/lease.json"), null);
    });

    await t.step(
      "lease: a create whose answer is lost (500 after the write) still ends with us holding it",
      async () => {
        proxy.setFaults({
          rules: [{ kind: "error_500", method: "PUT", path: "/lease.json", times: 1, afterUpstream: true }],
        });
        const { store } = retrying({ prefix: "lost-answer" });
        const lease = await acquireLease(store, "app", "me", 60_000, { renewIntervalMs: 0 });
        assert.equal(proxy.stats.injected.error_500, 1);
        assert.equal(lease.info.owner, "me");
        await assert.rejects(
          acquireLease(store, "app", "other", 60_000, { renewIntervalMs: 0 }),
          ConflictError,
        );
        await lease.release();
      },
    );

    await t.step("transient faults (5xx, 429/503 SlowDown, resets) are retried and succeed", async () => {
      const { store, events } = retrying({ prefix: "transient" });
      const body = payload(50_000, 2);
      const before = proxy.injectedTotal();
      proxy.setFaults({
        rules: [
          { kind: "error_500", method: "PUT", times: 1 },
          { kind: "slowdown_503", method: "PUT", times: 1 },
          { kind: "throttle_429", method: "PUT", times: 1 },
          { kind: "reset", method: "PUT", times: 1 },
          { kind: "error_503", method: "GET", times: 1 },
          { kind: "reset", method: "GET", times: 1 },
          { kind: "latency", method: "GET", latencyMs: 20, times: 1 },
        ],
      });
      await store.put("obj", body);
      assert.deepEqual(await store.get("obj"), body);
      const injected = proxy.injectedTotal() - before;
      assert.equal(injected, 7);
      // Each fault costs at most one retry of ours; a reset on a reused keep-alive connection may instead be
      // re-sent by the HTTP client itself (hyper retries requests whose pooled connection was closed).
      const retries = events.filter((e) => e.type === "retry");
      assert.ok(retries.length >= 4 && retries.length <= 6, `${retries.length} retries`);
      assert.ok(retries.every((e) => e.type === "retry" && e.errorClass === "connection" && e.db === "app"));
      assert.deepEqual(proxy.stats.injected.slowdown_503, 1);
    });

    await t.step(
      "cut responses (reset mid-body, truncation) never yield data; retries get the right bytes",
      async () => {
        const body = payload(200_000, 3);
        proxy.setFaults({ rules: [] });
        const plain = direct({ prefix: "cut" });
        await plain.put("obj", body);
        for (const kind of ["reset_mid_body", "truncate"] as const) {
          proxy.setFaults({ rules: [{ kind, method: "GET", times: 1 }] });
          await assert.rejects(plain.get("obj"), (e: Error) => {
            assert.ok(e instanceof ConnectionError, `${kind}: ${e}`);
            assert.equal(e.transient, true);
            return true;
          });
          proxy.setFaults({ rules: [{ kind, method: "GET", times: 2 }] });
          const { store } = retrying({ prefix: "cut" });
          assert.deepEqual(await store.get("obj"), body);
        }
        // A stream cut mid-way errors instead of ending early.
        proxy.setFaults({ rules: [{ kind: "reset_mid_body", method: "GET", times: 1 }] });
        const stream = await plain.getStream("obj");
        let got = 0;
        await assert.rejects(
          (async () => {
            for await (const c of stream) got += c.byteLength;
          })(),
          ConnectionError,
        );
        assert.ok(got < body.byteLength);
      },
    );

    await t.step("a valid-looking short response is caught by the sha256 check, and retried", async () => {
      proxy.setFaults({ rules: [] });
      const plain = direct({ prefix: "short" });
      const body = payload(100_000, 4);
      await plain.put("obj", body);
      proxy.setFaults({ rules: [{ kind: "short_body", method: "GET", times: 1 }] });
      await assert.rejects(plain.get("obj"), CorruptionError);
      proxy.setFaults({ rules: [{ kind: "short_body", method: "GET", times: 2 }] });
      const { store } = retrying({ prefix: "short" });
      assert.deepEqual(await store.get("obj"), body);
      // Through a ReplicaClient too: LTX reads are verified end to end.
      const client = new ReplicaClient(store, "db");
      await client.writeLtxFile(0, 1, 1, body, { timestamp: Date.now() });
      proxy.setFaults({ rules: [{ kind: "short_body", method: "GET", times: 1 }] });
      assert.deepEqual(await client.readLtxFile(0, 1, 1), body);
    });

    await t.step("putFile: a failed part is retried; a refused one aborts the multipart upload", async () => {
      const dir = await Deno.makeTempDir({ prefix: "walrust-faults-putfile-" });
      try {
        const size = MULTIPART_PART_BYTES + 100_000;
        const body = payload(size, 7);
        const path = `${dir}/snap.ltx`;
        await Deno.writeFile(path, body);
        const opts = { size, sha256: await sha256Hex(body), crc64: crc64(body) };
        // A 500 on the second part: the retrying store uploads the whole file again, and it arrives intact.
        const count = (k: "error_500" | "latency") => proxy.stats.injected[k] ?? 0;
        const before500 = count("error_500");
        proxy.setFaults({ rules: [{ kind: "error_500", method: "PUT", path: "partNumber=2", times: 1 }] });
        const { store, events } = retrying({ prefix: "pf" });
        await store.putFile!("app/0009/a.ltx", path, opts);
        assert.equal(count("error_500") - before500, 1);
        assert.ok(events.some((e) => e.type === "retry"));
        assert.deepEqual(await direct({ prefix: "pf" }).get("app/0009/a.ltx"), body);
        // A part refused for good: the upload is aborted (a DELETE with its uploadId), no object appears.
        const beforeLatency = count("latency");
        proxy.setFaults({
          rules: [
            { kind: "auth_invalid_key", method: "PUT", path: "partNumber=2" },
            { kind: "latency", method: "DELETE", path: "uploadId=", latencyMs: 1 },
          ],
        });
        await assert.rejects(direct({ prefix: "pf" }).putFile("app/0009/b.ltx", path, opts), AuthError);
        assert.equal(count("latency") - beforeLatency, 1);
        proxy.setFaults({ rules: [] });
        assert.equal(await direct({ prefix: "pf" }).head("app/0009/b.ltx"), null);
      } finally {
        proxy.setFaults({ rules: [] });
        await Deno.remove(dir, { recursive: true });
      }
    });

    await t.step("stalls are cut by the timeouts instead of hanging", async () => {
      proxy.setFaults({ rules: [] });
      const s = direct({ prefix: "stall", requestTimeoutMs: 400, idleTimeoutMs: 400 });
      await s.put("obj", payload(100_000, 5));
      proxy.setFaults({ rules: [{ kind: "stall", method: "GET", times: 1 }] });
      await assert.rejects(s.get("obj"), (e: Error) => {
        assert.ok(e instanceof ConnectionError);
        assert.match(e.message, /no response from http:\/\/127\.0\.0\.1:\d+ within 400 ms/);
        return true;
      });
      proxy.setFaults({ rules: [{ kind: "stall_mid_body", method: "GET", times: 1 }] });
      await assert.rejects(s.get("obj"), (e: Error) => {
        assert.ok(e instanceof ConnectionError);
        assert.match(e.message, /stopped sending data for 400 ms after \d+ bytes/);
        return true;
      });
      proxy.setFaults({ rules: [{ kind: "stall", method: "PUT", times: 1 }] });
      await assert.rejects(s.put("obj2", payload(10, 6)), ConnectionError);
      proxy.setFaults({ rules: [] });
      assert.equal((await s.get("obj")).byteLength, 100_000);
    });

    await t.step("an interrupted paginated listing resumes without losing or repeating keys", async () => {
      proxy.setFaults({ rules: [] });
      const { store } = retrying({ prefix: "list", pageSize: 3 });
      const ks = Array.from({ length: 11 }, (_, i) => `db/0000/${i.toString(16).padStart(16, "0")}`);
      for (const k of ks) await store.put(k, payload(10, 7));
      const before = proxy.injectedTotal();
      proxy.setFaults({
        rules: [
          { kind: "error_503", method: "GET", path: "continuation-token", times: 1 },
          { kind: "reset", method: "GET", path: "continuation-token", times: 1 },
        ],
      });
      const listed: string[] = [];
      for await (const o of store.list("db/")) listed.push(o.key);
      assert.deepEqual(listed, ks);
      assert.equal(proxy.injectedTotal() - before, 2, "both page faults fired");
    });

    await t.step("seeded random faults on every operation: all operations end correct", async () => {
      const { store, events } = retrying({ prefix: "random" }, { ...FAST_RETRY, maxAttempts: 12 });
      proxy.setFaults({
        seed: 42,
        rules: [
          { kind: "error_503", probability: 0.1 },
          { kind: "reset", probability: 0.05 },
          { kind: "truncate", method: "GET", probability: 0.1 },
          { kind: "short_body", method: "GET", probability: 0.05 },
        ],
      });
      const before = proxy.injectedTotal();
      const bodies = Array.from({ length: 12 }, (_, i) => payload(20_000 + i, 100 + i));
      for (let i = 0; i < bodies.length; i++) await store.put(`o${i}`, bodies[i]);
      for (let i = 0; i < bodies.length; i++) assert.deepEqual(await store.get(`o${i}`), bodies[i]);
      const injected = proxy.injectedTotal() - before;
      assert.ok(injected > 0, "the plan injected faults");
      const retries = events.filter((e) => e.type === "retry").length;
      assert.ok(retries > 0 && retries <= injected, `${retries} retries for ${injected} faults`);
    });
  } finally {
    proxy.setFaults({ rules: [] });
    for (const c of closers) c.close();
    await proxy.stop();
    await server.stop();
  }
});
