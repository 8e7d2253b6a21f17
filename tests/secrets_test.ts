/**
 * Secrets never leak, and object keys from listings are never followed outside the replica.
 *
 * 1. A run with a known AWS secret key, session token and webhook secret (in walrust.toml and in the
 *    environment) across `watch` (JSON logs, metrics server, a webhook receiver, S3 faults that make uploads
 *    fail and the circuit breaker open and close), `restore`, `list`, `verify`, `explain` (text and JSON), and
 *    provoked errors (unknown access key, unreachable endpoint): every byte of stdout/stderr, /metrics,
 *    /health, /api/status, the dashboard page, and every webhook request (headers and body) is searched —
 *    none contains any of the three secrets.
 * 2. Hostile keys on the file backend: symlinked files and directories in the replica pointing outside it,
 *    and (in-process, through a listing wrapper) keys such as `app/ltx/0/../../../../etc/x` — restore and
 *    verify ignore them and never open a path built from them.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type CliResult, runInProcess, runProcess, spawnProcess } from "./support/cli.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { startS3rver } from "./support/s3rver.ts";
import { configureLogging } from "../src/observe/log.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import type { ObjectInfo, ObjectStore } from "../src/storage/object_store.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { restoreDatabase } from "../src/restore/restore.ts";
import { verifyReplica } from "../src/verify/verify.ts";
import { ltxFor, putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";

configureLogging({ level: "error" });

const DEC = new TextDecoder();

function randomSecret(tag: string): string {
  return `${tag}${
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

async function get(url: string): Promise<string> {
  const r = await fetch(url);
  return `${r.status} ${[...r.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${await r.text()}`;
}

Deno.test({
  name:
    "secrets: AWS secret key, session token and webhook secret never appear in any output, log, endpoint or webhook",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const SECRET = randomSecret("wsk");
    const TOKEN = randomSecret("wst");
    const HOOK = randomSecret("whs");
    const secrets = [SECRET, TOKEN, HOOK];
    const dir = await Deno.makeTempDir({ prefix: "walrust-secrets-" });
    const s3 = await startS3rver();
    const proxy = await startFaultProxy(s3.endpoint);
    const hooks: string[] = [];
    const hookServer = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
      hooks.push(
        `${req.method} ${req.url}\n${[...req.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${await req
          .text()}`,
      );
      return new Response("ok");
    });
    const hookUrl = `http://127.0.0.1:${hookServer.addr.port}/hook`;
    const seen: { what: string; text: string }[] = [];
    const record = (what: string, r: CliResult) =>
      seen.push({ what, text: `${r.code}\n${r.stdout}\n${r.stderr}` });
    let watch: Deno.ChildProcess | null = null;
    try {
      const db = `${dir}/app.db`;
      const conn = new DatabaseSync(db);
      conn.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
      conn.close();
      const metricsAddr = `127.0.0.1:${freePort()}`;
      const cfg = `${dir}/walrust.toml`;
      const config = `[replica]
url = "s3://${s3.bucket}/sec"
endpoint = "${proxy.endpoint}"
access_key_id = "${s3.accessKeyId}"
secret_access_key = "${SECRET}"
session_token = "${TOKEN}"

[sync]
interval = "100ms"

[retry]
max_attempts = 2
base_delay = "10ms"
max_delay = "50ms"
breaker_threshold = 3
breaker_cooldown = "300ms"

[metrics]
addr = "${metricsAddr}"

[[webhooks]]
url = "${hookUrl}"
secret = "${HOOK}"
events = ["upload_failed", "auth_failure", "circuit_breaker_open", "circuit_breaker_closed", "verify_failed"]

[[databases]]
path = "${db}"
`;
      await Deno.writeTextFile(cfg, config);
      assert.ok(secrets.every((s) => config.includes(s)), "the search below would find the secrets");
      const env = { AWS_SECRET_ACCESS_KEY: SECRET, AWS_SESSION_TOKEN: TOKEN, WALRUST_CONFIG: cfg };

      // watch, with every upload failing at first.
      proxy.setFaults({ rules: [{ kind: "error_500", method: "PUT", path: /\.ltx/ }] });
      watch = spawnProcess(["watch", "--config", cfg, "--log-format", "json"], { env });
      let out = "";
      const drain = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) out += DEC.decode(c, { stream: true });
      };
      const drained = Promise.all([drain(watch.stdout), drain(watch.stderr)]);
      const until = async (what: string, ok: () => boolean) => {
        for (let i = 0; i < 300 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
        assert.ok(ok(), `${what}; watch said:\n${out}`);
      };
      await until("watch started", () => / watching|"msg":"watching"/.test(out));
      const w = new DatabaseSync(db, { timeout: 5000 });
      for (let i = 0; i < 20; i++) w.prepare("INSERT INTO t (v) VALUES (?)").run(`row ${i}`);
      w.close();
      await until("a webhook arrived", () => hooks.length > 0);
      for (const path of ["/metrics", "/health", "/api/status", "/"]) {
        seen.push({ what: `GET ${path} (failing)`, text: await get(`http://${metricsAddr}${path}`) });
      }
      proxy.setFaults({ rules: [] });
      let shipped = "";
      const listing = `${s3.endpoint}/${s3.bucket}?list-type=2&prefix=sec/app/0000/`;
      for (let i = 0; i < 150 && !shipped.includes(".ltx"); i++) {
        await new Promise((r) => setTimeout(r, 100));
        shipped = await (await fetch(listing)).text();
      }
      assert.match(shipped, /\.ltx/, `uploads did not resume once the faults were cleared:\n${out}`);
      for (const path of ["/metrics", "/health", "/api/status", "/"]) {
        seen.push({ what: `GET ${path}`, text: await get(`http://${metricsAddr}${path}`) });
      }
      watch.kill("SIGTERM");
      const st = await watch.status;
      watch = null;
      await drained;
      seen.push({ what: "watch", text: out });
      assert.equal(st.code, 0, out);

      // One-shot commands, successful and failing.
      record("restore", await runProcess(["restore", "app", "-o", `${dir}/r.db`, "--config", cfg], { env }));
      assert.equal(seen.at(-1)!.text.split("\n")[0], "0", seen.at(-1)!.text);
      record("list", await runProcess(["list", "--config", cfg, "--json"], { env }));
      record("verify", await runProcess(["verify", "app", "--config", cfg, "--json"], { env }));
      record("explain", await runProcess(["explain", "--config", cfg], { env }));
      record("explain --json", await runProcess(["explain", "--config", cfg, "--json"], { env }));
      assert.match(seen.at(-2)!.text, /secret_access_key|secret/i, "explain shows that a secret is set");
      const wrongKey = { ...env, AWS_ACCESS_KEY_ID: "NOT-A-KEY" };
      const r4 = await runProcess(
        ["restore", "app", "-o", `${dir}/r2.db`, "-b", `s3://${s3.bucket}/sec`, "--endpoint", s3.endpoint],
        { env: wrongKey },
      );
      record("restore, unknown access key", r4);
      assert.equal(r4.code, 4, r4.stderr);
      const dead = `http://127.0.0.1:${freePort()}`;
      const r5 = await runProcess(["list", "-b", `s3://${s3.bucket}/sec`, "--endpoint", dead], { env });
      record("list, unreachable", r5);
      assert.equal(r5.code, 5, r5.stderr);
      record(
        "verify, unreachable",
        await runProcess(["verify", "app", "-b", `s3://b/x`, "--endpoint", dead], { env }),
      );
      const r6 = await runProcess(
        [
          "watch",
          db,
          "-b",
          `s3://${s3.bucket}/sec2`,
          "--endpoint",
          s3.endpoint,
          "--config",
          cfg,
          "--log-format",
          "json",
        ],
        { env: wrongKey },
      );
      record("watch, unknown access key", r6);
      assert.equal(r6.code, 4, r6.stderr);
      seen.push(...hooks.map((h, i) => ({ what: `webhook ${i}`, text: h })));

      assert.ok(hooks.length >= 1, "webhooks were delivered");
      assert.ok(hooks.some((h) => /x-walrust-signature/i.test(h)), "webhooks are signed");
      for (const { what, text } of seen) {
        for (const s of secrets) assert.ok(!text.includes(s), `${what} contains a secret:\n${text}`);
      }
    } finally {
      if (watch) {
        watch.kill("SIGKILL");
        await watch.status;
      }
      await hookServer.shutdown();
      await proxy.stop();
      await s3.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A store whose listings also return hostile keys, and which records every key it is asked to open. */
