/**
 * `walrust replicate` end to end: bootstrap, resume after a restart from the recorded TXID, re-bootstrap on a
 * gap and on a replaced history, URL forms and errors, one follower per file, and kill -9 in the middle of
 * applies (the replica always passes integrity_check and converges without a rebuild).
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { splitDatabaseUrl } from "../src/cli/replicate.ts";
import { configureLogging } from "../src/observe/log.ts";
import { readState, type ReplicaState } from "../src/readreplica/state.ts";
import { bankTransfer, createBankSchema, LtxSource } from "../src/readreplica/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { openObjectStore } from "../src/storage/open.ts";
import { runInProcess, spawnProcess } from "./support/cli.ts";
import { startS3rver } from "./support/s3rver.ts";

const logLines: string[] = [];
configureLogging({ write: (l) => logLines.push(l) });

interface Ctx {
  dir: string;
  url: string;
  client: ReplicaClient;
  source: LtxSource;
  replica: string;
}

async function withCtx(fn: (c: Ctx) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "replicate-cli-" });
  const client = new ReplicaClient(new FileObjectStore(`${dir}/backups`), "app");
  const source = LtxSource.create(dir, client);
  try {
    await fn({ dir, url: `${dir}/backups/app`, client, source, replica: `${dir}/replica.db` });
  } finally {
    source.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function commits(source: LtxSource, n: number, opts: { upload?: boolean } = {}): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = source.txid;
    await source.commit((db) => (t === 0 ? createBankSchema(db, 30) : bankTransfer(db, t, 30)), opts);
  }
}

async function state(replica: string): Promise<ReplicaState> {
  const st = await readState(replica);
  if (st.kind !== "ok") throw new Error(`no state for ${replica}: ${st.kind}`);
  return st.state;
}

function once(c: Ctx, ...extra: string[]) {
  return runInProcess(["replicate", c.url, "--local", c.replica, "--once", ...extra]);
}

/** Same counter rows and balances as the source, and integrity_check ok. */
function assertMatchesSource(replica: string, source: LtxSource): void {
  const db = new DatabaseSync(replica, { readOnly: true });
  try {
    assert.deepEqual({ ...db.prepare("PRAGMA integrity_check").get() }, { integrity_check: "ok" });
    for (
      const sql of [
        "SELECT count(*) n, max(n) hi FROM counter",
        "SELECT group_concat(balance) b FROM accounts",
      ]
    ) {
      assert.deepEqual({ ...db.prepare(sql).get() }, { ...source.db.prepare(sql).get() });
    }
  } finally {
    db.close();
  }
}

Deno.test("replicate --once: bootstraps; a restart resumes from the recorded TXID without a new bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 3);
    await c.source.snapshot();
    await commits(c.source, 2);
    const first = await once(c);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /at TXID 5 \(bootstrapped\)/);
    assertMatchesSource(c.replica, c.source);

    await commits(c.source, 4);
    logLines.length = 0;
    const second = await once(c);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /at TXID 9 \(applied\)/);
    assert.ok(logLines.some((l) => /INFO\s+resuming .*txid=5/.test(l)), logLines.join("\n"));
    assert.ok(logLines.some((l) => /INFO\s+applied .*files=4 from=5 txid=9/.test(l)), logLines.join("\n"));
    assert.ok(!logLines.some((l) => /bootstrapping|bootstrapped/.test(l)));
    const st = await state(c.replica);
    assert.deepEqual([st.txid, st.bootstraps, st.applied], [9, 1, 4]);
    assertMatchesSource(c.replica, c.source);

    const third = await once(c);
    assert.match(third.stdout, /at TXID 9 \(idle\)/);
  });
});

Deno.test("replicate: a gap in the backup triggers a clean re-bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 4);
    assert.equal((await once(c)).code, 0);
    await commits(c.source, 3, { upload: false }); // TXIDs 5–7 never reach the backup
    await c.source.snapshot();
    await commits(c.source, 1);
    logLines.length = 0;
    const r = await once(c);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 8 \(bootstrapped\)/);
    assert.ok(
      logLines.some((l) => /WARN\s+re-bootstrapping .*TXIDs 5–7 are no longer in the backup/.test(l)),
    );
    assert.equal((await state(c.replica)).bootstraps, 2);
    assertMatchesSource(c.replica, c.source);
  });
});

