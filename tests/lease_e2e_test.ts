/**
 * Single writer, end to end: two `walrust watch` processes replicating two different database files under the
 * same name to the same replica must never both write. On S3 (s3rver behind the fault proxy, which enforces
 * `If-None-Match`/`If-Match`) the lease object decides; on a local directory an exclusive OS lock does. The
 * second process refuses with one clear line and exit 11; once the first stops — gracefully, or with kill -9
 * and (S3) the lease's expiry — the second takes over.
 *
 * The S3 lease's TTL is 30 s and not configurable, so "after expiry" is produced by rewriting the lease
 * object's `expiresAt` into the past directly in s3rver (what 30 s of waiting would do), not by sleeping.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { spawnProcess } from "./support/cli.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { startS3rver } from "./support/s3rver.ts";

const DEC = new TextDecoder();

interface Watch {
  child: Deno.ChildProcess;
  out: () => string;
  done: Promise<Deno.CommandStatus>;
}

function watch(db: string, url: string, extra: string[], env: Record<string, string>): Watch {
  const child = spawnProcess(
    [
      "watch",
      db,
      "-b",
      url,
      ...extra,
      "--no-metrics",
      "--sync-interval",
      "100ms",
      "--shutdown-timeout",
      "10s",
    ],
    { env },
  );
  let text = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += DEC.decode(c, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const done = child.status.then(async (s) => {
    await drained;
    return s;
  });
  return { child, out: () => text, done };
}

/** Resolves once the watch logged that it is watching; rejects if it exits first. */
async function watching(w: Watch): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (/ watching /.test(w.out())) return;
    const exited = await Promise.race([w.done, new Promise<null>((r) => setTimeout(() => r(null), 50))]);
    if (exited) throw new Error(`watch exited ${exited.code} before watching:\n${w.out()}`);
  }
  throw new Error(`watch did not start:\n${w.out()}`);
}

async function stop(w: Watch | null, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus | null> {
  if (!w) return null;
  try {
    w.child.kill(signal);
  } catch { /* already gone */ }
  return await w.done;
}

function makeDb(path: string): void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  db.prepare("INSERT INTO t (v) VALUES (?)").run(path);
  db.close();
}

function write(path: string, v: string): void {
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.prepare("INSERT INTO t (v) VALUES (?)").run(v);
  db.close();
}

/** The second watch refuses: exit 11 and exactly one `walrust:` line naming the replica and the holder. */
function assertRefused(st: Deno.CommandStatus, out: string, replica: RegExp): void {
  assert.equal(st.code, 11, out);
  const errs = out.split("\n").filter((l) => l.startsWith("walrust: "));
  assert.equal(errs.length, 1, out);
  assert.match(errs[0], replica);
  assert.match(errs[0], /is being written by walrust for .*\/a\/app\.db \(pid \d+/);
}

async function withDbs(fn: (dir: string, a: string, b: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-lease-e2e-" });
  try {
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    makeDb(`${dir}/a/app.db`);
    makeDb(`${dir}/b/app.db`);
    await fn(dir, `${dir}/a/app.db`, `${dir}/b/app.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "lease e2e (S3 via the proxy): a second watch refuses (exit 11); takes over after a graceful stop and after kill -9 + expiry",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const s3 = await startS3rver();
    const proxy = await startFaultProxy(s3.endpoint);
    let a: Watch | null = null;
    let b: Watch | null = null;
    try {
      await withDbs(async (_dir, dbA, dbB) => {
        const url = `s3://${s3.bucket}/lease`;
        const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
        const args = ["--endpoint", proxy.endpoint];
        a = watch(dbA, url, args, env);
        await watching(a);

        // 1. Refused while A holds the lease.
        b = watch(dbB, url, args, env);
        const refused = await b.done;
        assertRefused(refused, b.out(), /replica s3:\/\/walrust-test\/lease\/app/);
        b = null;
        assert.ok(proxy.stats.preconditionFailed > 0, "the lease write was refused by If-None-Match");

        // 2. A stops gracefully (releases the lease): B takes over at once.
        assert.equal((await stop(a))?.code, 0, a.out());
        a = null;
        b = watch(dbB, url, args, env);
        await watching(b);
        write(dbB, "from b");
        assert.equal((await stop(b))?.code, 0);
        b = null;

        // 3. A again, killed with -9: its lease stays until it expires; B is refused until then.
        a = watch(dbA, url, args, env);
        await watching(a);
        await stop(a, "SIGKILL");
        a = null;
        b = watch(dbB, url, args, env);
        assertRefused(await b.done, b.out(), /lease\/app/);
        b = null;
        // Expire the lease as 30 s would (directly in s3rver, not through the proxy).
        const leaseUrl = `${s3.endpoint}/${s3.bucket}/lease/app/lease.json`;
        const lease = JSON.parse(await (await fetch(leaseUrl)).text());
        assert.match(lease.owner, /a\/app\.db$/);
        lease.expiresAt = new Date(Date.now() - 1000).toISOString();
        const put = await fetch(leaseUrl, { method: "PUT", body: JSON.stringify(lease) });
        await put.body?.cancel();
        assert.equal(put.status, 200);
        b = watch(dbB, url, args, env);
        await watching(b);
        const taken = JSON.parse(await (await fetch(leaseUrl)).text());
        assert.match(taken.owner, /b\/app\.db$/);
        assert.equal((await stop(b))?.code, 0, b.out());
        b = null;
      });
    } finally {
      await stop(a, "SIGKILL");
      await stop(b, "SIGKILL");
      await proxy.stop();
      await s3.stop();
    }
  },
});

