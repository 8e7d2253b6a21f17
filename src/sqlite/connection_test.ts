import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { DatabaseError, ExitCode } from "../errors.ts";
import { isBusyError, ReplicationConnection } from "./connection.ts";
import { readDbHeader } from "./db_header.ts";
import { readCommittedFrames, readPage, readWalHeader, type WalPosition, type WalReadResult } from "./wal.ts";
import { ALL_OPS, readWriterLog, spawnWriter, TestWriter } from "../../tests/support/writer.ts";
import { databaseDigest, integrityCheck } from "../../tests/support/sqlite_state.ts";

async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-conn-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function isDbError(re: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof DatabaseError, `expected DatabaseError, got ${e}`);
    assert.equal(e.exitCode, ExitCode.DATABASE);
    assert.match(e.message, re);
    return true;
  };
}

/** Creates a WAL-mode database with the writer's tables; its WAL is gone afterwards (last connection closed). */
function createDb(path: string): void {
  TestWriter.open(path, { digest: false }).close();
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return -1;
    throw err;
  }
}

/** Applies a read's committed pages to `copyPath` (a replica of the database file): what a restore does. */
async function applyPages(copyPath: string, walPath: string, r: Extract<WalReadResult, { kind: "ok" }>) {
  if (r.pages.size === 0 && r.commit === 0) return;
  const wal = await Deno.open(walPath, { read: true });
  const out = await Deno.open(copyPath, { write: true });
  try {
    for (const [pgno, off] of r.pages) {
      const page = await readPage(wal, off, r.header.pageSize);
      await out.seek((pgno - 1) * r.header.pageSize, Deno.SeekMode.Start);
      let n = 0;
      while (n < page.length) n += await out.write(page.subarray(n));
    }
    if (r.commit > 0) await out.truncate(r.commit * r.header.pageSize);
  } finally {
    wal.close();
    out.close();
  }
}

Deno.test("connection: a missing path, a directory and a non-SQLite file are DatabaseErrors", async () => {
  await withTempDir(async (dir) => {
    assert.throws(() => ReplicationConnection.open(`${dir}/nope.db`), isDbError(/nope\.db does not exist/));
    await Deno.mkdir(`${dir}/d.db`);
    assert.throws(() => ReplicationConnection.open(`${dir}/d.db`), isDbError(/d\.db is not a file/));
    await Deno.writeTextFile(`${dir}/text.db`, "just some text, certainly not SQLite\n".repeat(5));
    assert.throws(
      () => ReplicationConnection.open(`${dir}/text.db`),
      isDbError(/text\.db is not a SQLite database/),
    );
    await Deno.writeFile(`${dir}/empty.db`, new Uint8Array(0));
    assert.throws(() => ReplicationConnection.open(`${dir}/empty.db`), isDbError(/empty\.db is empty/));
  });
});