Deno.test("replicate: a new lineage (the backup's history was replaced) triggers a clean re-bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 6);
    assert.equal((await once(c)).code, 0);
    await Deno.remove(`${c.dir}/backups`, { recursive: true });
    const fresh = LtxSource.create(c.dir, c.client);
    try {
      for (let i = 0; i < 3; i++) {
        const t = fresh.txid;
        await fresh.commit((db) => (t === 0 ? createBankSchema(db, 30) : bankTransfer(db, t + 500, 30)));
      }
      logLines.length = 0;
      const r = await once(c);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /at TXID 3 \(bootstrapped\)/);
      assert.ok(logLines.some((l) => /re-bootstrapping .*history replaced/.test(l)), logLines.join("\n"));
      assert.equal((await state(c.replica)).bootstraps, 2);
      assertMatchesSource(c.replica, fresh);
    } finally {
      fresh.close();
    }
  });
});

Deno.test("replicate: URL forms, -b/--name, and usage, not-found and conflict errors", async () => {
  assert.deepEqual(splitDatabaseUrl("s3://bucket/prefix/app"), { root: "s3://bucket/prefix", name: "app" });
  assert.deepEqual(splitDatabaseUrl("s3://bucket/app/"), { root: "s3://bucket", name: "app" });
  assert.deepEqual(splitDatabaseUrl("bucket/a/b/app"), { root: "s3://bucket/a/b", name: "app" });
  assert.deepEqual(splitDatabaseUrl("/backups/app"), { root: "/backups", name: "app" });
  assert.deepEqual(splitDatabaseUrl("file:///backups/app"), { root: "/backups", name: "app" });
  assert.deepEqual(splitDatabaseUrl("./backups/app"), { root: "./backups", name: "app" });
  assert.throws(() => splitDatabaseUrl("s3://bucket"), /names a bucket/);
  assert.throws(() => splitDatabaseUrl("/"), /names a directory/);

  await withCtx(async (c) => {
    const none = await once(c);
    assert.equal(none.code, 10, none.stderr);
    assert.match(none.stderr, /no backup of app/);
    assert.equal(await Deno.stat(c.replica).catch(() => null), null);

    await commits(c.source, 2);
    const viaB = await runInProcess([
      "replicate",
      "-b",
      `${c.dir}/backups`,
      "--name",
      "app",
      "-l",
      c.replica,
      "--once",
    ]);
    assert.equal(viaB.code, 0, viaB.stderr);
    assert.match(viaB.stdout, /at TXID 2 \(bootstrapped\)/);

    for (
      const args of [
        ["replicate", c.url, "--once"],
        ["replicate", "s3://bucket", "--local", c.replica],
        ["replicate", c.url, "-b", c.dir, "--local", c.replica],
        ["replicate", "--local", c.replica],
        ["replicate", c.url, "--local", c.replica, "--interval", "soon"],
      ]
    ) {
      const r = await runInProcess(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    }

    // One follower per replica file: a second one is refused with exit 11.
    const child = spawnProcess(["replicate", c.url, "--local", c.replica, "--interval", "50ms"]);
    try {
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let log = "";
      while (!/INFO\s+(resuming|following)/.test(log)) {
        const { value, done } = await reader.read();
        if (done) break;
        log += value;
      }
      reader.releaseLock();
      const second = await once(c);
      assert.equal(second.code, 11, second.stderr);
      assert.match(second.stderr, /already updating/);
      child.kill("SIGTERM");
      const status = await child.status;
      assert.equal(status.code, 0, "SIGTERM stops replicate cleanly with exit 0");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await child.status;
    }
  });
});

Deno.test("replicate: kill -9 in the middle of applies leaves a replica that passes integrity_check and converges", async () => {
  await withCtx(async (c) => {
    // Bigger files (every row of `big` rewritten per file: ~200 pages) so that applies take a while.
    const workload = (db: DatabaseSync, t: number) => {
      if (t === 0) {
        createBankSchema(db, 30);
        db.exec("CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)");
        const ins = db.prepare("INSERT INTO big(v) VALUES (?)");
        for (let i = 0; i < 400; i++) ins.run("init".repeat(500));
      } else {
        bankTransfer(db, t, 30);
        db.prepare("UPDATE big SET v = ? || id").run(`v${t}-`.repeat(300));
      }
    };
    const more = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const t = c.source.txid;
        await c.source.commit((db) => workload(db, t));
      }
    };
    await more(2);
    assert.equal((await once(c)).code, 0);

    let hotJournals = 0;
    const kills = 8;
    for (let k = 0; k < kills; k++) {
      await more(25);
      const child = spawnProcess(["replicate", c.url, "--local", c.replica, "--interval", "10ms"]);
      try {
        const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
        let log = "";
        while (!/INFO\s+resuming/.test(log)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`replicate exited early:\n${log}`);
          log += value;
        }
        // Somewhere inside the backlog of 25 applies.
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 60)));
        child.kill("SIGKILL");
        reader.releaseLock();
      } finally {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.stdout.cancel().catch(() => {});
        await child.stderr.cancel().catch(() => {});
        await child.status;
      }
      if (await Deno.stat(`${c.replica}-journal`).catch(() => null)) hotJournals++;
      // Every other time an application opens it first (SQLite rolls the journal back), otherwise walrust does.
      if (k % 2 === 0) {
        const db = new DatabaseSync(c.replica);
        try {
          assert.deepEqual({ ...db.prepare("PRAGMA integrity_check").get() }, { integrity_check: "ok" });
          assert.deepEqual({ ...db.prepare("SELECT sum(balance) s, count(*) n FROM accounts").get() }, {
            s: 0,
            n: 30,
          });
          const ctr = db.prepare("SELECT count(*) n, min(n) lo, max(n) hi FROM counter").get() as Record<
            string,
            number
          >;
          assert.equal(ctr.hi - ctr.lo + 1, ctr.n);
        } finally {
          db.close();
        }
      }
    }
    console.log(`${hotJournals} of ${kills} kills left a hot journal (a half-applied file)`);
    assert.ok(
      hotJournals >= 1,
      "no kill landed in the middle of an apply; the test did not exercise recovery",
    );

    const final = await once(c);
    assert.equal(final.code, 0, final.stderr);
    assert.match(final.stdout, new RegExp(`at TXID ${c.source.txid} `));
    const st = await state(c.replica);
    assert.equal(st.bootstraps, 1, "every restart resumed; nothing was rebuilt");
    assertMatchesSource(c.replica, c.source);
    const db = new DatabaseSync(c.replica, { readOnly: true });
    try {
      const sql = "SELECT count(*) n, sum(length(v)) l FROM big";
      assert.deepEqual({ ...db.prepare(sql).get() }, { ...c.source.db.prepare(sql).get() });
    } finally {
      db.close();
    }
  });
});

Deno.test("replicate from S3 (s3rver): s3://bucket/prefix/<name> bootstraps and then applies new files", async () => {
  const s3 = await startS3rver();
  const dir = await Deno.makeTempDir({ prefix: "replicate-s3-" });
  const store = openObjectStore({
    url: `s3://${s3.bucket}/backups`,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
  const source = LtxSource.create(dir, new ReplicaClient(store, "app"));
  try {
    const env = {
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      AWS_REGION: s3.region,
    };
    const args = [
      "replicate",
      `s3://${s3.bucket}/backups/app`,
      "--endpoint",
      s3.endpoint,
      "-l",
      `${dir}/r.db`,
      "--once",
    ];
    await commits(source, 3);
    await source.snapshot();
    await commits(source, 2);
    let r = await runInProcess(args, env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 5 \(bootstrapped\)/);
    await commits(source, 3);
    r = await runInProcess(args, env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /at TXID 8 \(applied\)/);
    assert.equal((await state(`${dir}/r.db`)).bootstraps, 1);
    assertMatchesSource(`${dir}/r.db`, source);
  } finally {
    source.close();
    store.close();
    await s3.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
