import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ConflictError } from "../errors.ts";
import { fileBatch, journalSet, type PageBatch, patchHeader, ReplicaDb, SimulatedCrash } from "./apply.ts";
import { parseJournal } from "./journal.ts";

/** A rollback-mode database at `path` with `rows` rows of ~300 bytes in table t (and an index). */
function makeDb(path: string, rows: number, tag: string, pageSize = 4096): void {
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA page_size=${pageSize}; PRAGMA journal_mode=DELETE`);
  db.exec(
    "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX IF NOT EXISTS t_v ON t(v)",
  );
  const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
  db.exec("BEGIN");
  for (let i = 0; i < rows; i++) ins.run(`${tag}-${i}-${"x".repeat(300)}`);
  db.exec("COMMIT");
  db.close();
}

function query(path: string, sql: string, readOnly = true): unknown {
  const db = new DatabaseSync(path, { readOnly });
  try {
    return db.prepare(sql).get();
  } finally {
    db.close();
  }
}

function integrity(path: string): string {
  return String(Object.values(query(path, "PRAGMA integrity_check") as Record<string, unknown>)[0]);
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "readreplica-apply-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The batch that turns the replica into a copy of `source` (what an in-place re-bootstrap applies). */
async function batchTo(replica: ReplicaDb, source: string): Promise<PageBatch> {
  const { pgnos, commit } = await replica.diff(source, 4096);
  return fileBatch(source, 4096, pgnos, commit);
}

Deno.test("this SQLite build has no sqlite_dbpage, which is why apply.ts writes a hot journal itself", () => {
  const db = new DatabaseSync(":memory:");
  try {
    assert.throws(() => db.prepare("SELECT count(*) FROM sqlite_dbpage").get(), /no such table/);
  } finally {
    db.close();
  }
});

Deno.test("journalSet: page 1, existing written pages, truncated pages, never the lock page", () => {
  assert.deepEqual(journalSet([3, 10, 12], 10, 12, 4096), [1, 3, 10]);
  assert.deepEqual(journalSet([2], 6, 4, 4096), [1, 2, 5, 6]);
  assert.deepEqual(journalSet([], 0, 3, 4096), []);
  // 1024-byte pages: 4 pages share a 4 KiB sector, so neighbours are journaled too.
  assert.deepEqual(journalSet([6], 10, 10, 1024), [1, 2, 3, 4, 5, 6, 7, 8]);
  // 512-byte pages: the lock page (PENDING_BYTE / 512 + 1) is skipped even when truncated away.
  const lock = 0x40000000 / 512 + 1;
  assert.ok(!journalSet([lock - 1], lock + 3, lock - 1, 512).includes(lock));
});

Deno.test("apply: replica becomes the new state in place; same inode, header in rollback mode, counter + 1", async () => {
  await withDir(async (dir) => {
    const a = `${dir}/a.db`;
    const b = `${dir}/b.db`;
    makeDb(a, 200, "a");
    makeDb(b, 200, "a");
    makeDb(b, 150, "b"); // b = a's rows plus more (the file grows)
    const inode = (await Deno.stat(a)).ino;
    const r = await ReplicaDb.open(a);
    try {
      const before = r.info();
      const res = await r.apply(await batchTo(r, b));
      assert.equal(res.previousChangeCounter, before.changeCounter);
      assert.equal(res.changeCounter, before.changeCounter + 1);
      assert.ok(res.pagesWritten > 0 && res.pagesWritten < r.info().pages);
      assert.equal(res.bytes, (await Deno.stat(b)).size);
    } finally {
      r.close();
    }
    assert.equal((await Deno.stat(a)).ino, inode);
    assert.equal(integrity(a), "ok");
    assert.deepEqual(
      query(a, "SELECT count(*) n, max(v) m FROM t"),
      query(b, "SELECT count(*) n, max(v) m FROM t"),
    );
    const head = (await Deno.readFile(a)).subarray(0, 100);
    assert.deepEqual([head[18], head[19]], [1, 1]);
    const v = new DataView(head.buffer, head.byteOffset);
    assert.equal(v.getUint32(28), (await Deno.stat(a)).size / 4096);
    assert.equal(v.getUint32(92), v.getUint32(24));
    assert.equal(await Deno.stat(`${a}-journal`).catch(() => null), null);
  });
});

Deno.test("apply: a shrinking apply truncates the file; a reader's open connection sees the new state", async () => {
  await withDir(async (dir) => {
    const big = `${dir}/big.db`;
    const small = `${dir}/small.db`;
    makeDb(big, 400, "big");
    makeDb(small, 20, "small");
    const reader = new DatabaseSync(big, { readOnly: true });
    try {
      assert.deepEqual({ ...reader.prepare("SELECT count(*) n FROM t").get() }, { n: 400 });
      const r = await ReplicaDb.open(big);
      try {
        await r.apply(await batchTo(r, small));
      } finally {
        r.close();
      }
      // Same connection, cached pages: the change counter makes SQLite drop its cache.
      assert.deepEqual({ ...reader.prepare("SELECT count(*) n FROM t").get() }, { n: 20 });
    } finally {
      reader.close();
    }
    assert.equal((await Deno.stat(big)).size, (await Deno.stat(small)).size);
    assert.equal(integrity(big), "ok");
  });
});

Deno.test("crash mid-apply: SQLite rolls our journal back byte for byte; read-only openers must wait for it", async () => {
  for (const [from, to] of [["small", "big"], ["big", "small"]] as const) {
    await withDir(async (dir) => {
      const rep = `${dir}/rep.db`;
      const other = `${dir}/other.db`;
      makeDb(rep, from === "small" ? 30 : 300, from);
      makeDb(other, to === "small" ? 30 : 300, to);
      const original = await Deno.readFile(rep);
      const r = await ReplicaDb.open(rep);
      try {
        const batch = await batchTo(r, other);
        assert.ok(batch.pgnos.length > 4);
        await assert.rejects(r.apply(batch, { crashAfterPages: 3 }), SimulatedCrash);
      } finally {
        r.close();
      }
      const journal = parseJournal(await Deno.readFile(`${rep}-journal`));
      assert.ok(journal && journal.records.length > 0, "a hot journal is left behind");
      assert.equal(journal.header.originalPages, original.length / 4096);
      assert.notDeepEqual(await Deno.readFile(rep), original, "the crash left a half-written file");
      // A read-only connection cannot roll back, so SQLite refuses to read (SQLITE_READONLY_ROLLBACK).
      assert.throws(() => query(rep, "SELECT count(*) FROM t", true), /readonly/i);
      // Any read-write opener plays the journal back before reading.
      query(rep, "SELECT count(*) FROM t", false);
      assert.deepEqual(await Deno.readFile(rep), original);
      assert.equal(integrity(rep), "ok");
      assert.equal(await Deno.stat(`${rep}-journal`).catch(() => null), null);
    });
  }
});

Deno.test("crash mid-apply: reopening the replica (walrust restart) recovers it before anything else", async () => {
  await withDir(async (dir) => {
    const rep = `${dir}/rep.db`;
    const other = `${dir}/other.db`;
    makeDb(rep, 100, "old");
    makeDb(other, 250, "new");
    const original = await Deno.readFile(rep);
    const r = await ReplicaDb.open(rep);
    await assert.rejects(r.apply(await batchTo(r, other), { crashAfterPages: 5 }), SimulatedCrash);
    r.close();
    const again = await ReplicaDb.open(rep);
    again.close();
    assert.deepEqual(await Deno.readFile(rep), original);
    assert.equal(integrity(rep), "ok");
  });
});

Deno.test("failure inside the apply: rolled back in-process, lock released, no journal left", async () => {
  await withDir(async (dir) => {
    const rep = `${dir}/rep.db`;
    const other = `${dir}/other.db`;
    makeDb(rep, 100, "old");
    makeDb(other, 300, "new");
    const original = await Deno.readFile(rep);
    const r = await ReplicaDb.open(rep);
    try {
      const good = await batchTo(r, other);
      const failing: PageBatch = {
        ...good,
        async *pages() {
          let n = 0;
          for await (const p of good.pages()) {
            if (++n === 6) throw new Error("download failed");
            yield p;
          }
        },
      };
      await assert.rejects(r.apply(failing), /download failed/);
      assert.deepEqual(await Deno.readFile(rep), original);
      assert.equal(await Deno.stat(`${rep}-journal`).catch(() => null), null);
      // A failing beforeCommit hook (e.g. the state file cannot be written) also rolls back.
      await assert.rejects(
        r.apply(good, { beforeCommit: () => Promise.reject(new Error("state write failed")) }),
        /state write failed/,
      );
      assert.deepEqual(await Deno.readFile(rep), original);
      // The lock was released: another connection can write-lock the file at once.
      const other2 = new DatabaseSync(rep, { timeout: 0 });
      other2.exec("BEGIN EXCLUSIVE; COMMIT");
      other2.close();
      // And the replica still applies fine afterwards.
      await r.apply(good);
    } finally {
      r.close();
    }
    assert.equal(integrity(rep), "ok");
    assert.deepEqual(query(rep, "SELECT count(*) n FROM t"), query(other, "SELECT count(*) n FROM t"));
  });
});

Deno.test("apply waits for a reader's open transaction, which keeps seeing the old state", async () => {
  await withDir(async (dir) => {
    const rep = `${dir}/rep.db`;
    const other = `${dir}/other.db`;
    makeDb(rep, 10, "old");
    makeDb(other, 50, "new");
    const reader = new DatabaseSync(rep, { readOnly: true, timeout: 5000 });
    const r = await ReplicaDb.open(rep, { busyTimeoutMs: 20 });
    try {
      reader.exec("BEGIN");
      assert.deepEqual({ ...reader.prepare("SELECT count(*) n FROM t").get() }, { n: 10 });
      let done = false;
      const applying = r.apply(await batchTo(r, other)).then((res) => {
        done = true;
        return res;
      });
      for (let i = 0; i < 5; i++) await new Promise((res) => setTimeout(res, 30));
      assert.equal(done, false, "the apply must wait for the reader's SHARED lock");
      assert.deepEqual({ ...reader.prepare("SELECT count(*) n FROM t").get() }, { n: 10 });
      reader.exec("COMMIT");
      const res = await applying;
      assert.ok(res.lockWaitMs > 0);
      assert.deepEqual({ ...reader.prepare("SELECT count(*) n FROM t").get() }, { n: 50 });
    } finally {
      r.close();
      reader.close();
    }
  });
});

Deno.test("apply refuses when the change counter is not the expected one (another program wrote)", async () => {
  await withDir(async (dir) => {
    const rep = `${dir}/rep.db`;
    const other = `${dir}/other.db`;
    makeDb(rep, 10, "old");
    makeDb(other, 20, "new");
    const original = await Deno.readFile(rep);
    const r = await ReplicaDb.open(rep);
    try {
      const info = r.info();
      await assert.rejects(
        r.apply(await batchTo(r, other), { expectChangeCounter: info.changeCounter + 7 }),
        ConflictError,
      );
    } finally {
      r.close();
    }
    assert.deepEqual(await Deno.readFile(rep), original);
    assert.equal(await Deno.stat(`${rep}-journal`).catch(() => null), null);
  });
});

Deno.test("open: a replica switched to WAL mode is switched back to rollback mode", async () => {
  await withDir(async (dir) => {
    const rep = `${dir}/rep.db`;
    makeDb(rep, 10, "x");
    const db = new DatabaseSync(rep);
    db.exec("PRAGMA journal_mode=WAL");
    db.close();
    const r = await ReplicaDb.open(rep);
    r.close();
    const head = (await Deno.readFile(rep)).subarray(0, 20);
    assert.deepEqual([head[18], head[19]], [1, 1]);
  });
});

Deno.test("patchHeader sets format versions, counter, page count and version-valid-for", () => {
  const p = new Uint8Array(4096);
  p[18] = 2;
  p[19] = 2;
  patchHeader(p, { changeCounter: 0xffffffff, pageCount: 77 });
  const v = new DataView(p.buffer);
  assert.deepEqual([p[18], p[19], v.getUint32(24), v.getUint32(28), v.getUint32(92)], [
    1,
    1,
    0xffffffff,
    77,
    0xffffffff,
  ]);
});

/** fcntl locks this process holds on `path`, from /proc/locks (Linux). */
function locksHeld(path: string): string[] {
  const ino = Deno.statSync(path).ino;
  // /proc/locks is produced a page at a time from a list other processes keep changing: under heavy lock
  // traffic elsewhere (the full suite beside the chaos runner) one read can skip a line. A lock we hold is
  // in one of two reads; one we released is in neither.
  const lines = new Set<string>();
  for (let i = 0; i < 2; i++) {
    for (const l of Deno.readTextFileSync("/proc/locks").split("\n")) {
      if (l.includes(` ${Deno.pid} `) && l.includes(`:${ino} `) && l.includes("POSIX")) {
        lines.add(l.replace(/^\s*\d+:\s*/, ""));
      }
    }
  }
  return [...lines];
}

const hasProcLocks = (() => {
  try {
    Deno.statSync("/proc/locks");
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "Deno's async file calls drop this process's fcntl locks, its sync calls keep them (why apply.ts is sync)",
  ignore: !hasProcLocks,
  fn: async () => {
    await withDir(async (dir) => {
      const p = `${dir}/x.db`;
      makeDb(p, 1, "x");
      const fd = Deno.openSync(p, { read: true, write: true });
      const conn = new DatabaseSync(p);
      try {
        conn.exec("BEGIN EXCLUSIVE");
        fd.seekSync(0, Deno.SeekMode.Start);
        fd.readSync(new Uint8Array(100));
        fd.statSync();
        assert.equal(locksHeld(p).length, 1, "sync calls keep the lock");
        await fd.stat();
        assert.equal(locksHeld(p).length, 0, "an async call dropped it");
        conn.exec("COMMIT");
      } finally {
        conn.close();
        fd.close();
      }
    });
  },
});

Deno.test({
  name: "apply holds SQLite's EXCLUSIVE lock from the journal write to the commit point",
  ignore: !hasProcLocks,
  fn: async () => {
    await withDir(async (dir) => {
      const rep = `${dir}/rep.db`;
      const other = `${dir}/other.db`;
      makeDb(rep, 50, "old");
      makeDb(other, 200, "new");
      const r = await ReplicaDb.open(rep);
      try {
        const good = await batchTo(r, other);
        const seen: number[] = [];
        const watched: PageBatch = {
          ...good,
          async *pages() {
            for await (const p of good.pages()) {
              seen.push(locksHeld(rep).filter((l) => l.includes("WRITE")).length);
              yield p;
            }
          },
        };
        await r.apply(watched, {
          beforeCommit: () => {
            seen.push(locksHeld(rep).filter((l) => l.includes("WRITE")).length);
            return Promise.resolve();
          },
        });
        assert.ok(seen.length > 2);
        assert.deepEqual(new Set(seen), new Set([1]), "a write lock is held at every step");
        assert.equal(locksHeld(rep).length, 0, "and released after the commit");
      } finally {
        r.close();
      }
    });
  },
});