Deno.test("connection: a rollback-journal database is refused and left unchanged", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/journal.db`;
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (1);");
    db.close();
    const before = await Deno.readFile(path);
    assert.throws(
      () => ReplicationConnection.open(path),
      isDbError(/journal\.db is not in WAL mode; run PRAGMA journal_mode=WAL/),
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.equal((await readDbHeader(path)).walMode, false);
    assert.equal(await fileSize(`${path}-wal`), -1);
  });
});

Deno.test("connection: open creates _walrust_seq; neither walrust connection autocheckpoints", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    // The application: no autocheckpoint, ~1200 WAL pages, so any autocheckpoint (default 1000) would copy them.
    const app = new DatabaseSync(path);
    app.exec("PRAGMA wal_autocheckpoint=0; INSERT INTO blobs (data) VALUES (randomblob(4800000));");
    const dbSize = await fileSize(path);
    const conn = ReplicationConnection.open(path);
    try {
      assert.equal(conn.walPath, `${path}-wal`);
      assert.equal(conn.pageSize(), 4096);
      assert.ok(app.prepare("SELECT 1 FROM sqlite_master WHERE name = '_walrust_seq'").get());
      assert.equal(conn.bumpSeq(), true);
      assert.equal(conn.bumpSeq(), true);
      assert.equal(
        (app.prepare("SELECT seq FROM _walrust_seq WHERE id = 1").get() as { seq: number }).seq,
        2,
      );
      // Both commits above (CREATE TABLE on the main connection, bumpSeq on the second) left the file alone.
      assert.equal(await fileSize(path), dbSize);
      // The application's own connections keep SQLite's default.
      const other = new DatabaseSync(path);
      assert.equal(
        (other.prepare("PRAGMA wal_autocheckpoint").get() as { wal_autocheckpoint: number })
          .wal_autocheckpoint,
        1000,
      );
      other.close();
      // Reopening with the table present needs no write.
      const again = ReplicationConnection.open(path);
      again.close();
    } finally {
      conn.close();
      app.close();
    }
  });
});

Deno.test("connection: bumpSeq gives an empty WAL a header and a frame", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const conn = ReplicationConnection.open(path);
    try {
      assert.equal(conn.checkpoint("TRUNCATE").busy, false);
      assert.equal(await fileSize(conn.walPath), 0);
      assert.equal(await readWalHeader(conn.walPath), null);
      assert.equal(conn.bumpSeq(), true);
      const h = await readWalHeader(conn.walPath);
      assert.ok(h);
      const r = await readCommittedFrames(conn.walPath, null);
      assert.equal(r.kind, "ok");
      assert.ok(r.kind === "ok" && r.frames >= 1 && r.commit >= 1);
    } finally {
      conn.close();
    }
  });
});

Deno.test("connection: with the read lock held an application PASSIVE checkpoint loses no unread frame", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const copy = `${dir}/copy.db`;
    await Deno.copyFile(path, copy);
    const conn = ReplicationConnection.open(path);
    const app = TestWriter.open(path, { autocheckpoint: 0, seed: 3, mix: ["inserts", "updates", "blobs"] });
    try {
      assert.equal(conn.bumpSeq(), true);
      conn.acquireReadLock();
      assert.equal(conn.hasReadLock, true);
      const h0 = await readWalHeader(conn.walPath);
      for (let i = 0; i < 20; i++) app.step();
      const ck = app.db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as {
        log: number;
        checkpointed: number;
      };
      // The checkpoint copied what our snapshot covers and stopped there.
      assert.ok(ck.checkpointed > 0, JSON.stringify(ck));
      assert.ok(ck.checkpointed < ck.log, JSON.stringify(ck));
      for (let i = 0; i < 10; i++) app.step();
      // The WAL was not restarted: same salts, and every frame since the start is still there.
      assert.deepEqual(await readWalHeader(conn.walPath), h0);
      const r = await readCommittedFrames(conn.walPath, null);
      assert.equal(r.kind, "ok");
      if (r.kind !== "ok") return;
      await applyPages(copy, conn.walPath, r);
      assert.equal(databaseDigest(copy), databaseDigest(app.db));
      assert.equal(integrityCheck(copy), "ok");
    } finally {
      app.close();
      conn.close();
    }
  });
});

Deno.test("connection: page sizes 512 and 65536 — committed WAL pages rebuild the database", async () => {
  await withTempDir(async (dir) => {
    for (const pageSize of [512, 65536]) {
      const path = `${dir}/p${pageSize}.db`;
      TestWriter.open(path, { pageSize, digest: false }).close();
      const copy = `${dir}/p${pageSize}-copy.db`;
      await Deno.copyFile(path, copy);
      const conn = ReplicationConnection.open(path);
      const mix = ALL_OPS.filter((op) => op !== "checkpoint"); // (a TRUNCATE would just wait for our lock)
      const app = TestWriter.open(path, { autocheckpoint: 0, seed: pageSize, mix });
      try {
        assert.equal(conn.pageSize(), pageSize);
        conn.bumpSeq();
        conn.acquireReadLock();
        let pos: WalPosition | null = null;
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < 8; i++) app.step();
          const r = await readCommittedFrames(conn.walPath, pos);
          assert.equal(r.kind, "ok");
          if (r.kind !== "ok") return;
          assert.equal(r.header.pageSize, pageSize);
          await applyPages(copy, conn.walPath, r);
          pos = r.end;
          assert.equal(databaseDigest(copy), databaseDigest(app.db), `page size ${pageSize}, round ${round}`);
        }
      } finally {
        app.close();
        conn.close();
      }
    }
  });
});

Deno.test("connection: an application TRUNCATE is busy while the read lock is held, and works after release", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const conn = ReplicationConnection.open(path);
    const app = TestWriter.open(path, { autocheckpoint: 0, digest: false });
    try {
      conn.bumpSeq();
      conn.acquireReadLock();
      for (let i = 0; i < 5; i++) app.step("inserts");
      const first = await readCommittedFrames(conn.walPath, null);
      assert.equal(first.kind, "ok");
      const pos: WalPosition = (first as Extract<WalReadResult, { kind: "ok" }>).end;
      const walBytes = await fileSize(conn.walPath);
      app.db.exec("PRAGMA busy_timeout=50");
      const busy = app.db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number };
      assert.equal(busy.busy, 1);
      assert.equal(await fileSize(conn.walPath), walBytes);
      const still = await readCommittedFrames(conn.walPath, pos);
      assert.equal(still.kind, "ok");

      conn.releaseReadLock();
      assert.equal(conn.hasReadLock, false);
      const done = app.db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number; log: number };
      assert.deepEqual([done.busy, done.log], [0, 0]);
      assert.equal(await fileSize(conn.walPath), 0);
      assert.deepEqual(await readCommittedFrames(conn.walPath, pos), { kind: "restarted", header: null });
      app.step("inserts");
      const after = await readCommittedFrames(conn.walPath, pos);
      assert.equal(after.kind, "restarted");
      assert.ok(after.header && after.header.salt1 !== pos.salt1);
    } finally {
      app.close();
      conn.close();
    }
  });
});

Deno.test("connection: checkpoint() releases and re-takes the read lock; TRUNCATE empties the WAL", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const conn = ReplicationConnection.open(path);
    const app = TestWriter.open(path, { autocheckpoint: 0, digest: false });
    try {
      conn.bumpSeq();
      conn.acquireReadLock();
      for (let i = 0; i < 5; i++) app.step("inserts");
      const p = conn.checkpoint("PASSIVE");
      assert.equal(p.busy, false);
      assert.ok(p.log > 0 && p.checkpointed === p.log, JSON.stringify(p));
      assert.equal(conn.hasReadLock, true);
      conn.releaseReadLock();
      const t = conn.checkpoint("TRUNCATE");
      assert.deepEqual(t, { busy: false, log: 0, checkpointed: 0 });
      assert.equal(conn.hasReadLock, false);
      assert.equal(await fileSize(conn.walPath), 0);
      // Another reader in the way: TRUNCATE reports busy instead of throwing.
      app.step("inserts");
      const other = new DatabaseSync(path);
      other.exec("BEGIN");
      other.prepare("SELECT COUNT(*) FROM items").get();
      app.step("inserts");
      assert.equal(conn.checkpoint("TRUNCATE").busy, true);
      other.exec("COMMIT");
      other.close();
      assert.throws(() => conn.checkpoint("RESTART" as "PASSIVE"), RangeError);
    } finally {
      app.close();
      conn.close();
    }
  });
});

Deno.test("connection: the write barrier holds off application writers and lets PASSIVE complete", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const conn = ReplicationConnection.open(path);
    const app = new DatabaseSync(path, { timeout: 50 });
    try {
      app.exec("INSERT INTO items (k) VALUES ('a')");
      conn.acquireReadLock();
      assert.equal(conn.writeBarrier(), true);
      assert.equal(conn.hasBarrier, true);
      assert.throws(() => app.exec("INSERT INTO items (k) VALUES ('b')"), (e) => isBusyError(e));
      assert.throws(() => conn.bumpSeq(), /barrier/);
      // PASSIVE does not need the write lock: with the barrier held it copies everything.
      const p = conn.checkpoint("PASSIVE");
      assert.equal(p.busy, false);
      assert.equal(p.checkpointed, p.log);
      // TRUNCATE does need it.
      assert.equal(conn.checkpoint("TRUNCATE").busy, true);
      assert.equal(conn.hasReadLock, true);
      conn.releaseBarrier();
      assert.equal(conn.hasBarrier, false);
      app.exec("INSERT INTO items (k) VALUES ('b')");
      // The application holds the write lock: barrier and bumpSeq report busy instead of throwing.
      app.exec("BEGIN IMMEDIATE");
      assert.equal(conn.writeBarrier(), false);
      assert.equal(conn.bumpSeq(), false);
      app.exec("COMMIT");
      assert.equal(conn.bumpSeq(), true);
    } finally {
      app.close();
      conn.close();
    }
  });
});

Deno.test("connection: close is idempotent and releases the locks", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/a.db`;
    createDb(path);
    const conn = ReplicationConnection.open(path);
    conn.bumpSeq();
    conn.acquireReadLock();
    conn.writeBarrier();
    conn.close();
    conn.close();
    assert.throws(() => conn.acquireReadLock(), isDbError(/closed/));
    const app = new DatabaseSync(path, { timeout: 50 });
    try {
      app.exec("INSERT INTO items (k) VALUES ('x')");
      assert.equal((app.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as { busy: number }).busy, 0);
    } finally {
      app.close();
    }
  });
});

