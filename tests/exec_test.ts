/**
 * `walrust watch --exec` end to end: the real CLI as a child process supervising an application (a small Deno
 * or sh program): the application starts once replication runs, its writes are flushed to the replica when it
 * exits, its exit status becomes walrust's, signals sent to walrust reach it, and `examples/start.sh` gives
 * restore-on-boot.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ExitCode } from "../src/errors.ts";
import { spawnWalrust, waitUntil, type WatchProcess } from "../src/replicate/testing.ts";
import { PRODUCT_PERMISSIONS, ROOT, runInProcess } from "./support/cli.ts";

const DENO = Deno.execPath();

/** An application that writes `rows` rows to the database in small transactions, then exits with `code`. */
const WRITER_APP = `import { DatabaseSync } from "node:sqlite";
const [path, rows, code, tag] = Deno.args;
const db = new DatabaseSync(path, { timeout: 5000 });
db.exec("CREATE TABLE IF NOT EXISTS app_rows (id INTEGER PRIMARY KEY, tag TEXT, n INTEGER)");
const before = (db.prepare("SELECT count(*) AS c FROM app_rows").get() as { c: number }).c;
console.error("app: found " + before + " rows");
await Deno.writeTextFile(path + ".seen-" + tag, String(before));
for (let i = 1; i <= Number(rows); i++) {
  db.prepare("INSERT INTO app_rows (tag, n) VALUES (?, ?)").run(tag, i);
  if (i % 10 === 0) await new Promise((r) => setTimeout(r, 50));
}
db.close();
Deno.exit(Number(code));
`;

/**
 * An application that runs until SIGTERM, then writes a last row and a marker file and exits 0. SIGHUP (a
 * "reload") writes a row and a marker and keeps running.
 */
const TRAPPING_APP = `import { DatabaseSync } from "node:sqlite";
const [path, dir] = Deno.args;
const db = new DatabaseSync(path, { timeout: 5000 });
db.exec("CREATE TABLE IF NOT EXISTS app_rows (id INTEGER PRIMARY KEY, tag TEXT, n INTEGER)");
db.prepare("INSERT INTO app_rows (tag, n) VALUES ('started', 1)").run();
Deno.addSignalListener("SIGHUP", () => {
  db.prepare("INSERT INTO app_rows (tag, n) VALUES ('reloaded', 3)").run();
  Deno.writeTextFileSync(dir + "/hup", "got SIGHUP");
});
Deno.addSignalListener("SIGTERM", () => {
  db.prepare("INSERT INTO app_rows (tag, n) VALUES ('goodbye', 2)").run();
  db.close();
  Deno.writeTextFileSync(dir + "/marker", "got SIGTERM");
  Deno.exit(0);
});
Deno.writeTextFileSync(dir + "/ready", "");
setInterval(() => {}, 1000);
`;

const isFile = (path: string) => Deno.stat(path).then(() => true, () => false);

function createDb(path: string): void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS seed (x); INSERT INTO seed VALUES (1);");
  db.close();
}

/** The `--exec` command line that runs `script` with Deno, quoted the way a user would write it. */
function denoApp(dir: string, script: string, ...args: string[]): string {
  return [
    DENO,
    "run",
    "--quiet",
    "--no-config",
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
    script,
    ...args,
  ]
    .map((a) => `'${a}'`).join(" ");
}

/** Restores `name` from `replica` into `out` (in-process) and returns the app's rows as `tag:n` strings. */
async function restoredRows(name: string, replica: string, out: string): Promise<string[]> {
  const r = await runInProcess(["restore", name, "-o", out, "-b", replica]);
  assert.equal(r.code, 0, r.stderr);
  const db = new DatabaseSync(out, { readOnly: true });
  try {
    return (db.prepare("SELECT tag, n FROM app_rows ORDER BY id").all() as { tag: string; n: number }[])
      .map((x) => `${x.tag}:${x.n}`);
  } finally {
    db.close();
  }
}

