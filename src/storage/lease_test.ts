import assert from "node:assert/strict";
import { BucketNotFoundError, ConflictError, ConnectionError } from "../errors.ts";
import { FileObjectStore } from "./file.ts";
import { acquireLease, leaseKey } from "./lease.ts";
import { MemoryObjectStore } from "./memory.ts";
import type { PutOptions } from "./object_store.ts";
import { RetryingObjectStore } from "./retry.ts";

const NO_RENEW = { renewIntervalMs: 0 };

Deno.test("object lease: the second acquirer gets ConflictError naming the holder", async () => {
  const store = new MemoryObjectStore("s3", "bucket/pre");
  const lease = await acquireLease(store, "app", "walrust watch", 30_000, NO_RENEW);
  try {
    assert.equal(lease.lost, false);
    assert.ok(store.objects.has("app/lease.json"));
    await assert.rejects(acquireLease(store, "app", "other", 30_000, NO_RENEW), (e: Error) => {
      assert.ok(e instanceof ConflictError);
      assert.match(
        e.message,
        new RegExp(
          `^replica memory://bucket/pre/app is being written by walrust watch \\(pid ${Deno.pid}, host .+\\) ` +
            `until ${lease.info.expiresAt.replace(/\./g, "\\.")}; stop it or wait$`,
        ),
      );
      return true;
    });
    // Another database is independent.
    const other = await acquireLease(store, "other-db", "x", 30_000, NO_RENEW);
    await other.release();
  } finally {
    await lease.release();
  }
  assert.equal(store.objects.has("app/lease.json"), false, "release deletes our lease");
  const again = await acquireLease(store, "app", "next", 30_000, NO_RENEW);
  await again.release();
});

Deno.test("object lease: an expired lease is taken over; the old holder finds it lost on renew", async () => {
  const store = new MemoryObjectStore("s3");
  let now = 1_000_000;
  const first = await acquireLease(store, "app", "first", 10_000, { ...NO_RENEW, now: () => now });
  await first.renew();
  now += 9_000;
  await assert.rejects(
    acquireLease(store, "app", "second", 10_000, { ...NO_RENEW, now: () => now }),
    ConflictError,
  );
  now += 20_000;
  assert.equal(first.lost, true, "not renewed before expiry counts as lost");
  const second = await acquireLease(store, "app", "second", 10_000, { ...NO_RENEW, now: () => now });
  assert.equal(second.lost, false);
  await assert.rejects(first.renew(), /lease on memory:\/\/test\/app was lost/);
  await first.release(); // must not delete the new holder's lease
  assert.ok(store.objects.has("app/lease.json"));
  await second.renew();
  await second.release();
  assert.equal(store.objects.has("app/lease.json"), false);
});

Deno.test("object lease: a lost answer to our own create (retry → 412) still gives us the lease", async () => {
  class LostAnswer extends MemoryObjectStore {
    once = true;
    override async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
      const r = await super.put(key, body, options);
      if (this.once && options?.ifNoneMatch) {
        this.once = false;
        throw new ConflictError("precondition failed (the retry of a write that had succeeded)");
      }
      return r;
    }
  }
  const store = new LostAnswer("s3");
  const lease = await acquireLease(store, "app", "me", 30_000, NO_RENEW);
  await lease.renew();
  await lease.release();
  assert.equal(store.objects.size, 0);
});

Deno.test("object lease: unreadable lease content is treated as expired and taken over conditionally", async () => {
  const store = new MemoryObjectStore("s3");
  await store.put(leaseKey("app"), new TextEncoder().encode("{not json"));
  const lease = await acquireLease(store, "app", "me", 30_000, NO_RENEW);
  assert.equal(lease.info.owner, "me");
  await lease.release();
});