Deno.test("connection: live — a writer process with app checkpoints, autocheckpoint and VACUUM; every frame is read", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/live.db`;
    const log = `${dir}/writer.jsonl`;
    createDb(path);
    const copy = `${dir}/copy.db`;
    await Deno.copyFile(path, copy);
    const conn = ReplicationConnection.open(path);
    let pos: WalPosition | null = null;
    let expectRestart = false;
    let restarts = 0;
    let checkpoints = 0;
    let frames = 0;
    // One sync: read every committed frame after `pos` and apply it to the copy.
    const sync = async (): Promise<void> => {
      for (let guard = 0; guard < 1000; guard++) {
        const r = await readCommittedFrames(conn.walPath, pos, { maxBytes: 256 * 1024 });
        if (r.kind === "restarted") {
          // Only our own checkpoint (everything shipped, barrier held) may restart the WAL under our read lock.
          assert.ok(pos === null || expectRestart, "the WAL restarted under the read lock");
          if (!r.header) return; // truncated, not rewritten yet
          pos = null;
          expectRestart = false;
          restarts++;
          continue;
        }
        await applyPages(copy, conn.walPath, r);
        frames += r.frames;
        pos = r.end;
        if (!r.more) return;
      }
    };
    conn.bumpSeq();
    conn.acquireReadLock();
    const writer = spawnWriter(path, { count: 120, rate: 200, seed: 11, mix: ALL_OPS, log });
    try {
      await writer.ready;
      let running = true;
      writer.status.then(() => (running = false));
      let sinceCheckpoint = 0;
      while (running) {
        await sync();
        // The barrier is often busy (the writer's TRUNCATEs hold the write lock while they wait for our read
        // lock), so keep trying every iteration once one is due.
        if (++sinceCheckpoint >= 8 && conn.writeBarrier()) {
          sinceCheckpoint = 0;
          // Litestream's PASSIVE procedure: sync under the barrier, checkpoint, re-lock, release the barrier.
          try {
            await sync();
            conn.checkpoint("PASSIVE");
            expectRestart = true;
            checkpoints++;
          } finally {
            conn.releaseBarrier();
          }
        }
        await new Promise((r) => setTimeout(r, 15));
      }
      assert.equal((await writer.status).code, 0);
      await sync();
      const records = await readWriterLog(log);
      const last = records[records.length - 1];
      assert.equal(last.seq, 120);
      assert.equal(databaseDigest(copy), last.digest);
      assert.equal(databaseDigest(path), last.digest);
      assert.equal(integrityCheck(copy), "ok");
      assert.ok(frames > 120, `frames ${frames}`);
      // Application TRUNCATEs meet our read lock and report busy. (A few may legitimately succeed: when it
      // queued behind our barrier, our PASSIVE had already copied every frame — all shipped — and a read lock
      // taken on a fully copied WAL does not stop a restart. The digest check above is the real invariant.)
      const truncates = records.filter((r) => r.checkpoint?.mode === "TRUNCATE");
      assert.ok(truncates.length > 0, "the writer made no TRUNCATE checkpoint");
      assert.ok(truncates.some((t) => t.checkpoint?.busy), JSON.stringify(truncates));
      assert.ok(records.some((r) => r.op === "vacuum"));
      assert.ok(records.some((r) => r.op === "schema"));
      // Our own checkpoints let the next application write restart the WAL, and the reader followed.
      assert.ok(checkpoints > 0 && restarts > 0, `checkpoints ${checkpoints}, restarts ${restarts}`);
    } finally {
      await writer.kill();
      conn.close();
    }
  });
});
