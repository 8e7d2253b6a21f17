/**
 * The scoped Deno permissions documented in docs/fly.md, checked on the shipped artifact: the bundle of main.ts
 * (the same module graph `deno compile` embeds) run by `deno run --no-prompt` with exactly those flags.
 *
 * - A local-directory replica: `watch` with an `--exec` application writing for a while, then `restore`, with
 *   read/write scoped to the database directory and the replica directory, env scoped, run scoped to the app.
 * - An S3 replica (s3rver): `--allow-net` scoped to the endpoint and the metrics address, `verify --restore`
 *   with the temp directory.
 * - Dropping any one flag fails (with Deno's own permission error where there is one): the lists are minimal
 *   and real. `--allow-sys` is never needed.
 * - The env list covers every variable src/ reads, and docs/fly.md shows the same list.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { parse as parseToml } from "smol-toml";
import { ROOT, runInProcess } from "./support/cli.ts";
import { startS3rver } from "./support/s3rver.ts";

/** Every environment variable walrust reads, plus HOME (the AWS SDK's ~/.aws lookup; see docs/fly.md). */
const ENV_VARS = [
  "WALRUST_CONFIG",
  "WALRUST_REPLICA_URL",
  "WALRUST_LOG_LEVEL",
  "WALRUST_LOG_FORMAT",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_ENDPOINT_URL_S3",
  "AWS_ENDPOINT_URL",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "HOME",
];
const ENV_FLAG = `--allow-env=${ENV_VARS.join(",")}`;

const dec = new TextDecoder();
let bundleDir: string | undefined;

