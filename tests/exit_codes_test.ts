/**
 * The exit-code table, one test per code, each through the real CLI (a `deno run main.ts` child process):
 * the documented code, and for expected failures exactly one stderr line (`walrust: …`, no stack trace).
 * Code 1 (internal error, a bug) has no way to be provoked on purpose, so its test is ignored by name. The last
 * tests check that README.md's table, `walrust --help` and `ExitCode` in src/errors.ts agree, and that this
 * file has a test for every code of `ExitCode`.
 *
 * Many of these inputs are covered in more depth (nothing written, messages) by `bad_input_test.ts`; this
 * file is the index of the table.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ExitCode } from "../src/errors.ts";
import { waitUntil } from "../src/replicate/testing.ts";
import { flipByte, putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { type CliResult, ROOT, runProcess, spawnProcess } from "./support/cli.ts";
import { startFaultProxy } from "./support/fault_proxy.ts";
import { startS3rver } from "./support/s3rver.ts";

const tested = new Set<number>();

/** Registers the test of one exit code (its name starts with `exit <code>`). */
function exitTest(
  code: number,
  what: string,
  fn: (dir: string) => Promise<void>,
  opts: { s3?: boolean } = {},
) {
  tested.add(code);
  Deno.test({
    name: `exit ${code}: ${what}`,
    // s3rver and the fault proxy outlive single awaits (keep-alive sockets); they are stopped in `finally`.
    sanitizeOps: !opts.s3,
    sanitizeResources: !opts.s3,
    fn: async () => {
      const dir = await Deno.makeTempDir({ prefix: `walrust-exit-${code}-` });
      try {
        await fn(dir);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Asserts an expected failure: the code, exactly one stderr line starting `walrust: `, matching `pattern`. */
function expectFailure(r: CliResult, code: number, pattern: RegExp): void {
  const ctx = `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  assert.equal(r.code, code, ctx);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `exactly one stderr line:\n${ctx}`);
  assert.match(lines[0], /^walrust: /, ctx);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  assert.match(lines[0], pattern, ctx);
}

/** A directory replica of `app`: L9 1-4 and L0 `l0` (default 5…8), timestamps of 2025-01-01. */
async function makeReplica(dir: string, l0: number[] = [5, 6, 7, 8]): Promise<string> {
  const h = sampleHistory(dir, 8);
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  await putLtx(client, h, 9, 1, 4);
  for (const t of l0) await putL0Range(client, h, t, t);
  return url;
}

function makeDb(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  db.exec("INSERT INTO t (v) VALUES ('one')");
  return db;
}

/** A port on 127.0.0.1 with nothing listening. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

exitTest(
  ExitCode.OK,
  "a successful restore prints its result on stdout and nothing on stderr",
  async (dir) => {
    const url = await makeReplica(dir);
    const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, /^restored app to .*out\.db at TXID 8/);
  },
);

Deno.test({
  name:
    "exit 1: internal error (ignore: no debug hook exists to provoke a bug through the real CLI on purpose)",
  ignore: true,
  fn: () => {},
});
tested.add(ExitCode.INTERNAL);

exitTest(ExitCode.USAGE, "an unknown flag", async (dir) => {
  const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", dir, "--no-such-flag"]);
  expectFailure(r, 2, /no-such-flag/);
});

exitTest(ExitCode.DATABASE, "snapshot of a database that does not exist", async (dir) => {
  const r = await runProcess(["snapshot", `${dir}/missing.db`, "-b", `${dir}/replica`]);
  expectFailure(r, 3, /missing\.db/);
});

exitTest(ExitCode.AUTH, "list with an access key the S3 server does not know", async () => {
  const s3 = await startS3rver();
  try {
    const r = await runProcess(["list", "-b", `s3://${s3.bucket}/p`, "--endpoint", s3.endpoint], {
      env: { AWS_ACCESS_KEY_ID: "NOSUCHKEY", AWS_SECRET_ACCESS_KEY: "wrong", AWS_REGION: s3.region },
    });
    expectFailure(r, 4, /InvalidAccessKeyId/);
  } finally {
    await s3.stop();
  }
}, { s3: true });

exitTest(ExitCode.CONNECTION, "list from an endpoint where nothing listens", async () => {
  const r = await runProcess(
    ["list", "-b", "s3://bucket/p", "--endpoint", `http://127.0.0.1:${closedPort()}`],
    { env: { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s", AWS_REGION: "us-east-1" } },
  );
  expectFailure(r, 5, /127\.0\.0\.1/);
});

exitTest(ExitCode.BUCKET_NOT_FOUND, "list a bucket that does not exist", async () => {
  const s3 = await startS3rver();
  try {
    const r = await runProcess(["list", "-b", "s3://no-such-bucket/p", "--endpoint", s3.endpoint], {
      env: {
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
        AWS_REGION: s3.region,
      },
    });
    expectFailure(r, 6, /no-such-bucket/);
  } finally {
    await s3.stop();
  }
}, { s3: true });

exitTest(ExitCode.CORRUPTION, "restore through a backup file with a flipped byte", async (dir) => {
  const url = await makeReplica(dir);
  const victim = `${url}/app/ltx/0/${"0".repeat(15)}6-${"0".repeat(15)}6.ltx`;
  await flipByte(victim, Math.floor((await Deno.stat(victim)).size / 2));
  const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]);
  expectFailure(r, 7, /0000000000000006-0000000000000006\.ltx/);
});

exitTest(ExitCode.GAP, "verify a chain with TXID 7 missing", async (dir) => {
  const url = await makeReplica(dir, [5, 6, 8]);
  const r = await runProcess(["verify", "app", "-b", url]);
  // verify's report is on stdout; stderr holds the one-line verdict.
  expectFailure(r, 8, /TXID 7 missing/);
});

exitTest(ExitCode.STALE, "verify --max-age 1h on backups from 2025-01-01", async (dir) => {
  const url = await makeReplica(dir);
  const r = await runProcess(["verify", "app", "-b", url, "--max-age", "1h"]);
  expectFailure(r, 9, /newest backup is .* old/);
});

exitTest(ExitCode.NOT_FOUND, "restore from an empty replica directory", async (dir) => {
  await Deno.mkdir(`${dir}/replica`);
  const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", `${dir}/replica`]);
  expectFailure(r, 10, /no backup/i);
});

exitTest(ExitCode.CONFLICT, "restore onto an output that exists", async (dir) => {
  const url = await makeReplica(dir);
  await Deno.writeTextFile(`${dir}/out.db`, "mine");
  const r = await runProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]);
  expectFailure(r, 11, /out\.db already exists/);
  assert.equal(await Deno.readTextFile(`${dir}/out.db`), "mine");
});

