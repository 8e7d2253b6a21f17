/**
 * Progress lines of the long commands (snapshot, verify, compact --force, restore) appear on a terminal and
 * only there: each command runs twice through the real CLI, once under util-linux `script` (which gives it a
 * pseudo-terminal) and once with plain pipes, where stderr must hold no progress text and no escape codes.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { PRODUCT_PERMISSIONS, ROOT, runProcess } from "./support/cli.ts";

/** Whether util-linux `script` is installed (it provides the pseudo-terminal). */
function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}
const SCRIPT = hasScript();

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs `walrust <args>` on a pseudo-terminal; returns the exit code and everything the terminal showed. */
async function runOnTty(args: string[]): Promise<{ code: number; screen: string }> {
  const argv = [
    Deno.execPath(),
    "run",
    "--quiet",
    "--frozen",
    "--config",
    `${ROOT}/deno.json`,
    ...PRODUCT_PERMISSIONS,
    `${ROOT}/main.ts`,
    ...args,
  ];
  const out = await new Deno.Command("script", {
    args: ["-q", "-e", "-c", argv.map(quote).join(" "), "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, screen: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** A directory replica of `app`: L9 1-4 and L0 5…8. */
async function makeReplica(dir: string): Promise<string> {
  const h = sampleHistory(dir, 8);
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  await putLtx(client, h, 9, 1, 4);
  await putL0Range(client, h, 5, 8);
  return url;
}

const ERASE = "\x1b[K";

/** Runs `args` (built for a fresh temp dir) on a terminal and on pipes and checks where `label` appears. */
async function checkProgress(
  label: string,
  setup: (dir: string) => Promise<string[]>,
): Promise<void> {
  for (const tty of [true, false]) {
    const dir = await Deno.makeTempDir({ prefix: "walrust-progress-" });
    try {
      const args = await setup(dir);
      if (tty) {
        const r = await runOnTty(args);
        assert.equal(r.code, 0, r.screen);
        assert.ok(r.screen.includes(label), `'${label}' on the terminal:\n${JSON.stringify(r.screen)}`);
        assert.ok(r.screen.includes(ERASE), "the line is redrawn in place");
      } else {
        const r = await runProcess(args);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!r.stderr.includes(label), `no progress without a terminal:\n${JSON.stringify(r.stderr)}`);
        assert.ok(!r.stderr.includes("\x1b") && !r.stderr.includes("\r"), JSON.stringify(r.stderr));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
}

const ttyName = (name: string) => SCRIPT ? name : `${name} (ignore: util-linux script is not installed)`;

Deno.test({
  name: ttyName("progress: snapshot shows it on a terminal only"),
  ignore: !SCRIPT,
  fn: () =>
    checkProgress("snapshotting app", (dir) => {
      const db = new DatabaseSync(`${dir}/app.db`);
      try {
        db.exec("PRAGMA journal_mode=WAL");
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)");
        db.prepare("INSERT INTO t (b) VALUES (randomblob(?))").run(200_000);
      } finally {
        db.close();
      }
      return Promise.resolve(["snapshot", `${dir}/app.db`, "-b", `${dir}/replica`]);
    }),
});

Deno.test({
  name: ttyName("progress: verify shows it on a terminal only"),
  ignore: !SCRIPT,
  fn: () => checkProgress("verifying app", async (dir) => ["verify", "app", "-b", await makeReplica(dir)]),
});

Deno.test({
  name: ttyName("progress: compact --force shows it on a terminal only"),
  ignore: !SCRIPT,
  fn: () =>
    checkProgress(
      "compacting app",
      async (dir) => ["compact", "app", "-b", await makeReplica(dir), "--force"],
    ),
});

Deno.test({
  name: ttyName("progress: restore shows it on a terminal only"),
  ignore: !SCRIPT,
  fn: () =>
    checkProgress("restoring app", async (dir) => [
      "restore",
      "app",
      "-b",
      await makeReplica(dir),
      "-o",
      `${dir}/out.db`,
    ]),
});