/** Bundles main.ts once (as `deno task bundle` does). */
async function bundle(): Promise<string> {
  if (bundleDir) return `${bundleDir}/walrust.js`;
  bundleDir = await Deno.makeTempDir({ prefix: "walrust-perm-bundle-" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--frozen",
      "--platform",
      "deno",
      "-o",
      `${bundleDir}/walrust.js`,
      `${ROOT}/main.ts`,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return `${bundleDir}/walrust.js`;
}

globalThis.addEventListener("unload", () => {
  if (bundleDir) Deno.removeSync(bundleDir, { recursive: true });
});

interface Job {
  /** Permission flags, exactly as documented. */
  flags: string[];
  /** Working directory (walrust looks for ./walrust.toml there). */
  cwd: string;
  /** Environment of the process (added to the test's own). */
  env: Record<string, string>;
}

function denoArgs(js: string, flags: string[], args: string[]): string[] {
  return ["run", "--quiet", "--no-prompt", "--no-config", ...flags, js, ...args];
}

/** Runs the bundle to completion with `flags`. */
async function run(job: Job, args: string[], flags = job.flags) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoArgs(await bundle(), flags, args),
    cwd: job.cwd,
    env: { NO_COLOR: "1", ...job.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Starts the bundle (watch); the caller stops it. */
async function spawn(job: Job, args: string[], flags = job.flags) {
  const child = new Deno.Command(Deno.execPath(), {
    args: denoArgs(await bundle(), flags, args),
    cwd: job.cwd,
    env: { NO_COLOR: "1", ...job.env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const c of s) log += d.decode(c, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).catch(() => {});
  const exited = child.status.then(async (s) => {
    await drained;
    return s.code;
  });
  return {
    log: () => log,
    exited,
    stop: async (sig: Deno.Signal = "SIGTERM") => {
      try {
        child.kill(sig);
      } catch { /* already exited */ }
      return await exited;
    },
  };
}

/** The flags with the one starting with `prefix` replaced (or removed when `replacement` is null). */
function without(flags: string[], prefix: string, replacement: string | null = null): string[] {
  const i = flags.findIndex((f) => f === prefix || f.startsWith(prefix + "="));
  assert.ok(i >= 0, `no flag ${prefix} in ${flags.join(" ")}`);
  const out = [...flags];
  if (replacement === null) out.splice(i, 1);
  else out[i] = replacement;
  return out;
}

function createDb(path: string): void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL; CREATE TABLE rows (id INTEGER PRIMARY KEY, n INTEGER)");
  db.close();
}

function countRows(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("SELECT count(*) AS c FROM rows").get() as { c: number }).c;
  } finally {
    db.close();
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The application of the file job: commits `n` one-row transactions over about 1.5 s, then exits 0. */
const APP = `import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(Deno.args[0], { timeout: 5000 });
for (let i = 1; i <= 30; i++) {
  db.prepare("INSERT INTO rows (n) VALUES (?)").run(i);
  await new Promise((r) => setTimeout(r, 50));
}
db.close();
`;

Deno.test("permissions: local-directory replica — watch --exec with a writer, then restore, with read/write scoped to the db and replica directories, env and run scoped, no net or sys", async () => {
  const base = await Deno.makeTempDir({ prefix: "walrust-perm-" });
  try {
    const [data, replica, cwd] = [`${base}/data`, `${base}/replica`, `${base}/cwd`];
    for (const d of [data, replica, cwd]) await Deno.mkdir(d);
    createDb(`${data}/app.db`);
    await Deno.writeTextFile(`${base}/app.ts`, APP);
    const deno = Deno.execPath();
    const job: Job = {
      flags: [
        `--allow-read=${data},${replica},${cwd}/walrust.toml`,
        `--allow-write=${data},${replica}`,
        ENV_FLAG,
        "--ignore-env",
        `--allow-run=${deno}`,
      ],
      cwd,
      env: { WALRUST_REPLICA_URL: replica },
    };
    const exec =
      `${deno} run --quiet --no-config --allow-read=${data} --allow-write=${data} ${base}/app.ts ${data}/app.db`;
    const watchArgs = ["watch", `${data}/app.db`, "--no-metrics", "--sync-interval", "200ms", "--exec", exec];
    const w = await spawn(job, watchArgs);
    const code = await w.exited;
    assert.equal(code, 0, w.log());
    assert.match(w.log(), /--exec command exited; shutting down code=0/);
    assert.doesNotMatch(w.log(), /Requires \w+ access/);

    const r = await run(job, ["restore", "app", "-o", `${data}/restored.db`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(countRows(`${data}/restored.db`), 30, "every row the app wrote was replicated");

    // Each flag is needed. Reads and writes of the replica directory, the database directory and
    // ./walrust.toml, and the SDK's environment reads at start-up fail with Deno's permission error.
    const restore = ["restore", "app", "-o", `${data}/again.db`];
    const noReplicaRead = await run(
      job,
      restore,
      without(job.flags, "--allow-read", `--allow-read=${data},${cwd}/walrust.toml`),
    );
    assert.notEqual(noReplicaRead.code, 0);
    // Either Deno's own message or walrust's one-line mapping of it (src/errors.ts localIoError), naming the path.
    assert.match(
      noReplicaRead.stderr,
      new RegExp(`Requires read access to "${replica}|${replica}\\S*: Deno did not grant access`),
    );
    assert.equal(noReplicaRead.code, 12);
    const noDataWrite = await run(
      job,
      restore,
      without(job.flags, "--allow-write", `--allow-write=${replica}`),
    );
    assert.notEqual(noDataWrite.code, 0);
    assert.match(
      noDataWrite.stderr,
      new RegExp(`Requires write access to "${data}|${data}\\S*: Deno did not grant access`),
    );
    const noToml = await run(
      job,
      restore,
      without(job.flags, "--allow-read", `--allow-read=${data},${replica}`),
    );
    assert.notEqual(noToml.code, 0);
    assert.match(
      noToml.stderr,
      new RegExp(
        `Requires read access to "${cwd}/walrust.toml"|${cwd}/walrust.toml: Deno did not grant access`,
      ),
    );
    // The AWS SDK is loaded only for s3:// replicas, so a directory job does not need --ignore-env (the S3 job
    // below shows that it does).
    // Without the env list every variable reads as unset (--ignore-env): the replica URL is not seen.
    const noEnv = await run(job, restore, without(job.flags, "--allow-env"));
    assert.equal(noEnv.code, 2, noEnv.stderr);
    assert.match(noEnv.stderr, /no replica given/);
    // --exec needs --allow-run for the program: replication starts, the app cannot, walrust exits 2.
    const noRun = await run(job, watchArgs, without(job.flags, "--allow-run"));
    assert.equal(noRun.code, 2, noRun.stderr);
    assert.match(noRun.stderr, /Requires run access to/);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("permissions: S3 replica (s3rver) — --allow-net scoped to the endpoint and the metrics address, env scoped, no sys; verify --restore with the temp dir", async () => {
  const s3 = await startS3rver();
  const base = await Deno.makeTempDir({ prefix: "walrust-perm-" });
  let w: Awaited<ReturnType<typeof spawn>> | null = null;
  try {
    const [data, cwd, tmp] = [`${base}/data`, `${base}/cwd`, `${base}/tmp`];
    for (const d of [data, cwd, tmp]) await Deno.mkdir(d);
    createDb(`${data}/app.db`);
    const endpoint = new URL(s3.endpoint).host; // 127.0.0.1:<port>
    const metrics = `127.0.0.1:${freePort()}`;
    const job: Job = {
      flags: [
        `--allow-read=${data},${cwd}/walrust.toml`,
        `--allow-write=${data}`,
        ENV_FLAG,
        "--ignore-env",
        `--allow-net=${endpoint},${metrics}`,
      ],
      cwd,
      env: {
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        AWS_REGION: s3.region,
        WALRUST_REPLICA_URL: `s3://${s3.bucket}/prod`,
      },
    };
    w = await spawn(job, ["watch", `${data}/app.db`, "--metrics-addr", metrics, "--sync-interval", "200ms"]);
    const db = new DatabaseSync(`${data}/app.db`, { timeout: 5000 });
    let healthy = false;
    for (let i = 1; i <= 20; i++) {
      db.prepare("INSERT INTO rows (n) VALUES (?)").run(i);
      await new Promise((r) => setTimeout(r, 75));
      if (!healthy && w.log().includes("watching")) {
        const res = await fetch(`http://${metrics}/health`);
        await res.body?.cancel();
        healthy = res.status === 200;
      }
    }
    db.close();
    assert.equal(await w.stop(), 0, w.log());
    assert.ok(healthy, `/health answered 200 on ${metrics}:\n${w.log()}`);
    assert.doesNotMatch(w.log(), /Requires \w+ access/);

    const r = await run(job, ["restore", "app", "-o", `${data}/restored.db`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(countRows(`${data}/restored.db`), 20);
    // verify --restore restores into the temp directory ($TMPDIR): read/write there too.
    const tmpJob = { ...job, env: { ...job.env, TMPDIR: tmp } };
    const tmpFlags = without(
      without(job.flags, "--allow-read", `--allow-read=${data},${cwd}/walrust.toml,${tmp}`),
      "--allow-write",
      `--allow-write=${data},${tmp}`,
    );
    const v = await run(tmpJob, ["verify", "app", "--restore", "--max-age", "1h", "--json"], tmpFlags);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.equal(JSON.parse(v.stdout).ok, true);
    const vNoTmp = await run(tmpJob, ["verify", "app", "--restore", "--json"]);
    assert.notEqual(vNoTmp.code, 0);
    assert.match(vNoTmp.stderr, /Requires write access to|Deno did not grant access/);

    // Each flag is needed: --ignore-env (the AWS SDK reads AWS_LAMBDA_* and friends as it loads), the endpoint,
    // the metrics address, and HOME (else the SDK asks for sys access).
    const list = ["list", "app"];
    const noIgnore = await run(job, list, without(job.flags, "--ignore-env"));
    assert.notEqual(noIgnore.code, 0);
    assert.match(noIgnore.stderr, /Requires env access to "AWS_|Deno did not grant access/);
    const other = freePort();
    const noEndpoint = await run(
      job,
      list,
      without(job.flags, "--allow-net", `--allow-net=127.0.0.1:${other},${metrics}`),
    );
    assert.notEqual(noEndpoint.code, 0);
    assert.match(noEndpoint.stderr, new RegExp(`Requires net access to "${endpoint}"`));
    const noMetrics = await run(
      job,
      ["watch", `${data}/app.db`, "--metrics-addr", metrics],
      without(job.flags, "--allow-net", `--allow-net=${endpoint}`),
    );
    assert.notEqual(noMetrics.code, 0);
    // (walrust words this one itself: the observe server maps Deno's NotCapable to "permission denied".)
    assert.match(noMetrics.stderr, new RegExp(`${metrics} cannot be bound \\(permission denied`));
    const noHome = await run(
      job,
      list,
      without(job.flags, "--allow-env", `--allow-env=${ENV_VARS.filter((v) => v !== "HOME").join(",")}`),
    );
    assert.notEqual(noHome.code, 0);
    assert.match(noHome.stderr, /Requires sys access to "uid"/);
  } finally {
    await w?.stop("SIGKILL");
    await s3.stop();
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("permissions: the env list covers every variable src/ reads, and docs/fly.md and docs/ci.md show exactly these flags", async () => {
  const read = new Set<string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts") && e.name !== "testing.ts") {
        for (const m of (await Deno.readTextFile(p)).matchAll(/"((?:WALRUST|AWS)_[A-Z0-9_]+)"/g)) {
          read.add(m[1]);
        }
      }
    }
  };
  await walk(`${ROOT}/src`);
  assert.ok(read.size >= 10, `found ${[...read].join(", ")}`);
  for (const v of read) assert.ok(ENV_VARS.includes(v), `${v} is read by src/ but missing from the env list`);
  for (const file of ["docs/fly.md", "docs/ci.md"]) {
    const doc = await Deno.readTextFile(`${ROOT}/${file}`);
    assert.ok(doc.includes(ENV_FLAG + " \\\n  --ignore-env"), `${file} shows ${ENV_FLAG} --ignore-env`);
  }
});

Deno.test("examples: walrust.toml is a valid configuration, fly.toml is valid TOML with the documented check", async () => {
  const r = await runInProcess(["explain", "--config", `${ROOT}/examples/walrust.toml`, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /0\.0\.0\.0:16767/);
  const fly = parseToml(await Deno.readTextFile(`${ROOT}/examples/fly.toml`)) as {
    checks: Record<string, { port: number; path: string }>;
    mounts: { destination: string };
    processes: Record<string, string>;
  };
  assert.deepEqual({ port: fly.checks.walrust.port, path: fly.checks.walrust.path }, {
    port: 16767,
    path: "/health",
  });
  assert.equal(fly.mounts.destination, "/data");
  assert.equal(fly.processes.app, "/app/start.sh");
});
