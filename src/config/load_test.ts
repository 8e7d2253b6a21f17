import assert from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { redact } from "../observe/log.ts";
import {
  type FileConfig,
  findConfigPath,
  parseByteSize,
  parseConfigText,
  scanKeyPositions,
  WEBHOOK_EVENTS,
} from "./load.ts";

const noEnv = () => undefined;

function parse(text: string, env: (n: string) => string | undefined = noEnv): FileConfig {
  return parseConfigText(text, "walrust.toml", env);
}

/** Asserts that parsing fails with a ConfigError whose message matches `re`. */
function rejects(text: string, re: RegExp, env: (n: string) => string | undefined = noEnv): string {
  try {
    parse(text, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.match(err.message, re);
    assert.equal(err.exitCode, 2);
    return err.message;
  }
  assert.fail(`expected a ConfigError matching ${re}`);
}

const FULL = `
[replica]
url = "s3://my-bucket/prod"
endpoint = "https://fly.storage.tigris.dev"
region = "auto"
force_path_style = false
access_key_id = "AKIAFULLTESTKEY00001"
secret_access_key = "full-test-secret-0001"
session_token = "full-test-token-0001"

[sync]
interval = "500ms"
snapshot_interval = "12h"
checkpoint_interval = 30
min_checkpoint_pages = 2000
truncate_pages = 0
queue_max_bytes = "512MiB"
validation_interval = "1h30m"
shutdown_timeout = "5s"

[compaction]
levels = ["10s", "2m", "1h"]

[retention]
hourly = 1
daily = 2
weekly = 3
monthly = 4

[retry]
max_attempts = 7
base_delay = "50ms"
max_delay = "10s"
breaker_threshold = 0
breaker_cooldown = "2m"

[metrics]
addr = "0.0.0.0:9090"
enabled = true

[[webhooks]]
url = "https://example.com/hook"
events = ["upload_failed", "verify_failed"]
secret = "webhook-test-secret-01"

[[webhooks]]
url = "http://127.0.0.1:8080/"

[[databases]]
path = "data/app.db"
name = "main"
replica = "file:///var/backups"
interval = "2s"
snapshot_interval = "1h"
checkpoint_interval = "1m"
min_checkpoint_pages = 10
truncate_pages = 5000
queue_max_bytes = 1000000
validation_interval = "0s"
queue_dir = "/var/spool/app"
retention = { hourly = 48 }
compaction = { levels = ["1m"] }

[[databases]]
path = "tenants/*.db"
name = "tenants"
[databases.replica]
url = "s3://other-bucket/t"
region = "eu-west-1"
`;

Deno.test("load: every key is parsed into its field with the right unit", () => {
  const c = parse(FULL);
  assert.equal(c.replica.url?.value, "s3://my-bucket/prod");
  assert.equal(c.replica.endpoint?.value, "https://fly.storage.tigris.dev");
  assert.equal(c.replica.region?.value, "auto");
  assert.equal(c.replica.forcePathStyle?.value, false);
  assert.equal(c.replica.accessKeyId?.value, "AKIAFULLTESTKEY00001");
  assert.equal(c.replica.secretAccessKey?.value, "full-test-secret-0001");
  assert.equal(c.replica.sessionToken?.value, "full-test-token-0001");
  const s = c.tuning.sync;
  assert.equal(s.syncIntervalMs?.value, 500);
  assert.equal(s.snapshotIntervalMs?.value, 12 * 3_600_000);
  assert.equal(s.checkpointIntervalMs?.value, 30_000, "a bare number is seconds");
  assert.equal(s.minCheckpointPages?.value, 2000);
  assert.equal(s.truncatePages?.value, 0);
  assert.equal(s.queueMaxBytes?.value, 512 * 1024 * 1024);
  assert.equal(s.validationIntervalMs?.value, 5_400_000);
  assert.equal(c.shutdownTimeoutMs?.value, 5000);
  assert.deepEqual(c.tuning.compactionIntervalsMs?.value, [10_000, 120_000, 3_600_000]);
  assert.deepEqual(
    Object.fromEntries(Object.entries(c.tuning.retention).map(([k, v]) => [k, v.value])),
    { hourly: 1, daily: 2, weekly: 3, monthly: 4 },
  );
  assert.deepEqual(Object.fromEntries(Object.entries(c.retry).map(([k, v]) => [k, v.value])), {
    maxAttempts: 7,
    baseDelayMs: 50,
    maxDelayMs: 10_000,
    breakerThreshold: 0,
    breakerCooldownMs: 120_000,
  });
  assert.equal(c.metrics.addr?.value, "0.0.0.0:9090");
  assert.equal(c.metrics.enabled?.value, true);
  assert.equal(c.webhooks.length, 2);
  assert.deepEqual(c.webhooks[0].value, {
    url: "https://example.com/hook",
    events: ["upload_failed", "verify_failed"],
    secret: "webhook-test-secret-01",
  });
  assert.deepEqual(c.webhooks[1].value.events, [...WEBHOOK_EVENTS], "default: every failure event");
  assert.equal(c.webhooks[1].value.secret, undefined);
  assert.equal(c.databases.length, 2);
  const [a, b] = c.databases;
  assert.equal(a.path.value, "data/app.db");
  assert.equal(a.name?.value, "main");
  assert.equal(a.replica?.url?.value, "file:///var/backups");
  assert.equal(a.tuning.sync.syncIntervalMs?.value, 2000);
  assert.equal(a.tuning.sync.snapshotIntervalMs?.value, 3_600_000);
  assert.equal(a.tuning.sync.checkpointIntervalMs?.value, 60_000);
  assert.equal(a.tuning.sync.minCheckpointPages?.value, 10);
  assert.equal(a.tuning.sync.truncatePages?.value, 5000);
  assert.equal(a.tuning.sync.queueMaxBytes?.value, 1_000_000);
  assert.equal(a.tuning.sync.validationIntervalMs?.value, 0);
  assert.equal(a.tuning.queueDir?.value, "/var/spool/app");
  assert.equal(a.tuning.retention.hourly?.value, 48);
  assert.deepEqual(a.tuning.compactionIntervalsMs?.value, [60_000]);
  assert.equal(b.path.value, "tenants/*.db");
  assert.equal(b.replica?.url?.value, "s3://other-bucket/t");
  assert.equal(b.replica?.region?.value, "eu-west-1");
  assert.equal(c.dir, ".");
});

Deno.test("load: values carry the file:line:col of their key", () => {
  const c = parse(FULL);
  assert.equal(c.replica.url?.where, "walrust.toml:3:1");
  assert.equal(c.tuning.sync.syncIntervalMs?.where, "walrust.toml:12:1");
  assert.equal(c.databases[0].where, "walrust.toml:49:1");
  assert.equal(c.databases[1].replica?.url?.where, "walrust.toml:68:1");
});

Deno.test("load: aliases ([s3], bucket, wal_sync_interval, min_checkpoint_page_count, wal_truncate_threshold_pages)", () => {
  const c = parse(`[s3]
bucket = "s3://b1/p"
[sync]
wal_sync_interval = 2
min_checkpoint_page_count = 77
wal_truncate_threshold_pages = 99
`);
  assert.equal(c.replica.url?.value, "s3://b1/p");
  assert.equal(c.tuning.sync.syncIntervalMs?.value, 2000);
  assert.equal(c.tuning.sync.minCheckpointPages?.value, 77);
  assert.equal(c.tuning.sync.truncatePages?.value, 99);
  rejects(
    `[sync]\ninterval = 1\nwal_sync_interval = 2\n`,
    /^walrust\.toml:3:1: both 'interval' and 'wal_sync_interval'/,
  );
  rejects(
    `[replica]\nurl = "s3://aaa/x"\n[s3]\nbucket = "s3://bbb/y"\n`,
    /\[s3\] is an alias of \[replica\]/,
  );
  const db = parse(`[[databases]]\npath = "a.db"\nwal_sync_interval = "3s"\n`);
  assert.equal(db.databases[0].tuning.sync.syncIntervalMs?.value, 3000);
});

Deno.test("load: unknown keys are reported with line and column at every level", () => {
  const text = [
    "# walrust config",
    "[replica]",
    'url = "s3://bucket/prefix"',
    "",
    "[sync]",
    '  interval = "1s"',
    "",
    "",
    "",
    "",
    "",
    '  snapshot_intervall = "1h"',
  ].join("\n");
  const msg = rejects(text, /^walrust\.toml:12:3: unknown key 'snapshot_intervall' in \[sync\]/);
  assert.match(msg, /did you mean 'snapshot_interval'/);
  rejects(`[synk]\ninterval = 1\n`, /^walrust\.toml:1:1: unknown section 'synk'; did you mean 'sync'\?/);
  rejects(`top = 1\n`, /^walrust\.toml:1:1: unknown key 'top'/);
  rejects(
    `[[databases]]\npath = "a.db"\n[[databases]]\npath = "b.db"\n   colour = "red"\n`,
    /^walrust\.toml:5:4: unknown key 'colour' in \[\[databases\]\] #2/,
  );
  rejects(
    `[[databases]]\npath = "a.db"\nretention = { hourly = 1, yearly = 2 }\n`,
    /^walrust\.toml:3:27: unknown key 'yearly' in \[\[databases\]\] #1 retention/,
  );
  rejects(
    `[replica]\nurl = "s3://bucket/x"\npassword = "x"\n`,
    /^walrust\.toml:3:1: unknown key 'password' in \[replica\]/,
  );
  rejects(
    `[[webhooks]]\nurl = "https://x.example/"\nformat = "json"\n`,
    /^walrust\.toml:3:1: unknown key 'format'/,
  );
  rejects(`[metrics]\nport = 1\n`, /^walrust\.toml:2:1: unknown key 'port' in \[metrics\]/);
  rejects(`[retry]\nmax_retries = 1\n`, /^walrust\.toml:2:1: unknown key 'max_retries' in \[retry\]/);
  rejects(`[compaction]\nenabled = true\n`, /^walrust\.toml:2:1: unknown key 'enabled' in \[compaction\]/);
});

Deno.test("load: invalid TOML reports smol-toml's line and column", () => {
  rejects(`[sync]\ninterval = \n`, /^walrust\.toml:2:12: invalid TOML: invalid value/);
  rejects(`[sync]\ninterval = "1s"\ninterval = "2s"\n`, /^walrust\.toml:3:1: invalid TOML: /);
  rejects(`[replica\nurl = "x"\n`, /^walrust\.toml:1:\d+: invalid TOML/);
});

Deno.test("load: bad durations are rejected with the key's position", () => {
  for (const bad of ['"5 minutes"', '"abc"', "true", '"1x"', '""', "[1]"]) {
    rejects(
      `[sync]\nsnapshot_interval = ${bad}\n`,
      /^walrust\.toml:2:1: \[sync\] snapshot_interval: expected a duration/,
    );
  }
  rejects(`[retry]\nbase_delay = "soon"\n`, /^walrust\.toml:2:1: \[retry\] base_delay: expected a duration/);
  rejects(
    `[compaction]\nlevels = ["30s", "five minutes"]\n`,
    /^walrust\.toml:2:18: \[compaction\] levels\[1\]: expected a duration/,
  );
});

Deno.test("load: zero and negative intervals are rejected where not allowed", () => {
  for (const key of ["interval", "snapshot_interval", "checkpoint_interval"]) {
    rejects(
      `[sync]\n${key} = 0\n`,
      new RegExp(`^walrust\\.toml:2:1: \\[sync\\] ${key}: must be greater than zero`),
    );
    rejects(`[sync]\n${key} = "0ms"\n`, /must be greater than zero/);
    rejects(`[sync]\n${key} = -1\n`, /must not be negative/);
    rejects(`[sync]\n${key} = "-5s"\n`, /must not be negative/);
  }
  rejects(`[sync]\nmin_checkpoint_pages = 0\n`, /min_checkpoint_pages: must be at least 1/);
  rejects(`[sync]\ntruncate_pages = -1\n`, /truncate_pages: must be zero or more/);
  rejects(`[sync]\nqueue_max_bytes = 0\n`, /queue_max_bytes: must be greater than zero/);
  rejects(`[retention]\ndaily = -1\n`, /daily: must be zero or more/);
  rejects(`[retry]\nmax_attempts = 0\n`, /max_attempts: must be at least 1/);
  rejects(`[retry]\nbreaker_cooldown = 0\n`, /breaker_cooldown: must be greater than zero/);
  rejects(`[compaction]\nlevels = ["30s", "0s"]\n`, /must be greater than zero/);
  rejects(
    `[[databases]]\npath = "a.db"\ninterval = 0\n`,
    /^walrust\.toml:3:1: \[\[databases\]\] #1 interval: must be greater/,
  );
  // Zero is meaningful ("off") for these.
  const ok = parse(`[sync]\nvalidation_interval = 0\ntruncate_pages = 0\nshutdown_timeout = 0\n`);
  assert.equal(ok.tuning.sync.validationIntervalMs?.value, 0);
  assert.equal(ok.shutdownTimeoutMs?.value, 0);
});

Deno.test("load: wrong types and bad values", () => {
  rejects(`[retention]\nhourly = "24"\n`, /hourly: expected an integer, got the string "24"/);
  rejects(`[retention]\nhourly = 1.5\n`, /hourly: expected an integer, got the number 1.5/);
  rejects(`[replica]\nforce_path_style = "yes"\n`, /force_path_style: expected true or false/);
  rejects(`[replica]\nurl = 5\n`, /url: expected a string, got the integer 5/);
  rejects(
    `[replica]\nurl = "ftp://host/x"\n`,
    /^walrust\.toml:2:1: \[replica\] url: .*unsupported scheme 'ftp'/,
  );
  rejects(`[replica]\nurl = "s3://bad bucket/x"\n`, /not a valid bucket name/);
  rejects(`[replica]\nurl = "s3://key:secret@bucket/x"\n`, /contains credentials/);
  rejects(`[replica]\nurl = "file://relative/dir"\n`, /file URLs must be absolute/);
  rejects(`[replica]\nurl = ""\n`, /replica URL is empty/);
  rejects(`[replica]\nendpoint = "not a url"\n`, /endpoint: expected an http/);
  rejects(`[replica]\nendpoint = "ftp://x"\n`, /endpoint: expected an http/);
  rejects(`[metrics]\naddr = "localhost"\n`, /addr: expected host:port/);
  rejects(`[metrics]\naddr = "127.0.0.1:70000"\n`, /addr: expected host:port/);
  rejects(`[[webhooks]]\nurl = "mailto:a@b"\n`, /url: expected an http/);
  rejects(`[[webhooks]]\nevents = ["upload_failed"]\n`, /'url' is required/);
  rejects(
    `[[webhooks]]\nurl = "https://x.example"\nevents = []\n`,
    /^walrust\.toml:3:1: .*events: the list is empty/,
  );
  rejects(
    `[[webhooks]]\nurl = "https://x.example"\nevents = ["upload_failed", "nope"]\n`,
    /^walrust\.toml:3:28: .*unknown event 'nope'/,
  );
  rejects(`[compaction]\nlevels = ["5m", "30s"]\n`, /^walrust\.toml:2:17: .*longer than the previous/);
  rejects(`[compaction]\nlevels = "30s"\n`, /levels: expected an array/);
  rejects(
    `[retry]\nbase_delay = "10s"\nmax_delay = "1s"\n`,
    /max_delay: must not be shorter than base_delay/,
  );
  rejects(`[[databases]]\nname = "x"\n`, /^walrust\.toml:1:1: \[\[databases\]\] #1: 'path' is required/);
  rejects(`[[databases]]\npath = "a.db"\nname = "../evil"\n`, /is not a valid name/);
  rejects(`[[databases]]\npath = "a.db"\nname = "/abs"\n`, /is not a valid name/);
  rejects(`[[databases]]\npath = ""\n`, /path: must not be empty/);
  rejects(`sync = 5\n`, /\[sync\] must be a table/);
  rejects(`databases = 5\n`, /databases must be an array of tables/);
});

Deno.test("load: ${VAR} in string values is expanded; a missing variable is an error", () => {
  const env = (n: string) =>
    ({ BUCKET: "envbucket", ENDPOINT: "http://127.0.0.1:9000" } as Record<string, string>)[n];
  const c = parse(
    `[replica]\nurl = "s3://\${BUCKET}/prod"\nendpoint = "\${ENDPOINT}"\n[sync]\ninterval = "\${INTERVAL}"\n`,
    (n) => n === "INTERVAL" ? "250ms" : env(n),
  );
  assert.equal(c.replica.url?.value, "s3://envbucket/prod");
  assert.equal(c.replica.endpoint?.value, "http://127.0.0.1:9000");
  assert.equal(c.tuning.sync.syncIntervalMs?.value, 250);
  rejects(
    `[replica]\nurl = "s3://bucket/x"\naccess_key_id = "\${NOPE_NOT_SET}"\n`,
    /^walrust\.toml:3:1: \[replica\] access_key_id: environment variable NOPE_NOT_SET is not set/,
  );
});

Deno.test("load: secrets from the file are registered and masked by redact()", () => {
  parse(
    `[replica]\nurl = "s3://bucket/x"\nsecret_access_key = "s3cr3t-from-config-file"\n[[webhooks]]\nurl = "https://h.example/"\nsecret = "hook-secret-from-config"\n`,
  );
  assert.equal(redact("a s3cr3t-from-config-file b hook-secret-from-config"), "a *** b ***");
});

Deno.test("scanKeyPositions: strings, arrays, inline tables, comments and dotted keys", () => {
  const text = [
    'a = """multi', // 1
    "[not.a.table]", // 2 (inside the string)
    'x = 1"""', // 3
    "b = [ # comment [", // 4
    '  "x]",', // 5
    "  { k = 1 },", // 6
    "]", // 7
    "[sec] # [other]", // 8
    '"quoted key" = 1', // 9
    "d.e.f = 'lit#eral'", // 10
    "[[arr]]", // 11
    "[[arr]]", // 12
    "  [arr.sub]", // 13
    "  z = 2", // 14
  ].join("\n");
  const pos = scanKeyPositions(text);
  assert.deepEqual(pos.get("a"), { line: 1, col: 1 });
  assert.equal(pos.has("not"), false, "a header inside a multi-line string is not a table");
  assert.equal(pos.has("x"), false);
  assert.deepEqual(pos.get("b"), { line: 4, col: 1 });
  assert.deepEqual(pos.get("b[0]"), { line: 5, col: 3 });
  assert.deepEqual(pos.get("b[1]"), { line: 6, col: 3 });
  assert.deepEqual(pos.get("b[1].k"), { line: 6, col: 5 });
  assert.deepEqual(pos.get("sec"), { line: 8, col: 1 });
  assert.equal(pos.has("other"), false);
  assert.deepEqual(pos.get("sec.quoted key"), { line: 9, col: 1 });
  assert.deepEqual(pos.get("sec.d.e.f"), { line: 10, col: 5 });
  assert.deepEqual(pos.get("arr[0]"), { line: 11, col: 1 });
  assert.deepEqual(pos.get("arr[1]"), { line: 12, col: 1 });
  assert.deepEqual(pos.get("arr[1].sub"), { line: 13, col: 3 });
  assert.deepEqual(pos.get("arr[1].sub.z"), { line: 14, col: 3 });
});

Deno.test("parseByteSize: integers and units", () => {
  assert.equal(parseByteSize(1024), 1024);
  assert.equal(parseByteSize("1GiB"), 1024 ** 3);
  assert.equal(parseByteSize("1.5 MB"), 1_500_000);
  assert.equal(parseByteSize("10kib"), 10_240);
  assert.equal(parseByteSize("100"), 100);
  assert.equal(parseByteSize("1 GB extra"), null);
  assert.equal(parseByteSize(-1), null);
  assert.equal(parseByteSize(1.5), null);
});

Deno.test("findConfigPath: --config must exist; ./walrust.toml; WALRUST_CONFIG", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(findConfigPath(`${dir}/missing.toml`, noEnv, dir), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /missing\.toml \(from --config\) does not exist/);
      return true;
    });
    assert.equal(await findConfigPath(undefined, noEnv, dir), null);
    const other = `${dir}/other.toml`;
    await Deno.writeTextFile(other, "");
    assert.deepEqual(
      await findConfigPath(undefined, (n) => (n === "WALRUST_CONFIG" ? other : undefined), dir),
      {
        path: other,
        how: "env",
      },
    );
    await assert.rejects(
      findConfigPath(undefined, (n) => (n === "WALRUST_CONFIG" ? `${dir}/nope.toml` : undefined), dir),
      /from WALRUST_CONFIG\) does not exist/,
    );
    await Deno.writeTextFile(`${dir}/walrust.toml`, "");
    assert.deepEqual(
      await findConfigPath(undefined, (n) => (n === "WALRUST_CONFIG" ? other : undefined), dir),
      {
        path: `${dir}/walrust.toml`,
        how: "cwd",
      },
    );
    assert.deepEqual(await findConfigPath(other, noEnv, dir), { path: other, how: "flag" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
