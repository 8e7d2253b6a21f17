/**
 * Configuration end to end: walrust.toml + environment + flags through the functions commands call
 * (src/config/cli.ts), with real files, globs and temp directories.
 */

import assert from "node:assert/strict";
import type { CliIO } from "../src/cli/command.ts";
import {
  loadCliConfig,
  resolveDatabaseSettings,
  resolveReplica,
  resolveWatchSettings,
  WATCH_OPTIONS,
} from "../src/config/cli.ts";
import { resolveDatabases } from "../src/config/resolve.ts";
import { ConfigError, DatabaseError, UsageError } from "../src/errors.ts";
import { configureLogging } from "../src/observe/log.ts";
import { parseCommandArgs } from "../src/cli/command.ts";

function io(env: Record<string, string> = {}): CliIO {
  return { stdout: () => {}, stderr: () => {}, isTTY: false, env: (n) => env[n] };
}

/** A temp dir with the given files (contents: "" unless given); removed after `fn`. */
async function withDir(files: Record<string, string>, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-config-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = `${dir}/${name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Parses command-line flags the way `watch` does. */
function flags(args: string[]): Record<string, unknown> {
  return parseCommandArgs("watch", args, WATCH_OPTIONS).values as Record<string, unknown>;
}

async function captureWarnings(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  configureLogging({ write: (l) => void lines.push(l) });
  try {
    await fn();
  } finally {
    configureLogging({
      write: (l) => {
        Deno.stderr.writeSync(new TextEncoder().encode(l + "\n"));
      },
    });
  }
  return lines;
}

Deno.test("config: precedence default < config < env < flag, with the source of every value", async () => {
  await withDir({
    "app.db": "",
    "walrust.toml": `[replica]
url = "s3://cfg-bucket/p"
endpoint = "https://cfg.example.com"
region = "cfg-region"
access_key_id = "AKIACONFIGKEY0000001"
secret_access_key = "config-secret-0000001"

[sync]
interval = "2s"
snapshot_interval = "6h"

[retention]
daily = 3

[[databases]]
path = "app.db"
snapshot_interval = "3h"
`,
  }, async (dir) => {
    const config = `${dir}/walrust.toml`;
    // Config only.
    let input = await loadCliConfig(flags(["--config", config]), io());
    let [db] = (await resolveDatabases(input, [], "error")).databases;
    let s = db.settings;
    assert.equal(s.syncIntervalMs, 2000);
    assert.deepEqual(db.sources["sync.interval"], { source: "config", detail: `${config}:9:1` });
    assert.equal(s.snapshotIntervalMs, 3 * 3_600_000, "the database entry overrides [sync]");
    assert.deepEqual(db.sources["sync.snapshot_interval"], { source: "config", detail: `${config}:17:1` });
    assert.equal(s.checkpointIntervalMs, 60_000);
    assert.deepEqual(db.sources["sync.checkpoint_interval"], { source: "default" });
    assert.equal(s.retention.daily, 3);
    assert.equal(db.sources["retention.daily"].source, "config");
    assert.equal(s.retention.hourly, 24);
    assert.equal(db.sources["retention.hourly"].source, "default");
    assert.equal(s.replica.url, "s3://cfg-bucket/p");
    assert.equal(s.replica.endpoint, "https://cfg.example.com");
    assert.equal(s.replica.region, "cfg-region");
    assert.equal(s.replica.forcePathStyle, true, "path style defaults on with an endpoint");
    assert.equal(db.sources["replica.force_path_style"].source, "default");
    assert.equal(s.replica.accessKeyId, "AKIACONFIGKEY0000001");
    assert.equal(db.sources["replica.secret_access_key"].source, "config");
    assert.equal(s.name, "app");
    assert.equal(s.path, `${dir}/app.db`);
    assert.equal(s.queueDir, `${dir}/.app.db-walrust`);

    // Environment beats the config file.
    const env = {
      WALRUST_REPLICA_URL: "s3://env-bucket/q",
      AWS_ENDPOINT_URL: "https://generic.example.com",
      AWS_ENDPOINT_URL_S3: "https://s3specific.example.com",
      AWS_DEFAULT_REGION: "default-region",
      AWS_REGION: "env-region",
      AWS_ACCESS_KEY_ID: "AKIAENVIRONMENTKEY01",
      AWS_SECRET_ACCESS_KEY: "env-secret-00000001",
      AWS_SESSION_TOKEN: "env-token-00000001",
    };
    input = await loadCliConfig(flags(["--config", config]), io(env));
    [db] = (await resolveDatabases(input, [], "error")).databases;
    s = db.settings;
    assert.equal(s.replica.url, "s3://env-bucket/q");
    assert.deepEqual(db.sources["replica.url"], { source: "env", detail: "WALRUST_REPLICA_URL" });
    assert.equal(
      s.replica.endpoint,
      "https://s3specific.example.com",
      "AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL",
    );
    assert.deepEqual(db.sources["replica.endpoint"], { source: "env", detail: "AWS_ENDPOINT_URL_S3" });
    assert.equal(s.replica.region, "env-region");
    assert.deepEqual(db.sources["replica.region"], { source: "env", detail: "AWS_REGION" });
    assert.equal(s.replica.accessKeyId, "AKIAENVIRONMENTKEY01");
    assert.equal(s.replica.secretAccessKey, "env-secret-00000001");
    assert.equal(s.replica.sessionToken, "env-token-00000001");
    assert.deepEqual(db.sources["replica.access_key_id"], { source: "env", detail: "AWS_ACCESS_KEY_ID" });
    assert.equal(s.syncIntervalMs, 2000, "no environment variable for tuning");

    // Flags beat everything.
    input = await loadCliConfig(
      flags([
        "--config",
        config,
        "-b",
        "s3://flag-bucket/r",
        "--endpoint",
        "http://127.0.0.1:9000",
        "--region",
        "flag-region",
        "--force-path-style",
        "--sync-interval",
        "250ms",
        "--snapshot-interval",
        "1h",
        "--queue-max-bytes",
        "64MiB",
      ]),
      io(env),
    );
    [db] = (await resolveDatabases(input, [], "error")).databases;
    s = db.settings;
    assert.equal(s.replica.url, "s3://flag-bucket/r");
    assert.deepEqual(db.sources["replica.url"], { source: "flag", detail: "--bucket" });
    assert.equal(s.replica.endpoint, "http://127.0.0.1:9000");
    assert.equal(s.replica.region, "flag-region");
    assert.equal(s.replica.forcePathStyle, true);
    assert.equal(db.sources["replica.force_path_style"].source, "flag");
    assert.equal(s.syncIntervalMs, 250);
    assert.deepEqual(db.sources["sync.interval"], { source: "flag", detail: "--sync-interval" });
    assert.equal(s.snapshotIntervalMs, 3_600_000, "a flag beats the database entry too");
    assert.equal(s.queueMaxBytes, 64 * 1024 * 1024);
    assert.equal(s.replica.accessKeyId, "AKIAENVIRONMENTKEY01", "credentials have no flags");

    // Defaults only (no config): AWS_DEFAULT_REGION is used when AWS_REGION is not set.
    input = await loadCliConfig(flags(["-b", `${dir}/backups`]), io({ AWS_DEFAULT_REGION: "dr" }));
    [db] = (await resolveDatabases(input, [`${dir}/app.db`], "error")).databases;
    assert.equal(db.settings.syncIntervalMs, 1000);
    assert.deepEqual(db.sources["sync.interval"], { source: "default" });
    assert.equal(db.settings.replica.region, "dr");
    assert.deepEqual(db.sources["replica.region"], { source: "env", detail: "AWS_DEFAULT_REGION" });
    assert.deepEqual(db.sources["path"], { source: "flag", detail: "command line" });
  });
});

Deno.test("config: credentials move as a pair (env key id never mixes with a config secret)", async () => {
  await withDir({
    "a.db": "",
    "walrust.toml": `[replica]
url = "s3://bucket/p"
access_key_id = "AKIACONFIGPAIR000001"
secret_access_key = "config-pair-secret-01"
[[databases]]
path = "a.db"
`,
  }, async (dir) => {
    const w = await resolveWatchSettings(
      [],
      flags(["-c", `${dir}/walrust.toml`]),
      io({ AWS_ACCESS_KEY_ID: "AKIAONLYENVKEY000001" }),
    );
    assert.equal(w.databases[0].replica.accessKeyId, "AKIAONLYENVKEY000001");
    assert.equal(w.databases[0].replica.secretAccessKey, undefined);
  });
});

Deno.test("config: watch settings from [[databases]] with globs, names, webhooks and metrics", async () => {
  await withDir({
    "tenants/acme.db": "",
    "tenants/beta.db": "",
    "tenants/beta.db-wal": "",
    "main.db": "",
    "walrust.toml": `[replica]
url = "s3://bucket/prod"

[sync]
shutdown_timeout = "3s"

[metrics]
addr = "127.0.0.1:9999"

[[webhooks]]
url = "https://hooks.example.com/x"
events = ["upload_failed"]
secret = "webhook-hmac-secret-77"

[[databases]]
path = "tenants/*.db"
name = "tenants"
retention = { hourly = 2 }

[[databases]]
path = "main.db"

[[databases]]
path = "empty/*.db"
`,
  }, async (dir) => {
    let w!: Awaited<ReturnType<typeof resolveWatchSettings>>;
    const warnings = await captureWarnings(async () => {
      w = await resolveWatchSettings([], flags(["--config", `${dir}/walrust.toml`]), io());
    });
    assert.deepEqual(w.databases.map((d) => [d.name, d.path]), [
      ["tenants/acme", `${dir}/tenants/acme.db`],
      ["tenants/beta", `${dir}/tenants/beta.db`],
      ["main", `${dir}/main.db`],
    ]);
    assert.equal(w.databases[0].retention.hourly, 2);
    assert.equal(w.databases[2].retention.hourly, 24);
    assert.equal(w.metricsAddr, "127.0.0.1:9999");
    assert.equal(w.shutdownTimeoutMs, 3000);
    assert.deepEqual(w.webhooks, [{
      url: "https://hooks.example.com/x",
      events: ["upload_failed"],
      secret: "webhook-hmac-secret-77",
    }]);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0], /WARN .*walrust\.toml:24:1: glob 'empty\/\*\.db' matches no database file/);

    const off = await resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`, "--no-metrics"]), io());
    assert.equal(off.metricsAddr, null);
    const moved = await resolveWatchSettings(
      [],
      flags(["-c", `${dir}/walrust.toml`, "--metrics-addr", "0.0.0.0:1"]),
      io(),
    );
    assert.equal(moved.metricsAddr, "0.0.0.0:1");
  });
});

