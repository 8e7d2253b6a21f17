/**
 * Readers of a read replica never see a torn or inconsistent state: three reader processes run
 * `PRAGMA integrity_check` and invariant queries in a loop (tests/support/replica_reader.ts) while
 * `walrust replicate` (a real subprocess) applies thousands of LTX files in place — including VACUUMs that
 * rewrite and shrink the database.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { readState } from "../src/readreplica/state.ts";
import { bankTransfer, createBankSchema, LtxSource } from "../src/readreplica/testing.ts";
import type { ReaderReport } from "./support/replica_reader.ts";
import { ROOT, spawnProcess } from "./support/cli.ts";

const ACCOUNTS = 50;
const TRANSACTIONS = 2000;
const PER_FILE = 4;
const READERS = 3;

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stateTxid(replica: string): Promise<number> {
  const st = await readState(replica);
  return st.kind === "ok" ? st.state.txid : 0;
}

Deno.test("replicate: 3 reader processes see only consistent states while 2000 transactions in 500 files are applied in place", async () => {
  const dir = await Deno.makeTempDir({ prefix: "replicate-readers-" });
  const client = new ReplicaClient(new FileObjectStore(`${dir}/backups`), "app");
  const source = LtxSource.create(dir, client);
  const replica = `${dir}/replica.db`;
  const stop = `${dir}/stop`;
  let follower: Deno.ChildProcess | undefined;
  const readers: Deno.ChildProcess[] = [];
  try {
    await source.commit((db) => createBankSchema(db, ACCOUNTS));
    await source.snapshot();
    follower = spawnProcess(["replicate", `${dir}/backups/app`, "--local", replica, "--interval", "10ms"]);
    // The follower records its state before it renames the replica into place: wait for both.
    await waitFor(
      "the bootstrap",
      async () => (await stateTxid(replica)) >= 1 && (await Deno.stat(replica).then(() => true, () => false)),
    );
    const inode = (await Deno.stat(replica)).ino;

    for (let i = 0; i < READERS; i++) {
      readers.push(
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            "-A",
            `${ROOT}/tests/support/replica_reader.ts`,
            replica,
            "--accounts",
            String(ACCOUNTS),
            "--stop",
            stop,
            "--reopen-every",
            String(50 + i * 50),
          ],
          stdout: "piped",
          stderr: "piped",
        }).spawn(),
      );
    }

    // Thousands of transactions in hundreds of LTX files (one file = one sync of several transactions, as
    // with a real replicating process), paced so that the replica moves while the readers read.
    let vacuums = 0;
    for (let i = 1; i <= TRANSACTIONS; i += PER_FILE) {
      await source.commit((db) => {
        for (let k = i; k < i + PER_FILE; k++) {
          bankTransfer(db, k, ACCOUNTS);
          if (k % 400 === 0) {
            // Drop the oldest counter rows (they stay consecutive) and VACUUM: every page changes, the file shrinks.
            db.exec("DELETE FROM counter WHERE n IN (SELECT n FROM counter ORDER BY n LIMIT 300)");
            db.exec("VACUUM");
            vacuums++;
          }
        }
      });
      await new Promise((r) => setTimeout(r, 8));
    }
    await waitFor("the replica to catch up", async () => (await stateTxid(replica)) === source.txid, 120_000);

    await Deno.writeTextFile(stop, "");
    const reports: ReaderReport[] = [];
    for (const r of readers) {
      const out = await r.output();
      const text = new TextDecoder().decode(out.stdout).trim();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      reports.push(JSON.parse(text.split("\n").pop()!));
    }
    readers.length = 0;
    for (const rep of reports) {
      assert.equal(rep.failures, 0, `a reader saw an inconsistent state: ${rep.samples.join(" | ")}`);
      assert.ok(rep.iterations >= 50, `reader ran only ${rep.iterations} iterations`);
      assert.ok(rep.distinctStates >= 20, `reader saw only ${rep.distinctStates} different states`);
    }
    const all = reports.reduce((n, r) => n + r.distinctStates, 0);
    console.log(
      `readers: ${reports.map((r) => `${r.iterations} reads/${r.distinctStates} states`).join(", ")}; ` +
        `${vacuums} vacuums; ${all} states in total`,
    );

    follower.kill("SIGTERM");
    const fo = await follower.output();
    follower = undefined;
    const log = new TextDecoder().decode(fo.stderr);
    assert.equal(fo.code, 0, log);
    assert.match(log, /INFO\s+applied /);

    const st = await readState(replica);
    assert.equal(st.kind, "ok");
    if (st.kind === "ok") {
      assert.equal(st.state.bootstraps, 1, `applied in place, never rebuilt:\n${log}`);
      assert.equal(st.state.applied, TRANSACTIONS / PER_FILE);
    }
    assert.equal((await Deno.stat(replica)).ino, inode, "same file throughout");
    const db = new DatabaseSync(replica, { readOnly: true });
    try {
      assert.deepEqual({ ...db.prepare("PRAGMA integrity_check").get() }, { integrity_check: "ok" });
      const want = {
        ...source.db.prepare("SELECT count(*) n, max(n) hi, sum(length(pad)) p FROM counter").get(),
      };
      assert.deepEqual({
        ...db.prepare("SELECT count(*) n, max(n) hi, sum(length(pad)) p FROM counter").get(),
      }, want);
    } finally {
      db.close();
    }
  } finally {
    await Deno.writeTextFile(stop, "").catch(() => {});
    for (const r of readers) {
      try {
        r.kill("SIGKILL");
      } catch { /* exited */ }
      await r.output().catch(() => {});
    }
    if (follower) {
      try {
        follower.kill("SIGKILL");
      } catch { /* exited */ }
      await follower.output().catch(() => {});
    }
    source.close();
    await Deno.remove(dir, { recursive: true });
  }
});