Deno.test("watch --exec: the app's writes are flushed to the replica when it exits, and walrust exits with its code (3)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-exec-" });
  let p: WatchProcess | null = null;
  try {
    createDb(`${dir}/app.db`);
    await Deno.writeTextFile(`${dir}/app.ts`, WRITER_APP);
    p = spawnWalrust([
      "watch",
      `${dir}/app.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
      "--sync-interval",
      "5s", // longer than the app runs: its rows reach the replica through the final sync on exit
      "--exec",
      denoApp(dir, `${dir}/app.ts`, `${dir}/app.db`, "60", "3", "first"),
    ]);
    const code = await p.exited;
    assert.equal(code, 3, p.log());
    assert.match(p.log(), /started the --exec command/);
    assert.match(p.log(), /--exec command exited; shutting down code=3/);
    // The app started after replication was running: it found the replica's state, and wrote after.
    assert.ok(p.log().indexOf("watching") < p.log().indexOf("started the --exec command"), p.log());
    const rows = await restoredRows("app", `${dir}/replica`, `${dir}/restored.db`);
    assert.equal(rows.length, 60, "every row the app committed is in the replica");
    assert.equal(rows.at(-1), "first:60");
  } finally {
    await p?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch --exec: SIGHUP and SIGTERM to walrust are forwarded to the app; it handles them, exits 0, and walrust flushes and exits 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-exec-" });
  let p: WatchProcess | null = null;
  try {
    createDb(`${dir}/app.db`);
    await Deno.writeTextFile(`${dir}/app.ts`, TRAPPING_APP);
    p = spawnWalrust([
      "watch",
      `${dir}/app.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
      "--sync-interval",
      "5s",
      "--exec",
      denoApp(dir, `${dir}/app.ts`, `${dir}/app.db`, dir),
    ]);
    let gone = false;
    p.exited.then(() => (gone = true));
    await waitUntil(async () => gone || await isFile(`${dir}/ready`), 30_000, "the app to start");
    assert.equal(
      await Deno.readTextFile(`${dir}/ready`).catch(() => null),
      "",
      `app did not start:\n${p.log()}`,
    );
    // SIGHUP (which would otherwise kill walrust) reaches the app, and both keep running.
    p.child.kill("SIGHUP");
    await waitUntil(async () => gone || await isFile(`${dir}/hup`), 30_000, "the app to get SIGHUP");
    assert.equal(gone, false, `walrust must survive SIGHUP:\n${p.log()}`);
    assert.equal(await p.stop(), 0, p.log());
    assert.equal(await Deno.readTextFile(`${dir}/marker`), "got SIGTERM");
    assert.match(p.log(), /forwarding signal to the --exec command signal=SIGHUP/);
    assert.match(p.log(), /forwarding signal to the --exec command signal=SIGTERM/);
    assert.match(p.log(), /--exec command exited; shutting down code=0/);
    // The rows the app wrote in its signal handlers were shipped by the graceful shutdown.
    assert.deepEqual(await restoredRows("app", `${dir}/replica`, `${dir}/restored.db`), [
      "started:1",
      "reloaded:3",
      "goodbye:2",
    ]);
  } finally {
    await p?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch --exec: an app killed by a signal makes walrust exit 128 + n", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-exec-" });
  let p: WatchProcess | null = null;
  try {
    createDb(`${dir}/app.db`);
    // Single quotes: no shell syntax outside them, so walrust runs sh itself (argv), and sh kills itself.
    p = spawnWalrust([
      "watch",
      `${dir}/app.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
      "--exec",
      "sh -c 'kill -KILL $$'",
    ]);
    assert.equal(await p.exited, 128 + 9, p.log());
    assert.match(p.log(), /--exec command exited; shutting down code=137/);
  } finally {
    await p?.kill9();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watch --exec: when replication cannot start, the app is not started and walrust exits with the error's code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-exec-" });
  try {
    const r = await runInProcess([
      "watch",
      `${dir}/missing.db`,
      "-b",
      `${dir}/replica`,
      "--no-metrics",
      "--exec",
      `touch ${dir}/started`,
    ]);
    assert.equal(r.code, ExitCode.DATABASE, r.stderr);
    assert.equal(await isFile(`${dir}/started`), false, "the app did not run");
    // A command that cannot be parsed is refused before anything starts.
    createDb(`${dir}/app.db`);
    const bad = await runInProcess([
      "watch",
      `${dir}/app.db`,
      "-b",
      `${dir}/replica`,
      "--exec",
      "app 'unterminated",
    ]);
    assert.equal(bad.code, ExitCode.USAGE, bad.stderr);
    assert.match(bad.stderr, /unterminated single quote/);
    assert.equal(await isFile(`${dir}/replica`), false, "replication did not start");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("examples/start.sh: first boot creates the database, a new machine restores it before the app starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-exec-" });
  try {
    await Deno.writeTextFile(`${dir}/app.ts`, WRITER_APP);
    await Deno.writeTextFile(
      `${dir}/init.ts`,
      `import { DatabaseSync } from "node:sqlite";\nnew DatabaseSync(Deno.args[0]).exec("PRAGMA journal_mode=WAL");\n`,
    );
    // walrust from source, with the product's permissions (what a user runs).
    await Deno.writeTextFile(
      `${dir}/walrust`,
      `#!/bin/sh\nexec '${DENO}' run --quiet --frozen --config '${ROOT}/deno.json' ${
        PRODUCT_PERMISSIONS.join(" ")
      } '${ROOT}/main.ts' "$@"\n`,
      { mode: 0o755 },
    );
    const boot = async (tag: string) => {
      const out = await new Deno.Command("sh", {
        args: [`${ROOT}/examples/start.sh`],
        env: {
          WALRUST: `${dir}/walrust`,
          WALRUST_REPLICA_URL: `${dir}/replica`,
          DB_PATH: `${dir}/data/app.db`,
          DB_INIT_CMD: denoApp(dir, `${dir}/init.ts`, `${dir}/data/app.db`),
          APP_CMD: denoApp(dir, `${dir}/app.ts`, `${dir}/data/app.db`, "20", "0", tag),
          METRICS_ADDR: "127.0.0.1:0",
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, log);
      return log;
    };
    await Deno.mkdir(`${dir}/data`);
    const first = await boot("boot1");
    assert.match(first, /nothing restored \(--if-replica-exists\)/);
    assert.match(first, /creating an empty/);
    assert.equal(await Deno.readTextFile(`${dir}/data/app.db.seen-boot1`), "0");
    // A new machine: the volume is empty.
    await Deno.remove(`${dir}/data`, { recursive: true });
    await Deno.mkdir(`${dir}/data`);
    const second = await boot("boot2");
    assert.doesNotMatch(second, /creating an empty/);
    assert.equal(await Deno.readTextFile(`${dir}/data/app.db.seen-boot2`), "20", "the app saw boot 1's rows");
    // A restart with the volume in place: nothing is restored over the live database.
    const third = await boot("boot3");
    assert.match(third, /already exists; nothing restored \(--if-db-not-exists\)/);
    assert.equal(await Deno.readTextFile(`${dir}/data/app.db.seen-boot3`), "40");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
