/**
 * `walrust explain` end to end: effective settings with sources, masked secrets, cost arithmetic, JSON shape.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runInProcess, runProcess } from "./support/cli.ts";
import type { ExplainReport } from "../src/cli/explain.ts";

const ACCESS_KEY = "AKIAEXPLAINTESTKEYXYZ";
const SECRET = "explain-very-secret-value-0001";
const TOKEN = "explain-session-token-0001";
const HOOK_SECRET = "explain-hook-hmac-secret-01";
const HOOK_TOKEN = "T0SECRETPATHTOKEN";

async function withFixture(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-explain-" });
  try {
    await Deno.mkdir(`${dir}/data`);
    for (const name of ["a", "b"]) {
      const db = new DatabaseSync(`${dir}/data/${name}.db`);
      db.exec(
        "PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
      );
      db.close();
    }
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]
url = "s3://explain-bucket/prod"
endpoint = "https://fly.storage.tigris.dev"
access_key_id = "\${EXPLAIN_KEY}"
secret_access_key = "\${EXPLAIN_SECRET}"

[sync]
interval = "1s"
snapshot_interval = "24h"

[[webhooks]]
url = "https://hooks.example.com/services/${HOOK_TOKEN}"
secret = "${HOOK_SECRET}"

[[databases]]
path = "data/*.db"
name = "tenants"

[[databases]]
path = "data/missing.db"
`,
    );
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const ENV = { EXPLAIN_KEY: ACCESS_KEY, EXPLAIN_SECRET: SECRET, AWS_SESSION_TOKEN: TOKEN, AWS_REGION: "auto" };

function assertNoSecrets(text: string): void {
  for (const s of [ACCESS_KEY, SECRET, TOKEN, HOOK_SECRET, HOOK_TOKEN]) {
    assert.equal(text.includes(s), false, `secret ${s} leaked into explain output`);
  }
}

Deno.test("explain: settings with sources, secrets masked, cost printed (text)", async () => {
  await withFixture(async (dir) => {
    const r = await runInProcess(
      [
        "explain",
        "--config",
        `${dir}/walrust.toml`,
        "--writes-per-second",
        "1",
        "--checkpoint-interval",
        "2m",
      ],
      ENV,
    );
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assertNoSecrets(out + r.stderr);
    assert.match(out, /Configuration: .*walrust\.toml \(from --config\)/);
    assert.match(
      out,
      /Database 'tenants\/a' .*data\/a\.db \(glob data\/\*\.db\).*→ {2}s3:\/\/explain-bucket\/prod\/tenants\/a\//,
    );
    assert.match(out, /Database 'tenants\/b'/);
    assert.match(out, /replica\.access_key_id +AKIA…XYZ +config \(.*walrust\.toml:4:1\)/);
    assert.match(out, /replica\.secret_access_key +\(set, hidden\) +config/);
    assert.match(out, /replica\.session_token +\(set, hidden\) +env \(AWS_SESSION_TOKEN\)/);
    assert.match(out, /replica\.region +auto +env \(AWS_REGION\)/);
    assert.match(out, /sync\.interval +1s +config \(.*walrust\.toml:8:1\)/);
    assert.match(out, /sync\.checkpoint_interval +2m +flag \(--checkpoint-interval\)/);
    assert.match(out, /sync\.min_checkpoint_pages +1000 +default/);
    assert.match(out, /PUT {2}L0 uploads +2,592,000/);
    assert.match(out, /AWS S3 Standard +\$\d+\.\d\d/);
    assert.match(out, /Tigris +\$\d+\.\d\d/);
    assert.match(out, /Cloudflare R2 +\$\d+\.\d\d/);
    assert.match(out, /webhook https:\/\/hooks\.example\.com\/… .*signed: yes \(secret hidden\)/);
    assert.match(out, /Prices used/);
    assert.match(out, /data\/missing\.db does not exist/, "a missing database is a warning in explain");
    assert.match(out, /Database 'missing' .*1\.0 GiB assumed: file not found/);
  });
});

Deno.test("explain --json: shape, sources, cost arithmetic, no secrets", async () => {
  await withFixture(async (dir) => {
    const r = await runInProcess(
      ["explain", "-c", `${dir}/walrust.toml`, "--json", "--writes-per-second", "1"],
      ENV,
    );
    assert.equal(r.code, 0, r.stderr);
    assertNoSecrets(r.stdout);
    const report = JSON.parse(r.stdout) as ExplainReport;
    assert.equal(report.config, `${dir}/walrust.toml`);
    assert.equal(report.configFoundBy, "flag");
    assert.equal(report.writesPerSecond, 1);
    assert.deepEqual(report.databases.map((d) => d.name), ["tenants/a", "tenants/b", "missing"]);
    const a = report.databases[0];
    assert.equal(a.path, `${dir}/data/a.db`);
    assert.equal(a.glob, "data/*.db");
    assert.equal(a.exists, true);
    assert.equal(a.sizeSource, "file");
    assert.equal(a.pageSize, 8192, "page size read from the database header");
    assert.equal(a.destination, "s3://explain-bucket/prod/tenants/a/");
    const byKey = Object.fromEntries(a.settings.map((s) => [s.key, s]));
    for (const s of a.settings) {
      assert.ok(["default", "config", "env", "flag"].includes(s.source), s.key);
      assert.equal(typeof s.display, "string");
    }
    assert.deepEqual(byKey["sync.interval"], {
      key: "sync.interval",
      value: 1000,
      display: "1s",
      source: "config",
      detail: `${dir}/walrust.toml:8:1`,
    });
    assert.deepEqual(byKey["sync.checkpoint_interval"], {
      key: "sync.checkpoint_interval",
      value: 60_000,
      display: "1m",
      source: "default",
    });
    assert.equal(byKey["replica.access_key_id"].value, "AKIA…XYZ");
    assert.equal(byKey["replica.secret_access_key"].value, "(set)");
    assert.deepEqual(byKey["compaction.levels"].value, [30_000, 300_000, 3_600_000]);
    assert.equal(byKey["name"].source, "config");
    // Cost arithmetic: 1 write/s at a 1 s sync interval.
    assert.equal(a.cost.puts.l0, 2_592_000);
    assert.deepEqual(a.cost.puts.compaction, [86_400, 8_640, 720]);
    assert.equal(a.cost.puts.snapshot, 30);
    assert.equal(a.cost.puts.total, 2_687_790);
    const aws = a.cost.providers.find((p) => p.name === "AWS S3 Standard")!;
    assert.ok(Math.abs(aws.classA - ((a.cost.puts.total + a.cost.lists.total) / 1000) * 0.005) < 1e-9);
    assert.deepEqual(report.prices.map((p) => p.name), ["AWS S3 Standard", "Tigris", "Cloudflare R2"]);
    const r2 = report.prices.find((p) => p.name === "Cloudflare R2")!;
    assert.equal(r2.egressPerGb, 0);
    // Totals are the sum over databases.
    for (let i = 0; i < report.totals.length; i++) {
      const sum = report.databases.reduce((s, d) => s + d.cost.providers[i].total, 0);
      assert.ok(Math.abs(report.totals[i].total - sum) < 1e-9);
    }
    const missing = report.databases[2];
    assert.equal(missing.exists, false);
    assert.equal(missing.sizeSource, "assumed");
    assert.equal(missing.sizeBytes, 1024 ** 3);
    assert.equal(report.defaults, null);
    assert.deepEqual(report.webhooks, [{
      url: "https://hooks.example.com/…",
      events: [
        "upload_failed",
        "auth_failure",
        "corruption_detected",
        "circuit_breaker_open",
        "circuit_breaker_closed",
        "checkpoint_emergency",
        "verify_failed",
      ],
      secret: true,
    }]);
    assert.deepEqual(report.process.map((s) => [s.key, s.value, s.source]), [
      ["metrics.addr", "127.0.0.1:16767", "default"],
      ["sync.shutdown_timeout", 10_000, "default"],
    ]);
    assert.equal(report.warnings.length, 1);
    assert.ok(report.assumptions.length > 0);
  });
});

Deno.test("explain: the write rate drives the L0 count (min of writes/s and 1/sync interval)", async () => {
  await withFixture(async (dir) => {
    const run = async (wps: string, extra: string[] = []) => {
      const r = await runInProcess(
        ["explain", "-c", `${dir}/walrust.toml`, "--json", "--writes-per-second", wps, ...extra],
        ENV,
      );
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as ExplainReport).databases[0].cost;
    };
    assert.equal((await run("10")).puts.l0, 2_592_000, "10 writes/s still one L0 file per second");
    assert.equal((await run("0.5")).puts.l0, 1_296_000);
    assert.equal((await run("10", ["--sync-interval", "100ms"])).puts.l0, 25_920_000);
    assert.equal((await run("0")).puts.total, 0);
    const r = await runInProcess(
      ["explain", "-c", `${dir}/walrust.toml`, "--json", "--db-size", "10MiB"],
      ENV,
    );
    const sized = (JSON.parse(r.stdout) as ExplainReport).databases[0];
    assert.deepEqual([sized.sizeBytes, sized.sizeSource], [10 * 1024 * 1024, "flag"]);
    assert.equal(sized.cost.storage.snapshotBytes, 29 * 10 * 1024 * 1024, "29 GFS snapshots of the database");
  });
});

Deno.test("explain: flags only, without a config file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-explain-" });
  try {
    const db = new DatabaseSync(`${dir}/app.db`);
    db.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x);");
    db.close();
    const r = await runInProcess(
      ["explain", `${dir}/app.db`, "-b", `${dir}/backups`, "--sync-interval", "2s", "--json"],
      { AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET },
    );
    assert.equal(r.code, 0, r.stderr);
    assertNoSecrets(r.stdout);
    const report = JSON.parse(r.stdout) as ExplainReport;
    assert.equal(report.config, null);
    const d = report.databases[0];
    assert.equal(d.name, "app");
    const byKey = Object.fromEntries(d.settings.map((s) => [s.key, s]));
    assert.deepEqual([byKey["replica.url"].source, byKey["replica.url"].detail], ["flag", "--bucket"]);
    assert.deepEqual([byKey["sync.interval"].value, byKey["sync.interval"].source], [2000, "flag"]);
    assert.equal(d.cost.puts.l0, 1_296_000, "1 write/s at a 2 s sync interval");

    const noDb = await runInProcess(["explain", "-b", "s3://some-bucket/x"], {});
    assert.equal(noDb.code, 0, noDb.stderr);
    assert.match(noDb.stdout, /No databases configured\. Settings a database would get:/);
    assert.match(noDb.stdout, /replica\.url +s3:\/\/some-bucket\/x +flag \(--bucket\)/);
    assert.match(noDb.stdout, /For one 1\.0 GiB database/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("explain: errors are one line with exit code 2", async () => {
  await withFixture(async (dir) => {
    const bad = await runInProcess(
      ["explain", "-c", `${dir}/walrust.toml`, "--writes-per-second", "lots"],
      ENV,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--writes-per-second: expected a number/);
    await Deno.writeTextFile(`${dir}/broken.toml`, `[sync]\n  snapshot_intervall = "1h"\n`);
    const broken = await runInProcess(["explain", "-c", `${dir}/broken.toml`], ENV);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /^walrust: .*broken\.toml:2:3: unknown key 'snapshot_intervall' in \[sync\]/);
    assert.equal(broken.stderr.trim().split("\n").length, 1);
    await Deno.writeTextFile(`${dir}/invalid.toml`, `[sync\n`);
    const invalid = await runInProcess(["explain", "-c", `${dir}/invalid.toml`], ENV);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /invalid\.toml:1:\d+: invalid TOML/);
  });
});

Deno.test("explain: without any configuration, says so and how to make one (subprocess)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-explain-" });
  try {
    const r = await runProcess(["explain"], {
      cwd: dir,
      env: { WALRUST_CONFIG: "", WALRUST_REPLICA_URL: "" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^No configuration found/);
    assert.match(r.stdout, /\[\[databases\]\]/);
    const json = await runProcess(["explain", "--json"], {
      cwd: dir,
      env: { WALRUST_CONFIG: "", WALRUST_REPLICA_URL: "" },
    });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { config: null, databases: [], message: "no configuration" });
    // ./walrust.toml in the working directory is found without --config.
    await Deno.writeTextFile(`${dir}/walrust.toml`, `[replica]\nurl = "s3://cwd-bucket/x"\n`);
    const found = await runProcess(["explain", "--json"], { cwd: dir, env: { WALRUST_CONFIG: "" } });
    assert.equal(found.code, 0, found.stderr);
    const report = JSON.parse(found.stdout) as ExplainReport;
    assert.equal(report.configFoundBy, "cwd");
    assert.equal(report.defaults?.find((s) => s.key === "replica.url")?.value, "s3://cwd-bucket/x");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
