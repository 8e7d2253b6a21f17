/**
 * End-to-end: the real Litestream v0.3.13 binary replicates a database that changes (including Litestream's
 * own checkpoints → new WAL indexes, and an application TRUNCATE checkpoint while Litestream is down → a new
 * generation); walrust's v0.3 restore must equal Litestream's own restore of the same replica, and a
 * point-in-time restore must equal the state recorded at that time. Then the same against S3 (s3rver), and
 * the failure cases on a real replica.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { CorruptionError, GapError } from "../src/errors.ts";
import { describeV3, findV3Root, restoreV3 } from "../src/litestream/v3_restore.ts";
import { listV3Generations } from "../src/litestream/v3_layout.ts";
import { configureLogging } from "../src/observe/log.ts";
import { ReplicationConnection } from "../src/sqlite/connection.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { openObjectStore } from "../src/storage/open.ts";
import type { ObjectStore } from "../src/storage/object_store.ts";
import {
  LITESTREAM_BIN,
  type LitestreamHandle,
  type LitestreamReplicateOptions,
  litestreamRestore,
  type LitestreamS3Target,
  startLitestreamReplicate,
} from "./support/litestream.ts";
import { runInProcess } from "./support/cli.ts";
import { startS3rver } from "./support/s3rver.ts";
import { databaseDigest, integrityCheck } from "./support/sqlite_state.ts";

configureLogging({ write: () => {} });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Recorded {
  /** A time after the state was uploaded and before the next change: a point-in-time target. */
  at: Date;
  digest: string;
  generation: string;
  /** Whether a later upload of the same generation exists (Litestream v0.3.13 needs one for -timestamp). */
  inside: boolean;
}

interface Scenario {
  states: Recorded[];
  generations: string[];
}

/**
 * Drives Litestream over one database: small transactions, a large one that makes Litestream checkpoint (new
 * WAL index), then Litestream is stopped, the app writes and TRUNCATE-checkpoints, and Litestream restarts (new
 * generation). Each state is recorded after Litestream has uploaded it.
 */
async function runScenario(
  db: string,
  target: Omit<LitestreamReplicateOptions, "db">,
  plan: { rounds: number; secondClock?: boolean },
): Promise<Scenario> {
  const app = new DatabaseSync(db, { timeout: 5000 });
  app.exec("PRAGMA journal_mode=WAL");
  app.exec("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, blob BLOB)");
  const ins = app.prepare("INSERT INTO items(name, blob) VALUES (?, ?)");
  let n = 0;
  const write = (rows: number, blobSize = 100) => {
    app.exec("BEGIN");
    for (let i = 0; i < rows; i++, n++) ins.run(`item-${n}`, new Uint8Array(blobSize).fill(n & 0xff));
    if (n % 4 === 0) app.prepare("DELETE FROM items WHERE id = ?").run(n - 2);
    app.exec("COMMIT");
  };
  const states: Recorded[] = [];
  const generations: string[] = [];
  let ls: LitestreamHandle | undefined;
  const opts: LitestreamReplicateOptions = { db, minCheckpointPageCount: 40, ...target };
  const record = async () => {
    const { generation } = await ls!.waitForSync();
    if (!generations.includes(generation)) generations.push(generation);
    const prev = states[states.length - 1];
    if (prev && prev.generation === generation) prev.inside = true;
    const now = Date.now();
    if (plan.secondClock) {
      // S3 LastModified has whole seconds (truncated or rounded): aim between two seconds and write the next
      // state only in the second after that.
      const ceil = Math.ceil(now / 1000) * 1000;
      states.push({ at: new Date(ceil + 500), digest: databaseDigest(db), generation, inside: false });
      await sleep(ceil + 1020 - Date.now());
    } else {
      states.push({ at: new Date(now + 5), digest: databaseDigest(db), generation, inside: false });
      await sleep(40); // the next upload's mtime is then well after `at`
    }
  };
  try {
    ls = await startLitestreamReplicate(opts);
    await record(); // the initial snapshot
    for (let i = 0; i < plan.rounds; i++) {
      write(2);
      await record();
    }
    // ~60 pages of blobs: past min-checkpoint-page-count, so Litestream checkpoints and starts WAL index 1.
    write(60, 3000);
    await record();
    const deadline = Date.now() + 10_000;
    while ((await ls.waitForSync()).index < 1) {
      if (Date.now() > deadline) throw new Error(`no Litestream checkpoint:\n${ls.log()}`);
      await sleep(50);
    }
    for (let i = 0; i < plan.rounds; i++) {
      write(3);
      await record();
    }
    await ls.stop();
    // With Litestream down the app's TRUNCATE checkpoint succeeds; Litestream can no longer continue its WAL.
    write(5);
    const ck = app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
    assert.equal(ck.busy, 0);
    ls = await startLitestreamReplicate(opts);
    await ls.waitForLog(/sync: new generation/);
    await record();
    for (let i = 0; i < plan.rounds; i++) {
      write(2);
      await record();
    }
    return { states, generations };
  } finally {
    await ls?.stop();
    app.close();
  }
}