Deno.test("object lease: automatic renewal keeps the lease and reports a takeover", async () => {
  const store = new MemoryObjectStore("s3");
  let lostErr = null as Error | null;
  const lease = await acquireLease(store, "app", "me", 60_000, {
    renewIntervalMs: 10,
    onLost: (e) => void (lostErr = e),
  });
  try {
    const before = store.objects.get("app/lease.json")!.etag;
    await new Promise((r) => setTimeout(r, 60));
    assert.notEqual(store.objects.get("app/lease.json")!.etag, before, "renewed");
    // Someone overwrites it (e.g. an operator forced a takeover).
    await store.put("app/lease.json", new TextEncoder().encode("{}"));
    for (let i = 0; i < 50 && !lostErr; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(lostErr instanceof ConflictError);
    assert.equal(lease.lost, true);
  } finally {
    await lease.release();
  }
});

Deno.test("object lease: transient errors while acquiring propagate (the caller retries)", async () => {
  class Down extends MemoryObjectStore {
    override put(): Promise<{ etag?: string }> {
      return Promise.reject(new ConnectionError("unreachable"));
    }
  }
  await assert.rejects(acquireLease(new Down("s3"), "app", "me", 1_000, NO_RENEW), ConnectionError);
});

Deno.test("file lease: an OS lock; the second acquirer gets ConflictError until the first releases", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-lease-" });
  try {
    const store = new FileObjectStore(`${dir}/replica`);
    const lease = await acquireLease(store, "app", "walrust watch", 30_000);
    const lockFile = `${dir}/replica/app/lease.lock`;
    const info = JSON.parse(await Deno.readTextFile(lockFile));
    assert.equal(info.owner, "walrust watch");
    assert.equal(info.pid, Deno.pid);
    await assert.rejects(acquireLease(store, "app", "second", 30_000), (e: Error) => {
      assert.ok(e instanceof ConflictError);
      assert.match(
        e.message,
        /^replica .*\/replica\/app is being written by walrust watch \(pid \d+, host .+\) until it exits; stop it or wait$/,
      );
      return true;
    });
    // Through a retrying wrapper too (localPath is forwarded).
    const wrapped = new RetryingObjectStore(store, {
      maxAttempts: 2,
      baseDelayMs: 1,
      maxDelayMs: 1,
      breakerThreshold: 0,
      breakerCooldownMs: 1,
    });
    await assert.rejects(acquireLease(wrapped, "app", "third", 30_000), ConflictError);
    await lease.renew();
    assert.equal(lease.lost, false);
    await lease.release();
    await lease.release();
    const next = await acquireLease(wrapped, "app", "third", 30_000);
    assert.equal(JSON.parse(await Deno.readTextFile(lockFile)).owner, "third");
    await next.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file lease: held by another process (killed -9: the kernel drops the lock)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-lease-proc-" });
  const script = `
    import { FileObjectStore } from "${new URL("./file.ts", import.meta.url).href}";
    import { acquireLease } from "${new URL("./lease.ts", import.meta.url).href}";
    await acquireLease(new FileObjectStore(${JSON.stringify(dir)}), "app", "child", 1000);
    console.log("locked");
    setInterval(() => {}, 60_000);
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /locked/);
    reader.releaseLock();
    await assert.rejects(
      acquireLease(new FileObjectStore(dir), "app", "parent", 1000),
      /being written by child/,
    );
    child.kill("SIGKILL");
    await child.status;
    const lease = await acquireLease(new FileObjectStore(dir), "app", "parent", 1000);
    await lease.release();
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file lease: a missing replica parent directory is BucketNotFoundError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-lease-missing-" });
  try {
    await assert.rejects(
      acquireLease(new FileObjectStore(`${dir}/no/such`), "app", "me", 1000),
      BucketNotFoundError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("object lease: a renewal whose answer was lost (retry → 412) keeps the lease", async () => {
  class LostRenewAnswer extends MemoryObjectStore {
    failNextIfMatch = false;
    override async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
      const r = await super.put(key, body, options);
      if (this.failNextIfMatch && options?.ifMatch) {
        this.failNextIfMatch = false;
        throw new ConflictError("precondition failed (the retry of a renewal that had succeeded)");
      }
      return r;
    }
  }
  const store = new LostRenewAnswer("s3");
  const lease = await acquireLease(store, "app", "me", 30_000, NO_RENEW);
  store.failNextIfMatch = true;
  await lease.renew();
  assert.equal(lease.lost, false);
  await lease.renew(); // the ETag was refreshed: the next renewal succeeds normally
  await lease.release();
  assert.equal(store.objects.size, 0);
});

Deno.test("object lease: automatic renewal failing until expiry reports the lease lost", async () => {
  class GoesDown extends MemoryObjectStore {
    down = false;
    override put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
      if (this.down) return Promise.reject(new ConnectionError("unreachable"));
      return super.put(key, body, options);
    }
  }
  const store = new GoesDown("s3");
  let now = 1_000_000;
  const seen: { err: Error | null } = { err: null };
  const lease = await acquireLease(store, "app", "me", 1_000, {
    renewIntervalMs: 5,
    now: () => now,
    onLost: (e) => void (seen.err = e),
  });
  try {
    store.down = true;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(seen.err as Error | null, null, "a transient failure before expiry is retried quietly");
    now += 2_000;
    for (let i = 0; i < 50 && !seen.err; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(seen.err instanceof ConflictError);
    assert.match(seen.err.message, /expired at .*could not be renewed \(unreachable\); stop writing/);
    assert.equal(lease.lost, true);
  } finally {
    await lease.release();
  }
});
