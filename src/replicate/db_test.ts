/**
 * DbReplicator against real SQLite databases in this process, driven step by step (`background: false`):
 * sync, checkpoints, WAL restarts by walrust and by the application, restarts of walrust, queue rebuilds,
 * snapshots, failing replicas, locks and leases. Every scenario ends with a real restore (src/restore)
 * compared with the source database.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type DatabaseSettings, DEFAULTS } from "../config/types.ts";
import { AuthError, ConflictError, ConnectionError, DatabaseError, ExitCode } from "../errors.ts";
import { verifyLtx } from "../ltx/decoder.ts";
import type { LtxHeader } from "../ltx/types.ts";
import { EventBus, type WalrustEvent } from "../observe/events.ts";
import { configureLogging } from "../observe/log.ts";
import { restoreDatabase } from "../restore/restore.ts";
import { FileObjectStore } from "../storage/file.ts";
import { leaseKey } from "../storage/lease.ts";
import { MemoryObjectStore } from "../storage/memory.ts";
import type { ObjectStore, PutOptions } from "../storage/object_store.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { databaseDigest, integrityCheck } from "../../tests/support/sqlite_state.ts";
import { DbReplicator, type DbReplicatorOptions } from "./db.ts";
import { STREAMED_SHIP_BYTES } from "./uploader.ts";
import { crc64 } from "../ltx/checksum.ts";
import { recordedDigests } from "../storage/file.ts";
import { sha256Hex } from "../storage/digest.ts";
import { chainProblems, verifyReplicaFiles, waitUntil } from "./testing.ts";

configureLogging({ level: "error" });

function settingsFor(path: string, over: Partial<DatabaseSettings> = {}): DatabaseSettings {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const file = path.slice(path.lastIndexOf("/") + 1);
  return {
    path,
    name: "app",
    replica: { url: `${dir}/replica` },
    syncIntervalMs: 50,
    snapshotIntervalMs: DEFAULTS.snapshotIntervalMs,
    checkpointIntervalMs: DEFAULTS.checkpointIntervalMs,
    minCheckpointPages: DEFAULTS.minCheckpointPages,
    truncatePages: DEFAULTS.truncatePages,
    queueDir: `${dir}/.${file}-walrust`,
    queueMaxBytes: DEFAULTS.queueMaxBytes,
    compactionIntervalsMs: [...DEFAULTS.compactionIntervalsMs],
    retention: { ...DEFAULTS.retention },
    validationIntervalMs: 0,
    retry: { ...DEFAULTS.retry },
    ...over,
  };
}

/** One test's world: a WAL database with an application connection, a replica, a bus recording events. */
interface World {
  dir: string;
  path: string;
  app: DatabaseSync;
  store: ObjectStore;
  client: ReplicaClient;
  bus: EventBus;
  events: WalrustEvent[];
  make(opts?: DbReplicatorOptions, over?: Partial<DatabaseSettings>): DbReplicator;
  insert(n: number, blob?: number): void;
  close(): Promise<void>;
}