async function assertSameFile(a: string, b: string, what: string): Promise<void> {
  const x = await Deno.readFile(a), y = await Deno.readFile(b);
  assert.equal(x.length, y.length, `${what}: sizes differ`);
  assert.ok(x.every((v, i) => v === y[i]), `${what}: bytes differ`);
}

/** Latest and every point in time: walrust vs Litestream vs the recorded state. */
async function compareRestores(
  dir: string,
  store: ObjectStore,
  root: string,
  scenario: Scenario,
  litestream: { replicaDir?: string; s3?: LitestreamS3Target },
): Promise<void> {
  const desc = await describeV3(store, root);
  assert.deepEqual(desc.generations.map((g) => g.id).sort(), [...scenario.generations].sort());
  assert.ok(desc.generations.some((g) => (g.maxIndex ?? 0) >= 1), "a second WAL index exists");

  const ours = `${dir}/walrust-latest.db`, theirs = `${dir}/litestream-latest.db`;
  await restoreV3(store, root, { output: ours });
  await litestreamRestore({ output: theirs, ...litestream });
  await assertSameFile(ours, theirs, "latest restore");
  const last = scenario.states[scenario.states.length - 1];
  assert.equal(databaseDigest(ours), last.digest);
  assert.equal(integrityCheck(ours), "ok");
  assert.equal(integrityCheck(theirs), "ok");

  for (const [i, s] of scenario.states.entries()) {
    const o = `${dir}/walrust-${i}.db`;
    await restoreV3(store, root, { output: o, timestamp: s.at });
    assert.equal(databaseDigest(o), s.digest, `walrust at state ${i} (${s.at.toISOString()})`);
    if (s.inside) {
      // v0.3.13 only restores times inside a generation's [first, last upload]; v0.5's rule (ours) is wider.
      const t = `${dir}/litestream-${i}.db`;
      await litestreamRestore({ output: t, timestamp: s.at, ...litestream });
      assert.equal(databaseDigest(t), s.digest, `Litestream at state ${i}`);
      await assertSameFile(o, t, `restore at state ${i}`);
    }
  }
}

