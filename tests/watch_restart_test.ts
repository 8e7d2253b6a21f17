/**
 * A graceful stop and restart of `walrust watch` (real processes, SIGTERM) resumes incrementally: walrust
 * leaves the WAL in place when it is the last connection to close (src/sqlite/connection.ts `keepWal`), so the
 * next start finds its position in it. With no writes in between the restart ships nothing; with writes in
 * between nothing is lost, whether the application kept its connection open (incremental) or closed it last
 * (SQLite then checkpoints and deletes the WAL: a full copy). After kill -9 the position comes from the
 * replica's newest file (files shipped from memory never reached the local disk).
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { restoreDatabase } from "../src/restore/restore.ts";
import { spawnWalrust, verifyReplicaFiles, waitUntil } from "../src/replicate/testing.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { type LtxFileInfo, ReplicaClient } from "../src/storage/replica_client.ts";
import { databaseDigest } from "./support/sqlite_state.ts";

/** Runs `watch` until it logs `watching`, lets it sync for `ms`, stops it with SIGTERM; returns its log. */
async function watchFor(db: string, replica: string, ms: number): Promise<string> {
  const p = spawnWalrust(["watch", db, "-b", replica, "--no-metrics", "--sync-interval", "100ms"]);
  try {
    await waitUntil(() => /watching|walrust:/.test(p.log()), 30_000, "watch to start");
    assert.ok(p.log().includes("watching"), `watch failed to start:\n${p.log()}`);
    await new Promise((r) => setTimeout(r, ms));
  } finally {
    const code = await p.stop();
    assert.equal(code, 0, `watch exits 0 after SIGTERM:\n${p.log()}`);
  }
  return p.log();
}

function insert(db: DatabaseSync, n: number): void {
  const st = db.prepare("INSERT INTO t (v) VALUES (?)");
  db.exec("BEGIN");
  for (let i = 0; i < n; i++) st.run(`row ${i} ${"y".repeat(200)}`);
  db.exec("COMMIT");
}

/**
 * Digest of the source through a read-only connection: closing a read-write connection that is the last one
 * would checkpoint and delete the WAL, which is exactly what this test must not do by itself.
 */
function sourceDigest(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return databaseDigest(db);
  } finally {
    db.close();
  }
}

function keys(files: LtxFileInfo[]): string[] {
  return files.map((f) => f.key).sort();
}

Deno.test("watch restart: no writes → nothing shipped; writes with the app open → incremental; app closed last → full copy; kill -9 → resumes from the replica; nothing lost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restart-" });
  const path = `${dir}/app.db`;
  const replica = `${dir}/replica`;
  const store = new FileObjectStore(replica);
  const client = new ReplicaClient(store, "app");
  const restoredDigest = async (): Promise<string> => {
    const out = `${dir}/restored-${crypto.randomUUID()}.db`;
    await restoreDatabase(client, { output: out });
    try {
      return databaseDigest(out);
    } finally {
      await Deno.remove(out);
    }
  };
  try {
    let app = new DatabaseSync(path, { timeout: 5000 });
    app.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    insert(app, 200);
    app.close(); // walrust's connection will be the last one to close

    // 1. First run: a full copy (new replica), then a graceful stop. SQLite would have deleted the WAL here.
    const first = await watchFor(path, replica, 500);
    assert.match(first, /full copy/);
    assert.ok(Deno.statSync(`${path}-wal`).size > 32, "the WAL is still there after walrust stopped");
    const afterFirst = await client.allLtxFiles();
    assert.equal(await restoredDigest(), sourceDigest(path));
    assert.ok(Deno.statSync(`${path}-wal`).size > 32, "and after this test read the database");

    // 2. Restart with no writes in between: no full copy, no new file at all.
    const second = await watchFor(path, replica, 500);
    assert.doesNotMatch(second, /full copy/, second);
    assert.deepEqual(keys(await client.allLtxFiles()), keys(afterFirst), "nothing shipped");

    // 3. Writes while walrust is stopped, the application keeps its connection open across the restart.
    app = new DatabaseSync(path, { timeout: 5000 });
    insert(app, 50);
    const third = await watchFor(path, replica, 500);
    assert.doesNotMatch(third, /full copy/, third);
    const newer = (await client.allLtxFiles()).filter((f) => !keys(afterFirst).includes(f.key));
    assert.ok(newer.length > 0 && newer.every((f) => f.level === 0), "the writes shipped as new L0 files");
    assert.ok(newer.every((f) => f.size < 16 * 1024), `incremental files (${newer.map((f) => f.size)})`);
    assert.equal(await restoredDigest(), databaseDigest(app));

    // 4. Writes while walrust is stopped, then the application closes last: SQLite checkpoints and deletes
    // the WAL, so walrust cannot place the change and ships a full copy. Nothing is lost either way.
    insert(app, 30);
    app.close();
    assert.throws(() => Deno.statSync(`${path}-wal`), Deno.errors.NotFound);
    const fourth = await watchFor(path, replica, 500);
    assert.match(fourth, /full copy/);
    assert.equal(await restoredDigest(), sourceDigest(path));

    // 5. kill -9 after files were shipped from memory (they never reached the local disk): the restart takes
    // its position from the replica's newest file, incrementally, and loses nothing.
    app = new DatabaseSync(path, { timeout: 5000 });
    const maxTxid = async () => (await client.allLtxFiles()).reduce((m, f) => Math.max(m, f.maxTXID), 0);
    const before = await maxTxid();
    const p = spawnWalrust(["watch", path, "-b", replica, "--no-metrics", "--sync-interval", "100ms"]);
    try {
      await waitUntil(() => /watching|walrust:/.test(p.log()), 30_000, "watch to start");
      // The WAL was deleted in step 4: the first file is a full copy at before+1; the rows come after it.
      await waitUntil(async () => (await maxTxid()) > before, 10_000, "the full copy to ship");
      insert(app, 20);
      await waitUntil(async () => (await maxTxid()) > before + 1, 10_000, "the rows to ship");
    } finally {
      await p.kill9();
    }
    insert(app, 10); // while walrust is down
    const fifth = await watchFor(path, replica, 500);
    assert.match(fifth, /continuing from the replica's newest file/, fifth);
    assert.doesNotMatch(fifth, /full copy/, fifth);
    assert.equal(await restoredDigest(), databaseDigest(app));
    app.close();
    assert.ok((await verifyReplicaFiles(client)) > 0);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