async function world(store?: (dir: string) => ObjectStore, dbName = "app.db"): Promise<World> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-db-test-" });
  const path = `${dir}/${dbName}`;
  const app = new DatabaseSync(path, { timeout: 0 });
  app.exec(`PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
    CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);`);
  const s = store ? store(dir) : new FileObjectStore(`${dir}/replica`);
  const client = new ReplicaClient(s, "app");
  const bus = new EventBus();
  const events: WalrustEvent[] = [];
  bus.subscribe((e) => void events.push(e));
  const reps: DbReplicator[] = [];
  let next = 0;
  return {
    dir,
    path,
    app,
    store: s,
    client,
    bus,
    events,
    make(opts = {}, over = {}) {
      const r = new DbReplicator(settingsFor(path, over), client, bus, { background: false, ...opts });
      reps.push(r);
      return r;
    },
    insert(n, blob = 0) {
      const st = app.prepare("INSERT INTO t (v, b) VALUES (?, ?)");
      app.exec("BEGIN");
      for (let i = 0; i < n; i++) {
        st.run(`row ${next++} ${"x".repeat(next % 50)}`, new Uint8Array(blob).fill(next));
      }
      app.exec("COMMIT");
    },
    async close() {
      for (const r of reps) await r.stop({ flushTimeoutMs: 0, finalSync: false }).catch(() => {});
      if (app.isOpen) app.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Restores the replica (latest, or at `txid`) and returns the restored database's digest. */
async function restoredDigest(w: World, txid?: number): Promise<string> {
  const out = `${w.dir}/restored-${crypto.randomUUID()}.db`;
  await restoreDatabase(w.client, { output: out, txid, integrityCheck: false });
  assert.equal(integrityCheck(out), "ok");
  const d = databaseDigest(out);
  await Deno.remove(out);
  return d;
}

async function localHeader(rep: DbReplicator): Promise<LtxHeader> {
  const f = rep.queue.newestL0();
  assert.ok(f, "a local L0 file exists");
  return (await verifyLtx(await Deno.readFile(f.path), f.path)).header;
}

async function assertReplicaMatches(w: World): Promise<void> {
  const files = await w.client.allLtxFiles();
  assert.deepEqual(chainProblems(files), []);
  await verifyReplicaFiles(w.client);
  assert.equal(await restoredDigest(w), databaseDigest(w.app));
}

Deno.test("first sync is a full TXID-1 file, later syncs are incremental, and the replica restores to the source", async () => {
  const w = await world();
  try {
    w.insert(20, 5000);
    const rep = w.make();
    await rep.start();
    assert.equal(await rep.syncOnce(), 1);
    const h1 = await localHeader(rep);
    assert.equal(h1.minTXID, 1);
    assert.equal(h1.walOffset, 32);
    assert.ok(h1.walSize > 0);
    w.insert(3);
    assert.equal(await rep.syncOnce(), 2);
    const h2 = await localHeader(rep);
    assert.equal(h2.walOffset, h1.walOffset + h1.walSize, "the second file starts where the first ended");
    assert.equal(h2.walSalt1, h1.walSalt1);
    assert.equal(await rep.syncOnce(), 2, "no new commit, no new file");
    await rep.upload();
    assert.equal(rep.replicatedTxid, 2);
    assert.deepEqual(
      rep.queue.files(0).map((f) => f.maxTXID),
      [2],
      "uploaded files deleted except the newest",
    );
    assert.ok(w.events.some((e) => e.type === "sync" && e.txid === 2));
    assert.ok(w.events.some((e) => e.type === "upload" && e.maxTXID === 2 && e.level === 0));
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("walrust's PASSIVE checkpoint restarts the WAL and the stream continues incrementally from offset 32", async () => {
  const w = await world();
  try {
    w.insert(50, 3000);
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    const before = await localHeader(rep);
    const r = await rep.checkpoint("PASSIVE");
    assert.ok(r && !r.busy && r.checkpointed === r.log, `checkpoint completed: ${JSON.stringify(r)}`);
    assert.ok(w.events.some((e) => e.type === "checkpoint" && e.mode === "passive"));
    w.insert(2);
    const txid = await rep.syncOnce();
    const after = await localHeader(rep);
    assert.equal(after.maxTXID, txid);
    assert.equal(after.walOffset, 32, "continues at the start of the new WAL generation");
    assert.notEqual(after.walSalt1, before.walSalt1, "new salts");
    assert.ok(after.commit > 10);
    const { pages } = await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "after");
    assert.ok(pages < 10, `incremental, not a full copy (${pages} pages of ${after.commit})`);
    // The application truncates the (fully copied) WAL while walrust holds read lock 0, then writes again.
    await rep.checkpoint("PASSIVE");
    const t = w.app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
    w.insert(2);
    await rep.syncOnce();
    const last = await localHeader(rep);
    const lastPages = (await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "last")).pages;
    assert.equal(t.busy, 0, "with walrust on read lock 0 a fully copied WAL can be truncated");
    assert.ok(lastPages < 10, `benign restart shipped incrementally (${lastPages} pages)`);
    assert.equal(last.walOffset, 32);
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("an application TRUNCATE checkpoint cannot remove frames walrust has not shipped", async () => {
  const w = await world();
  try {
    w.insert(10);
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    w.insert(30, 2000); // not yet read by walrust
    const r = w.app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
    assert.equal(r.busy, 1, "the read lock keeps the WAL from being truncated");
    const passive = w.app.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as { busy: number };
    assert.equal(typeof passive.busy, "number");
    w.insert(5);
    await rep.syncOnce();
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("a WAL restarted while walrust was stopped gives a full L0 at the next TXID, never TXID 1 again", async () => {
  const w = await world();
  try {
    w.insert(10, 1000);
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    w.insert(2);
    await rep.syncOnce();
    await rep.upload();
    await rep.stop({ flushTimeoutMs: 0 });
    w.insert(5);
    const ck = w.app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
    assert.equal(ck.busy, 0);
    w.insert(5, 500);
    rep = w.make();
    await rep.start();
    assert.equal(rep.txid, 2, "position taken from the newest local file");
    assert.equal(await rep.syncOnce(), 3);
    const h = await localHeader(rep);
    const { pages } = await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "full");
    assert.equal(pages, h.commit, "every page: a full file");
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("frames checkpointed and overwritten before walrust read them are recovered with a full file", async () => {
  const w = await world();
  try {
    w.insert(10, 1000);
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload();
    await rep.stop({ flushTimeoutMs: 0 });
    w.insert(7, 700); // frames walrust never reads as frames
    const ck = w.app.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as { log: number; checkpointed: number };
    assert.equal(ck.checkpointed, ck.log, "fully copied into the database file");
    rep = w.make();
    await rep.start(); // same WAL generation: the position is valid, but the WAL is fully checkpointed
    w.insert(1); // the application restarts the WAL over the unread frames
    assert.equal(await rep.syncOnce(), 2);
    const h = await localHeader(rep);
    const { pages } = await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "full");
    assert.equal(pages, h.commit, "a full file: the lost frames are in the database file");
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("a restart of walrust in the same WAL generation continues incrementally", async () => {
  const w = await world();
  try {
    w.insert(40, 1000);
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.stop({ flushTimeoutMs: 0 }); // nothing uploaded: the file stays queued
    w.insert(2);
    rep = w.make();
    await rep.start();
    assert.equal(await rep.syncOnce(), 2);
    const { pages } = await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "incr");
    assert.ok(pages < 5, `incremental after restart (${pages} pages)`);
    await rep.upload();
    assert.equal(rep.replicatedTxid, 2);
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("stop with no other connection open leaves the WAL: the restart ships nothing, later writes are incremental", async () => {
  const w = await world();
  try {
    w.insert(40, 1000);
    w.app.close(); // walrust's connection is now the last one: closing it would checkpoint and delete the WAL
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload();
    await rep.stop({ flushTimeoutMs: 0 });
    assert.ok(Deno.statSync(`${w.path}-wal`).size > 32, "the WAL is still there");
    const before = (await w.client.allLtxFiles()).map((f) => f.key);
    rep = w.make();
    await rep.start();
    assert.equal(await rep.syncOnce(), 1, "position found in the WAL: no new file");
    await rep.upload();
    assert.deepEqual((await w.client.allLtxFiles()).map((f) => f.key), before);
    const app = new DatabaseSync(w.path);
    try {
      app.exec("INSERT INTO t (v) VALUES ('after the restart')");
      assert.equal(await rep.syncOnce(), 2);
      const { pages } = await verifyLtx(await Deno.readFile(rep.queue.newestL0()!.path), "incr");
      assert.ok(pages < 5, `incremental (${pages} pages)`);
      await rep.upload();
      assert.equal(await restoredDigest(w), databaseDigest(app));
    } finally {
      app.close();
    }
  } finally {
    await w.close();
  }
});

Deno.test("an idle database is not re-read while its WAL is unchanged, and the next write still ships", async () => {
  const w = await world();
  try {
    w.insert(5);
    const rep = w.make({ background: true });
    await rep.start();
    await waitUntil(() => rep.replicatedTxid >= 1 && rep.queue.files(9).length === 0, 10_000, "first upload");
    w.insert(3);
    await waitUntil(() => rep.replicatedTxid >= 2, 10_000, "the insert to ship");
    // Quiet for longer than WAL_QUIET_MS: from now on a tick stats the WAL and finds it unchanged.
    await new Promise((r) => setTimeout(r, 1300));
    const reads = rep.walReads;
    await new Promise((r) => setTimeout(r, 400)); // several 50 ms ticks
    assert.equal(rep.walReads, reads, "idle ticks did not read the WAL");
    const txid = rep.txid;
    w.insert(2);
    await waitUntil(() => rep.replicatedTxid > txid, 10_000, "the next write to ship");
    assert.ok(rep.walReads > reads);
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("with no local state, TXIDs continue after the replica's newest TXID with a full file", async () => {
  const w = await world();
  try {
    w.insert(10);
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    w.insert(1);
    await rep.syncOnce();
    await rep.upload();
    await rep.stop({ flushTimeoutMs: 0 });
    await Deno.remove(`${w.dir}/.app.db-walrust`, { recursive: true }); // a new machine
    w.insert(3);
    rep = w.make();
    await rep.start();
    assert.equal(rep.txid, 2);
    assert.equal(await rep.syncOnce(), 3);
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("local files that do not continue the replica's chain are replaced by a full file", async () => {
  const w = await world();
  try {
    w.insert(10);
    let rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload(); // replica: 1
    for (let i = 0; i < 3; i++) {
      w.insert(1);
      await rep.syncOnce(); // local only: 2, 3, 4
    }
    await rep.stop({ flushTimeoutMs: 0, finalSync: false });
    const gone = rep.queue.files(0).find((f) => f.maxTXID === 3)!;
    await Deno.remove(gone.path);
    rep = w.make();
    await rep.start();
    assert.equal(rep.txid, 1, "rebased on the replica's TXID");
    assert.equal(await rep.syncOnce(), 2);
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("a queued file damaged on disk is never uploaded: the queue is rebuilt with a full file", async () => {
  const w = await world();
  try {
    w.insert(10);
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload();
    w.insert(20, 3000);
    await rep.syncOnce();
    const f = rep.queue.newestL0()!;
    const bytes = await Deno.readFile(f.path);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await Deno.writeFile(f.path, bytes);
    await rep.upload();
    assert.ok(w.events.some((e) => e.type === "error" && e.errorClass === "corruption"));
    const h = await localHeader(rep);
    assert.equal(h.maxTXID, 2);
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("snapshot() writes 1-T holding the database at TXID T", async () => {
  const w = await world();
  try {
    w.insert(30, 2000);
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    w.insert(5);
    const t = await rep.snapshot();
    assert.equal(t, 2, "the snapshot syncs first, so it is at the newest TXID");
    const snap = rep.queue.files(9);
    assert.deepEqual(snap.map((f) => [f.minTXID, f.maxTXID]), [[1, 2]]);
    await rep.upload();
    assert.deepEqual(rep.queue.files(9), [], "uploaded snapshots leave the queue");
    const files = await w.client.allLtxFiles();
    assert.ok(files.some((f) => f.level === 9 && f.maxTXID === 2));
    // Restore from the snapshot alone (its L0 files removed): equal to the source.
    await w.client.deleteLtxFiles(files.filter((f) => f.level === 0));
    assert.equal(await restoredDigest(w), databaseDigest(w.app));
    assert.ok(w.events.some((e) => e.type === "snapshot" && e.txid === 2));
  } finally {
    await w.close();
  }
});

/** Inserts ~`mb` MB of random (incompressible) blobs in one transaction: LTX files of about that size. */
function insertRandom(app: DatabaseSync, mb: number): void {
  const st = app.prepare("INSERT INTO t (v, b) VALUES (?, ?)");
  app.exec("BEGIN");
  for (let i = 0; i < mb * 256; i++) st.run(`big ${i}`, crypto.getRandomValues(new Uint8Array(4000)));
  app.exec("COMMIT");
}

for (const backend of ["directory", "store without putFile"] as const) {
  Deno.test(`a snapshot larger than STREAMED_SHIP_BYTES is verified and shipped from disk (${backend})`, async () => {
    const w = await world(backend === "directory" ? undefined : () => new MemoryObjectStore("s3"));
    try {
      insertRandom(w.app, 10);
      const rep = w.make();
      await rep.start();
      await rep.syncOnce();
      await rep.upload();
      const t = await rep.snapshot();
      const [snap] = rep.queue.files(9);
      assert.ok(snap.size > STREAMED_SHIP_BYTES, `${snap.size} bytes`);
      assert.ok(!snap.bytes, "a large snapshot is queued on disk");
      const local = await Deno.readFile(snap.path);
      await rep.upload();
      assert.deepEqual(rep.queue.files(9), []);
      const remote = await w.client.readLtxFile(9, 1, t);
      assert.deepEqual(remote, local);
      if (backend === "directory") {
        // The digests recorded beside the file are the file's (computed while it was verified).
        const path = w.store.localPath!(w.client.ltxKey(9, 1, t));
        assert.deepEqual(recordedDigests(path), { sha256: await sha256Hex(local), crc64: crc64(local) });
      } else {
        const head = await w.store.head(w.client.ltxKey(9, 1, t));
        assert.equal(head?.metadata.sha256, await sha256Hex(local));
      }
      assert.ok(w.events.some((e) => e.type === "upload" && e.level === 9 && e.bytes === snap.size));
      // Restore from the snapshot alone: equal to the source.
      const files = await w.client.allLtxFiles();
      await w.client.deleteLtxFiles(files.filter((f) => f.level === 0));
      assert.equal(await restoredDigest(w), databaseDigest(w.app));
    } finally {
      await w.close();
    }
  });
}

Deno.test("a large queued file damaged on disk is caught while it streams and never uploaded", async () => {
  const w = await world();
  try {
    w.insert(10);
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload();
    insertRandom(w.app, 10);
    // Stop the uploader from seeing the file before it is damaged: queue it, damage it, then upload.
    await rep.syncOnce();
    const f = rep.queue.newestL0()!;
    assert.ok(f.size > STREAMED_SHIP_BYTES && !f.bytes, `${f.size} bytes on disk`);
    const file = await Deno.open(f.path, { read: true, write: true });
    await file.seek(Math.floor(f.size / 2), Deno.SeekMode.Start);
    const b = new Uint8Array(1);
    await file.read(b);
    await file.seek(Math.floor(f.size / 2), Deno.SeekMode.Start);
    await file.write(new Uint8Array([b[0] ^ 0xff]));
    file.close();
    const damaged = await Deno.readFile(f.path);
    await rep.upload();
    assert.ok(w.events.some((e) => e.type === "error" && e.errorClass === "corruption"));
    // The damaged bytes never reached the replica; the rebuilt queue restores to the source.
    for (const r of await w.client.allLtxFiles()) {
      if (r.size !== damaged.length) continue;
      assert.notDeepEqual(await w.client.readLtxFile(r.level, r.minTXID, r.maxTXID), damaged);
    }
    await rep.syncOnce();
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

/** Delegates to a store, failing `put` while `fail` returns an error. */
class FlakyStore implements ObjectStore {
  readonly kind: "file" | "s3";
  readonly displayUrl: string;
  fail: () => Error | null = () => null;
  constructor(readonly inner: ObjectStore) {
    this.kind = inner.kind;
    this.displayUrl = inner.displayUrl;
  }
  get localPath() {
    return this.inner.localPath?.bind(this.inner);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  getStream(key: string) {
    return this.inner.getStream(key);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  put(key: string, body: Uint8Array, options?: PutOptions) {
    const e = key.endsWith(".ltx") ? this.fail() : null;
    return e ? Promise.reject(e) : this.inner.put(key, body, options);
  }
  delete(keys: string[]) {
    return this.inner.delete(keys);
  }
  close() {
    this.inner.close();
  }
}

Deno.test("while the replica fails, files queue up and then drain in TXID order", async () => {
  let flaky!: FlakyStore;
  const w = await world((dir) => (flaky = new FlakyStore(new FileObjectStore(`${dir}/replica`))));
  try {
    let failures = 0;
    flaky.fail = () => failures++ < 4 ? new ConnectionError("replica unreachable (test)") : null;
    w.insert(10);
    const rep = w.make({ background: true, uploader: { minBackoffMs: 20, maxBackoffMs: 50, idleMs: 20 } });
    await rep.start();
    for (let i = 0; i < 5; i++) {
      w.insert(3, 100);
      await rep.syncOnce();
    }
    await waitUntil(() => rep.replicatedTxid === rep.txid, 10_000, "the queue to drain");
    assert.ok(w.events.filter((e) => e.type === "upload_failed").length >= 1);
    const uploads = w.events.filter((e) => e.type === "upload" && e.level === 0).map((e) =>
      e.type === "upload" ? e.maxTXID : 0
    );
    assert.deepEqual(uploads, [...uploads].sort((a, b) => a - b), "uploaded in TXID order");
    assert.equal(rep.status().lagSeconds, 0);
    await rep.stop({ flushTimeoutMs: 1000 });
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("rejected credentials: auth_failure once, the queue is kept, and it drains once fixed", async () => {
  let flaky!: FlakyStore;
  const w = await world((dir) => (flaky = new FlakyStore(new FileObjectStore(`${dir}/replica`))));
  try {
    let broken = true;
    flaky.fail = () => broken ? new AuthError("replica rejected the credentials (test)") : null;
    w.insert(10);
    const rep = w.make({ background: true, uploader: { authBackoffMs: 100, idleMs: 20 } });
    await rep.start();
    await waitUntil(() => w.events.some((e) => e.type === "upload_failed"), 5000, "a failed upload");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(w.events.filter((e) => e.type === "auth_failure").length, 1, "reported once per change");
    assert.equal(rep.status().state, "error");
    assert.ok(rep.status().queueFiles >= 1);
    broken = false;
    await waitUntil(() => rep.replicatedTxid === rep.txid && rep.txid > 0, 5000, "the queue to drain");
    await rep.stop({ flushTimeoutMs: 1000 });
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("a full queue stops reading new frames (they stay in the WAL) until it drains", async () => {
  const w = await world();
  try {
    w.insert(10);
    const rep = w.make({}, { queueMaxBytes: 1 });
    await rep.start();
    assert.equal(await rep.syncOnce(), 1, "an empty queue accepts one file");
    w.insert(5);
    assert.equal(await rep.syncOnce(), 1, "queue over its limit: nothing read");
    assert.ok(w.events.some((e) => e.type === "queue" && e.limitBytes === 1));
    await rep.upload();
    assert.equal(await rep.syncOnce(), 2, "drained: the frames are read now");
    await rep.upload();
    await assertReplicaMatches(w);
  } finally {
    await w.close();
  }
});

Deno.test("a second replicator of the same database gets ConflictError (exit 11) naming the process", async () => {
  const w = await world();
  try {
    const a = w.make();
    await a.start();
    const b = w.make({ lockHint: "; hint" });
    await assert.rejects(() => b.start(), (err: unknown) => {
      assert.ok(err instanceof ConflictError);
      assert.equal(err.exitCode, ExitCode.CONFLICT);
      assert.match(err.message, new RegExp(`being replicated by process ${Deno.pid}.*; hint`));
      return true;
    });
  } finally {
    await w.close();
  }
});

Deno.test("two databases with the same name on one replica: the lease refuses the second", async () => {
  const w = await world();
  const other = await Deno.makeTempDir({ prefix: "walrust-db-test-" });
  try {
    const a = w.make();
    await a.start();
    const db2 = new DatabaseSync(`${other}/app.db`);
    db2.exec("PRAGMA journal_mode=WAL; CREATE TABLE x (a)");
    db2.close();
    const b = new DbReplicator(settingsFor(`${other}/app.db`), w.client, w.bus, { background: false });
    await assert.rejects(() => b.start(), ConflictError);
  } finally {
    await w.close();
    await Deno.remove(other, { recursive: true });
  }
});

Deno.test("a database that is not in WAL mode is refused with DatabaseError (exit 3)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-db-test-" });
  try {
    const path = `${dir}/rollback.db`;
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE x (a)");
    db.close();
    const rep = new DbReplicator(
      settingsFor(path),
      new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app"),
      new EventBus(),
      { background: false },
    );
    await assert.rejects(() => rep.start(), (err: unknown) => {
      assert.ok(err instanceof DatabaseError);
      assert.equal(err.exitCode, ExitCode.DATABASE);
      assert.match(err.message, /not in WAL mode/);
      return true;
    });
    await assert.rejects(
      () =>
        new DbReplicator(
          settingsFor(`${dir}/missing.db`),
          new ReplicaClient(new MemoryObjectStore(), "m"),
          new EventBus(),
        )
          .start(),
      DatabaseError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an object-store lease left by a killed walrust of the same database is taken over; another's is not", async () => {
  const mem = new MemoryObjectStore("s3");
  const w = await world(() => mem);
  try {
    const own = {
      owner: `walrust for ${w.path}`,
      pid: 1,
      host: Deno.hostname(),
      token: "old",
      expiresAt: "",
    };
    own.expiresAt = new Date(Date.now() + 60_000).toISOString();
    await mem.put(leaseKey("app"), new TextEncoder().encode(JSON.stringify(own)));
    const rep = w.make();
    await rep.start();
    await rep.syncOnce();
    await rep.upload();
    await rep.stop({ flushTimeoutMs: 0 });
    const foreign = { ...own, owner: "walrust for /elsewhere/app.db", token: "other" };
    await mem.put(leaseKey("app"), new TextEncoder().encode(JSON.stringify(foreign)));
    await assert.rejects(() => w.make().start(), ConflictError);
  } finally {
    await w.close();
  }
});

Deno.test("status() reports positions, queue and state", async () => {
  const w = await world();
  try {
    w.insert(5);
    const rep = w.make();
    assert.equal(rep.status().state, "starting");
    await rep.start();
    await rep.syncOnce();
    let s = rep.status();
    assert.equal(s.txid, 1);
    assert.equal(s.replicatedTxid, 0);
    assert.equal(s.queueFiles, 1);
    assert.ok(s.lagSeconds >= 0);
    assert.equal(s.state, "syncing");
    await rep.upload();
    s = rep.status();
    assert.equal(s.replicatedTxid, 1);
    assert.equal(s.queueFiles, 0);
    assert.equal(s.lagSeconds, 0);
    await rep.stop({ flushTimeoutMs: 0 });
    assert.equal(rep.status().state, "stopped");
  } finally {
    await w.close();
  }
});