Deno.test({
  name:
    "litestream v0.3 (file replica): walrust restore equals Litestream's, latest and at every point in time",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "walrust-ls3-" });
    try {
      const db = `${dir}/app.db`, replica = `${dir}/replica`;
      const scenario = await runScenario(db, { replicaDir: replica }, { rounds: 3 });
      assert.equal(scenario.generations.length, 2);
      const store = openObjectStore({ url: replica });
      assert.equal(await findV3Root(store, "app"), "", "a URL pointing at the Litestream replica root");
      await compareRestores(dir, store, "", scenario, { replicaDir: replica });

      // Through the CLI: `walrust restore app -b <Litestream replica root>`.
      const cli = await runInProcess(["restore", "app", "-b", replica, "-o", `${dir}/cli.db`]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(databaseDigest(`${dir}/cli.db`), scenario.states[scenario.states.length - 1].digest);

      // The same data under <prefix>/<name>/generations/ (walrust's own layout) is found by name.
      await Deno.mkdir(`${dir}/bucket`);
      await Deno.rename(replica, `${dir}/bucket/app`);
      const named = new FileObjectStore(`${dir}/bucket`);
      assert.equal(await findV3Root(named, "app"), "app");
      await restoreV3(named, "app", { output: `${dir}/named.db` });
      assert.equal(databaseDigest(`${dir}/named.db`), scenario.states[scenario.states.length - 1].digest);

      // A database Litestream replicated (it has _litestream_seq/_litestream_lock) opens for walrust replication.
      const conn = ReplicationConnection.open(db);
      try {
        conn.acquireReadLock();
        conn.releaseReadLock();
      } finally {
        conn.close();
      }
      // ... and walrust replicates it end to end: snapshot to a walrust replica, restore, same data.
      const before = databaseDigest(db);
      const snap = await runInProcess(["snapshot", db, "-b", `${dir}/walrust-replica`]);
      assert.equal(snap.code, 0, snap.stderr);
      const back = await runInProcess([
        "restore",
        "app",
        "-o",
        `${dir}/from-walrust.db`,
        "-b",
        `${dir}/walrust-replica`,
      ]);
      assert.equal(back.code, 0, back.stderr);
      assert.equal(databaseDigest(`${dir}/from-walrust.db`), before);
      assert.equal(databaseDigest(db), before, "the Litestream-replicated database itself is unchanged");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "litestream v0.3 (s3rver): walrust restore equals Litestream's, latest and at every point in time",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "walrust-ls3-s3-" });
    const s3 = await startS3rver();
    try {
      const target: LitestreamS3Target = { ...s3, path: "backups/app" };
      const scenario = await runScenario(`${dir}/app.db`, { s3: target }, { rounds: 1, secondClock: true });
      const store = openObjectStore({
        url: `s3://${s3.bucket}/backups`,
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        accessKeyId: s3.accessKeyId,
        secretAccessKey: s3.secretAccessKey,
      });
      try {
        const root = await findV3Root(store, "app");
        assert.equal(root, "app");
        // Litestream v0.3.13 lists generations with Delimiter "/", and s3rver drops CommonPrefixes nested two
        // levels deep, so `litestream restore` cannot read s3rver. It restores a file copy of the same objects,
        // each with its S3 LastModified as mtime (what CreatedAt is on both backends).
        const mirror = `${dir}/mirror`;
        const local = new FileObjectStore(mirror);
        for await (const o of store.list(`${root}/`)) {
          await local.put(o.key.slice(root!.length + 1), await store.get(o.key), { mtime: o.lastModified });
        }
        await compareRestores(dir, store, root!, scenario, { replicaDir: mirror });
      } finally {
        store.close();
      }
    } finally {
      await s3.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyDir(`${from}/${e.name}`, `${to}/${e.name}`);
    else await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

Deno.test({
  name:
    "litestream v0.3: a missing or corrupt segment in a real replica is a typed error and leaves no output",
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "walrust-ls3-bad-" });
    let ls: LitestreamHandle | undefined;
    try {
      const db = `${dir}/app.db`, replica = `${dir}/replica`;
      const app = new DatabaseSync(db, { timeout: 5000 });
      try {
        app.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x)");
        ls = await startLitestreamReplicate({ db, replicaDir: replica });
        await ls.waitForSync();
        for (let i = 0; i < 3; i++) {
          app.prepare("INSERT INTO t VALUES (?)").run(`row ${i}`);
          await ls.waitForSync();
        }
      } finally {
        await ls?.stop();
        app.close();
      }
      const [gen] = await listV3Generations(new FileObjectStore(replica), "");
      assert.ok(gen.segments.length >= 4, `segments: ${gen.segments.map((s) => s.key)}`);
      const out = `${dir}/out/restored.db`;
      const noOutput = async () => {
        const left = await Array.fromAsync(Deno.readDir(`${dir}/out`)).catch(() => []);
        assert.deepEqual(left.map((e) => e.name), []);
      };

      const missing = `${dir}/missing`;
      await copyDir(replica, missing);
      await Deno.remove(`${missing}/${gen.segments[1].key}`);
      const e1 = await restoreV3(new FileObjectStore(missing), "", { output: out }).catch((e) => e);
      assert.ok(e1 instanceof GapError, String(e1));
      assert.match(
        e1.message,
        new RegExp(`missing WAL segment ${gen.id}/00000000 at offset ${gen.segments[1].offset}`),
      );
      await noOutput();

      const corrupt = `${dir}/corrupt`;
      await copyDir(replica, corrupt);
      const victim = `${corrupt}/${gen.segments[2].key}`;
      const bytes = await Deno.readFile(victim);
      bytes[bytes.length - 1] ^= 0xff; // its LZ4 content checksum
      await Deno.writeFile(victim, bytes);
      const e2 = await restoreV3(new FileObjectStore(corrupt), "", { output: out }).catch((e) => e);
      assert.ok(e2 instanceof CorruptionError, String(e2));
      assert.equal(e2.object, gen.segments[2].key);
      await noOutput();

      // The intact replica still restores, and Litestream agrees.
      await restoreV3(new FileObjectStore(replica), "", { output: out });
      await litestreamRestore({ output: `${dir}/ls.db`, replicaDir: replica });
      await assertSameFile(out, `${dir}/ls.db`, "intact replica");
    } finally {
      await ls?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("litestream v0.3: the binary is the pinned v0.3.13", async () => {
  const out = await new Deno.Command(LITESTREAM_BIN, { args: ["version"], stdout: "piped" }).output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "v0.3.13");
});