function hostile(inner: ObjectStore, extra: string[]): { store: ObjectStore; opened: string[] } {
  const opened: string[] = [];
  const note = (k: string) => opened.push(k);
  const store: ObjectStore = {
    kind: inner.kind,
    displayUrl: inner.displayUrl,
    async *list(prefix, options) {
      for await (const o of inner.list(prefix, options)) yield o;
      for (const key of extra) {
        if (key.startsWith(prefix)) yield { key, size: 4096, lastModified: new Date() } satisfies ObjectInfo;
      }
    },
    get: (k) => (note(k), inner.get(k)),
    getStream: (k) => (note(k), inner.getStream(k)),
    head: (k) => (note(k), inner.head(k)),
    put: (k, b, o) => inner.put(k, b, o),
    delete: (ks) => inner.delete(ks),
    close: () => inner.close(),
    localPath: (k) => (note(k), inner.localPath!(k)),
  };
  return { store, opened };
}

Deno.test("hostile keys: '../' keys in a listing are ignored by restore and verify, never opened", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-hostile-" });
  try {
    const h = sampleHistory(dir, 7);
    const root = `${dir}/replica`;
    const file = new FileObjectStore(root);
    const good = new ReplicaClient(file, "app");
    await putLtx(good, h, 9, 1, 3);
    await putL0Range(good, h, 4, 6);
    // A valid LTX file outside the replica, which a followed "../" key would reach.
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeFile(`${dir}/outside/0000000000000007-0000000000000007.ltx`, await ltxFor(h, 7, 7));
    const evil = [
      "app/ltx/0/../../../outside/0000000000000007-0000000000000007.ltx",
      "app/ltx/0/../0/0000000000000007-0000000000000007.ltx",
      "app/../app/ltx/0/0000000000000007-0000000000000007.ltx",
      "app/ltx/0/0000000000000007-0000000000000007.ltx/../../../../../etc/passwd",
      "/etc/app/ltx/0/0000000000000007-0000000000000007.ltx",
      "app/ltx/9/../../../../../../etc/x",
    ];
    const { store, opened } = hostile(file, evil);
    const client = new ReplicaClient(store, "app");
    const r = await restoreDatabase(client, { output: `${dir}/out.db` });
    assert.equal(r.txid, 6);
    assert.deepEqual(await Deno.readFile(`${dir}/out.db`), h.states[6]);
    const report = await verifyReplica(client, {});
    assert.equal(report.ok, true, report.message);
    assert.equal(report.files, 4);
    const touched = opened.filter((k) => k.includes(".."));
    assert.deepEqual(touched, [], "a hostile key was opened");
    assert.ok(opened.length > 0);
    // And the store itself refuses to build a path from such a key.
    assert.throws(() => file.localPath(evil[0]), /invalid object key/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hostile keys: symlinks in a directory replica pointing outside are not followed (restore, verify, list CLI)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-hostile-" });
  try {
    const h = sampleHistory(dir, 8);
    const root = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(root), "app");
    await putLtx(client, h, 9, 1, 3);
    await putL0Range(client, h, 4, 6);
    // Outside: TXIDs 7 and 8 — following either link would make the restore reach TXID 8.
    await Deno.mkdir(`${dir}/outside/ltx`, { recursive: true });
    await Deno.writeFile(`${dir}/outside/0000000000000007-0000000000000007.ltx`, await ltxFor(h, 7, 7));
    await Deno.writeFile(`${dir}/outside/ltx/0000000000000007-0000000000000008.ltx`, await ltxFor(h, 7, 8));
    await Deno.symlink(
      `${dir}/outside/0000000000000007-0000000000000007.ltx`,
      `${root}/app/ltx/0/0000000000000007-0000000000000007.ltx`,
    );
    await Deno.symlink(`${dir}/outside/ltx`, `${root}/app/ltx/1`);
    const r = await runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", root]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 6 /);
    assert.deepEqual(await Deno.readFile(`${dir}/out.db`), h.states[6]);
    const v = await runInProcess(["verify", "app", "-b", root, "--json"]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    const j = JSON.parse(v.stdout);
    assert.equal(j.newestTxid, 6);
    assert.deepEqual(j.levels.map((l: { level: number }) => l.level), [0, 9]);
    const l = await runInProcess(["list", "-b", root, "--json"]);
    assert.equal(l.code, 0, l.stderr);
    assert.equal(JSON.parse(l.stdout).databases[0].maxTXID, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