exitTest(ExitCode.LOCAL_IO, "restore into a path below a regular file (ENOTDIR)", async (dir) => {
  const url = await makeReplica(dir);
  await Deno.writeTextFile(`${dir}/plain`, "x");
  const r = await runProcess(["restore", "app", "-o", `${dir}/plain/out.db`, "-b", url]);
  expectFailure(r, 12, /plain: .*not a directory/);
});

exitTest(
  ExitCode.INTERRUPTED,
  "SIGINT to watch while the replica is unreachable and files are queued",
  async (dir) => {
    const s3 = await startS3rver();
    const proxy = await startFaultProxy(s3.endpoint);
    const db = makeDb(`${dir}/app.db`);
    let child: Deno.ChildProcess | null = null;
    try {
      child = spawnProcess([
        "watch",
        `${dir}/app.db`,
        "-b",
        `s3://${s3.bucket}/p`,
        "--endpoint",
        proxy.endpoint,
        "--no-metrics",
        "--sync-interval",
        "100ms",
        "--shutdown-timeout",
        "300ms",
        "--log-level",
        "error",
      ], {
        env: {
          AWS_ACCESS_KEY_ID: s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
          AWS_REGION: s3.region,
        },
      });
      const output = child.output();
      // Replicating: the first level-0 file is on the server (s3rver keeps objects as `<key>._S3rver_object`).
      const l0 = `${s3.dir}/${s3.bucket}/p/app/0000`;
      await waitUntil(
        async () => {
          try {
            for await (const _ of Deno.readDir(l0)) return true;
          } catch { /* not yet */ }
          return false;
        },
        20_000,
        "the first upload",
      );
      // Now the replica stops answering, and a new transaction is queued locally.
      proxy.setFaults({ rules: [{ kind: "error_503" }] });
      db.exec("INSERT INTO t (v) VALUES ('two')");
      const queue = `${dir}/.app.db-walrust/ltx/0`;
      const ltxIn = (d: string) =>
        [...Deno.readDirSync(d)].map((e) => e.name.replace(/\._S3rver_object$/, ""));
      await waitUntil(
        () => {
          const shipped = new Set(ltxIn(l0));
          return ltxIn(queue).some((n) => /^[0-9a-f-]+\.ltx$/.test(n) && !shipped.has(n));
        },
        20_000,
        "a file in the local queue that is not on the replica",
      );
      child.kill("SIGINT");
      const out = await output;
      child = null;
      const dec = new TextDecoder();
      expectFailure(
        { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) },
        130,
        /file\(s\) still in the local queue; nothing is lost/,
      );
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.output().catch(() => {});
      }
      db.close();
      await proxy.stop();
      await s3.stop();
    }
  },
  { s3: true },
);