Deno.test({
  name:
    "lease e2e (S3): after kill -9, a restart takes over its own lease even when reading it fails a few times",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const s3 = await startS3rver();
    const proxy = await startFaultProxy(s3.endpoint);
    let a: Watch | null = null;
    try {
      await withDbs(async (dir, dbA) => {
        const url = `s3://${s3.bucket}/own`;
        const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
        await Deno.writeTextFile(`${dir}/walrust.toml`, `[retry]\nmax_attempts = 3\nbase_delay = "10ms"\n`);
        const args = ["--endpoint", proxy.endpoint, "--config", `${dir}/walrust.toml`];
        a = watch(dbA, url, args, env);
        await watching(a);
        await stop(a, "SIGKILL");
        // The restart reads the lease once (it is ours, but held), then reads it again to take it over: that
        // second read fails on every one of its 3 attempts (damaged responses). It must retry, not give up
        // with "being written by" its own dead predecessor.
        proxy.setFaults({
          rules: [
            { kind: "latency", latencyMs: 1, method: "GET", path: "lease.json", times: 1 },
            { kind: "short_body", method: "GET", path: "lease.json", times: 3 },
          ],
        });
        a = watch(dbA, url, args, env);
        await watching(a);
        assert.equal(proxy.stats.injected.short_body, 3);
        assert.equal((await stop(a))?.code, 0, a.out());
        a = null;
      });
    } finally {
      await stop(a, "SIGKILL");
      await proxy.stop();
      await s3.stop();
    }
  },
});

Deno.test({
  name:
    "lease e2e (directory): a second watch refuses (exit 11) while the first holds the lock; takes over after kill -9",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    let a: Watch | null = null;
    let b: Watch | null = null;
    try {
      await withDbs(async (dir, dbA, dbB) => {
        const url = `${dir}/replica`;
        a = watch(dbA, url, [], {});
        await watching(a);
        b = watch(dbB, url, [], {});
        assertRefused(await b.done, b.out(), new RegExp(`replica ${url}/app`));
        b = null;
        await stop(a, "SIGKILL");
        a = null;
        // The kernel dropped the dead process's lock: B takes over at once.
        b = watch(dbB, url, [], {});
        await watching(b);
        write(dbB, "from b");
        assert.equal((await stop(b))?.code, 0, b.out());
        b = null;
        // And after a graceful stop of B, A can come back.
        a = watch(dbA, url, [], {});
        await watching(a);
        assert.equal((await stop(a))?.code, 0, a.out());
        a = null;
      });
    } finally {
      await stop(a, "SIGKILL");
      await stop(b, "SIGKILL");
    }
  },
});