Deno.test("config: a missing non-glob database is a DatabaseError (exit 3)", async () => {
  await withDir({
    "walrust.toml": `[replica]\nurl = "s3://bucket/p"\n[[databases]]\npath = "gone.db"\n`,
  }, async (dir) => {
    await assert.rejects(
      resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`]), io()),
      (e: unknown) => {
        assert.ok(e instanceof DatabaseError);
        assert.equal(e.exitCode, 3);
        assert.match(e.message, /gone\.db does not exist \(.*walrust\.toml:4:1\)/);
        return true;
      },
    );
    await assert.rejects(
      resolveWatchSettings([`${dir}/nope.db`], flags(["-b", "s3://bucket/p"]), io()),
      DatabaseError,
    );
  });
});

Deno.test("config: colliding names are rejected naming both databases", async () => {
  const expectCollision = async (files: Record<string, string>, re: RegExp) => {
    await withDir(files, async (dir) => {
      await assert.rejects(
        resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`]), io()),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.match(e.message.replaceAll(dir, "<dir>"), re);
          return true;
        },
      );
    });
  };
  // Same stem in two directories, globs without names.
  await expectCollision({
    "a/app.db": "",
    "b/app.db": "",
    "walrust.toml":
      `[replica]\nurl = "s3://bucket/p"\n[[databases]]\npath = "a/*.db"\n[[databases]]\npath = "b/*.db"\n`,
  }, /databases <dir>\/a\/app\.db and <dir>\/b\/app\.db would both replicate to s3:\/\/bucket\/p\/app/);
  // Two explicit names.
  await expectCollision({
    "x.db": "",
    "y.db": "",
    "walrust.toml":
      `[replica]\nurl = "s3://bucket/p"\n[[databases]]\npath = "x.db"\nname = "same"\n[[databases]]\npath = "y.db"\nname = "same"\n`,
  }, /<dir>\/x\.db and <dir>\/y\.db would both replicate to s3:\/\/bucket\/p\/same/);
  // One name nested inside another's prefix.
  await expectCollision({
    "x.db": "",
    "t/y.db": "",
    "walrust.toml":
      `[replica]\nurl = "s3://bucket/p"\n[[databases]]\npath = "x.db"\nname = "tenants"\n[[databases]]\npath = "t/*.db"\nname = "tenants"\n`,
  }, /<dir>\/t\/y\.db \(name 'tenants\/y'\) would replicate inside <dir>\/x\.db's prefix/);
  // The same file twice.
  await expectCollision({
    "x.db": "",
    "walrust.toml":
      `[replica]\nurl = "s3://bucket/p"\n[[databases]]\npath = "x.db"\n[[databases]]\npath = "*.db"\nname = "other"\n`,
  }, /<dir>\/x\.db is listed twice/);
  // file:///dir and /dir are the same replica.
  await withDir({ "a/app.db": "", "b/app.db": "" }, async (dir) => {
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[[databases]]\npath = "a/app.db"\nreplica = "file://${dir}/r"\n[[databases]]\npath = "b/app.db"\nreplica = "${dir}/r/"\n`,
    );
    await assert.rejects(
      resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`]), io()),
      /would both replicate/,
    );
  });
});