// ---- the table itself -----------------------------------------------------------------------------------------

/** `code → meaning` rows of the "Exit codes" table in README.md. */
async function readmeTable(): Promise<Map<number, string>> {
  const text = await Deno.readTextFile(`${ROOT}/README.md`);
  const section = text.split(/^## Exit codes$/m)[1]?.split(/^## /m)[0];
  assert.ok(section, "README.md has an '## Exit codes' section");
  const rows = new Map<number, string>();
  for (const m of section.matchAll(/^\|\s*(\d+)\s*\|\s*(.*?)\s*\|$/gm)) rows.set(Number(m[1]), m[2]);
  return rows;
}

/** `code → meaning` lines of the "Exit codes:" block of `walrust --help`. */
function helpTable(help: string): Map<number, string> {
  const block = help.split(/^Exit codes:$/m)[1];
  assert.ok(block, "walrust --help has an 'Exit codes:' block");
  const rows = new Map<number, string>();
  for (const m of block.matchAll(/^ {2}(\d+)\s+(.*)$/gm)) rows.set(Number(m[1]), m[2].trim());
  return rows;
}

/** The part of a meaning before its parenthesised details: `stale backup`. */
function gist(meaning: string): string {
  return meaning.replace(/\(.*$/, "").replace(/`/g, "").trim().toLowerCase();
}

Deno.test("exit codes: README.md's table, `walrust --help` and ExitCode in src/errors.ts agree", async () => {
  const codes = [...new Set<number>(Object.values(ExitCode))].sort((a, b) => a - b);
  const readme = await readmeTable();
  const r = await runProcess(["--help"]);
  assert.equal(r.code, 0, r.stderr);
  const help = helpTable(r.stdout);
  assert.deepEqual([...readme.keys()].sort((a, b) => a - b), codes, "README.md rows = ExitCode values");
  assert.deepEqual([...help.keys()].sort((a, b) => a - b), codes, "--help rows = ExitCode values");
  for (const c of codes) assert.equal(gist(readme.get(c)!), gist(help.get(c)!), `meaning of exit ${c}`);
});

Deno.test("exit codes: this file has one test per code of ExitCode", () => {
  const codes = [...new Set<number>(Object.values(ExitCode))].sort((a, b) => a - b);
  assert.deepEqual([...tested].sort((a, b) => a - b), codes);
});