Deno.test("config: the same name on different replicas is fine", async () => {
  await withDir({
    "a/app.db": "",
    "b/app.db": "",
    "walrust.toml": `[[databases]]
path = "a/app.db"
replica = "s3://bucket-a/p"
[[databases]]
path = "b/app.db"
replica = { url = "s3://bucket-b/p", region = "eu-west-1" }
`,
  }, async (dir) => {
    const w = await resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`]), io());
    assert.deepEqual(w.databases.map((d) => [d.name, d.replica.url, d.replica.region]), [
      ["app", "s3://bucket-a/p", "us-east-1"],
      ["app", "s3://bucket-b/p", "eu-west-1"],
    ]);
  });
});

Deno.test("config: command-line databases pick up the matching [[databases]] entry", async () => {
  await withDir({
    "data/app.db": "",
    "other.db": "",
    "walrust.toml": `[replica]
url = "s3://bucket/p"
[[databases]]
path = "data/*.db"
name = "prod"
interval = "5s"
`,
  }, async (dir) => {
    const w = await resolveWatchSettings(
      [`${dir}/data/app.db`, `${dir}/other.db`],
      flags(["-c", `${dir}/walrust.toml`]),
      io(),
    );
    assert.deepEqual(w.databases.map((d) => [d.name, d.syncIntervalMs]), [["prod/app", 5000], [
      "other",
      1000,
    ]]);
  });
});

Deno.test("config: replica required; resolveReplica precedence and per-database fallback", async () => {
  await withDir({ "a.db": "" }, async (dir) => {
    await assert.rejects(resolveWatchSettings([`${dir}/a.db`], flags([]), io()), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /no replica for database .*a\.db: pass -b\/--bucket/);
      return true;
    });
    await assert.rejects(resolveReplica({}, io()), /no replica given/);
    await assert.rejects(resolveWatchSettings([], {}, io()), /give database paths/);
    assert.equal((await resolveReplica({}, io({ WALRUST_REPLICA_URL: "s3://envb/x" }))).url, "s3://envb/x");
    assert.equal(
      (await resolveReplica({ bucket: "s3://flagb/x" }, io({ WALRUST_REPLICA_URL: "s3://envb/x" }))).url,
      "s3://flagb/x",
    );
    await assert.rejects(resolveReplica({ bucket: "gs://nope/x" }, io()), /unsupported scheme 'gs'/);
    await assert.rejects(
      resolveReplica({ bucket: "s3://b/x", endpoint: "nope" }, io()),
      /--endpoint: expected an http/,
    );
    await Deno.writeTextFile(
      `${dir}/one.toml`,
      `[[databases]]\npath = "a.db"\nreplica = "s3://only-one/p"\n`,
    );
    assert.equal((await resolveReplica({ config: `${dir}/one.toml` }, io())).url, "s3://only-one/p");
  });
});

Deno.test("config: resolveDatabaseSettings by config name, by path, or standalone", async () => {
  await withDir({
    "data/app.db": "",
    "loose.db": "",
    "walrust.toml": `[replica]
url = "s3://bucket/p"
[sync]
checkpoint_interval = "2m"
[[databases]]
path = "data/app.db"
name = "production"
truncate_pages = 10
`,
  }, async (dir) => {
    const v = { config: `${dir}/walrust.toml` };
    const byName = await resolveDatabaseSettings("production", v, io());
    assert.equal(byName.path, `${dir}/data/app.db`);
    assert.equal(byName.truncatePages, 10);
    const byPath = await resolveDatabaseSettings(`${dir}/data/app.db`, v, io());
    assert.equal(byPath.name, "production");
    const loose = await resolveDatabaseSettings(`${dir}/loose.db`, v, io());
    assert.equal(loose.name, "loose");
    assert.equal(loose.checkpointIntervalMs, 120_000, "global config sections still apply");
    assert.equal(loose.truncatePages, 121_359);
    const bare = await resolveDatabaseSettings("someapp", v, io());
    assert.equal(bare.name, "someapp");
    assert.equal(bare.replica.url, "s3://bucket/p");
    await assert.rejects(resolveDatabaseSettings("x", {}, io()), UsageError);
  });
});

Deno.test("config: bad flag values are UsageErrors naming the flag", async () => {
  await withDir({ "a.db": "" }, async (dir) => {
    const db = [`${dir}/a.db`];
    const bad = async (args: string[], re: RegExp) => {
      await assert.rejects(
        resolveWatchSettings(db, flags(["-b", "s3://b/p", ...args]), io()),
        (e: unknown) => {
          assert.ok(e instanceof UsageError, String(e));
          assert.match(e.message, re);
          return true;
        },
      );
    };
    await bad(["--sync-interval", "0"], /--sync-interval: expected a duration greater than zero/);
    await bad(["--sync-interval", "fast"], /--sync-interval: expected a duration/);
    await bad(["--checkpoint-interval=-1s"], /--checkpoint-interval/);
    await bad(["--min-checkpoint-pages", "0"], /--min-checkpoint-pages: expected an integer >= 1/);
    await bad(["--truncate-pages", "x"], /--truncate-pages/);
    await bad(["--queue-max-bytes", "lots"], /--queue-max-bytes/);
    await bad(["--metrics-addr", "nohost"], /--metrics-addr: expected host:port/);
    await bad(["--metrics-addr", "127.0.0.1:1", "--no-metrics"], /contradict/);
    await bad(["--shutdown-timeout", "later"], /--shutdown-timeout/);
    const ok = await resolveWatchSettings(
      db,
      flags(["-b", "s3://b/p", "--truncate-pages", "0", "--validation-interval", "0"]),
      io(),
    );
    assert.equal(ok.databases[0].truncatePages, 0);
    assert.equal(ok.databases[0].validationIntervalMs, 0);
  });
});

Deno.test("config: [metrics] enabled = false turns the server off; an explicit --config must exist", async () => {
  await withDir({
    "a.db": "",
    "walrust.toml": `[replica]\nurl = "s3://b/p"\n[metrics]\nenabled = false\n[[databases]]\npath = "a.db"\n`,
  }, async (dir) => {
    const w = await resolveWatchSettings([], flags(["-c", `${dir}/walrust.toml`]), io());
    assert.equal(w.metricsAddr, null);
    await assert.rejects(resolveWatchSettings([], flags(["-c", `${dir}/missing.toml`]), io()), ConfigError);
    const fromEnv = await resolveWatchSettings([], flags([]), io({ WALRUST_CONFIG: `${dir}/walrust.toml` }));
    assert.equal(fromEnv.databases[0].name, "a");
  });
});
