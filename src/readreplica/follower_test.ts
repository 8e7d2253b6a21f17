import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ConflictError, NotFoundError } from "../errors.ts";
import { configureLogging } from "../observe/log.ts";
import { FileObjectStore } from "../storage/file.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { ReplicaFollower } from "./follower.ts";
import { readState, statePathFor, writeState } from "./state.ts";
import { bankTransfer, createBankSchema, LtxSource } from "./testing.ts";

const logLines: string[] = [];
configureLogging({ write: (l) => logLines.push(l), level: "debug" });

interface Ctx {
  dir: string;
  client: ReplicaClient;
  source: LtxSource;
  replica: string;
}

async function withCtx(
  fn: (c: Ctx) => Promise<void>,
  opts: { keepStates?: boolean; pageSize?: number } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "readreplica-follow-" });
  const client = new ReplicaClient(new FileObjectStore(`${dir}/backups`), "app");
  const source = LtxSource.create(dir, client, opts);
  try {
    await fn({ dir, client, source, replica: `${dir}/local/replica.db` });
  } finally {
    source.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function commits(source: LtxSource, n: number, opts: { upload?: boolean } = {}): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = source.txid;
    await source.commit((db) => (t === 0 ? createBankSchema(db, 40) : bankTransfer(db, t, 40)), opts);
  }
}

/** The replica equals the source except the header fields the replica rewrites (18–19, 24–27, 92–95). */
async function assertSameAsSource(replica: string, source: LtxSource): Promise<void> {
  const a = await Deno.readFile(replica);
  const b = source.state();
  assert.equal(a.length, b.length, "same size");
  const masked = new Set([18, 19, 24, 25, 26, 27, 92, 93, 94, 95]);
  for (let i = 0; i < a.length; i++) {
    if (!masked.has(i) && a[i] !== b[i]) assert.fail(`replica differs from the source at byte ${i}`);
  }
  assert.deepEqual([a[18], a[19]], [1, 1]);
  const db = new DatabaseSync(replica, { readOnly: true });
  try {
    assert.deepEqual({ ...db.prepare("PRAGMA integrity_check").get() }, { integrity_check: "ok" });
  } finally {
    db.close();
  }
}

async function follower(c: Ctx): Promise<ReplicaFollower> {
  return await ReplicaFollower.open(c.client, { path: c.replica, intervalMs: 10, busyTimeoutMs: 50 });
}

Deno.test("follower: bootstraps from snapshot + L0, then applies new L0 files in place", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 5);
    await c.source.snapshot();
    await commits(c.source, 3);
    const f = await follower(c);
    try {
      const first = await f.step();
      assert.equal(first.kind, "bootstrapped");
      assert.equal(first.txid, 8);
      await assertSameAsSource(c.replica, c.source);
      const ino = (await Deno.stat(c.replica)).ino;
      await commits(c.source, 4);
      const next = await f.step();
      assert.deepEqual([next.kind, next.txid, next.files], ["applied", 12, 4]);
      assert.equal((await Deno.stat(c.replica)).ino, ino, "applied in place");
      await assertSameAsSource(c.replica, c.source);
      assert.equal((await f.step()).kind, "idle");
      assert.equal(f.state?.bootstraps, 1);
      assert.equal(f.state?.applied, 4);
      assert.ok(logLines.some((l) => l.includes("applied") && l.includes("files=4")));
    } finally {
      f.close();
    }
  });
});

Deno.test("follower: a restart resumes from the recorded TXID without a new bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 6);
    const a = await follower(c);
    try {
      assert.equal((await a.step()).kind, "bootstrapped");
    } finally {
      a.close();
    }
    await commits(c.source, 3);
    const b = await follower(c);
    try {
      const r = await b.step();
      assert.deepEqual([r.kind, r.txid, r.files], ["applied", 9, 3]);
      assert.equal(b.state?.bootstraps, 1);
    } finally {
      b.close();
    }
    await assertSameAsSource(c.replica, c.source);
  });
});

Deno.test("follower: a second follower of the same replica file is refused", async () => {
  await withCtx(async (c) => {
    const a = await follower(c);
    try {
      await assert.rejects(follower(c), ConflictError);
    } finally {
      a.close();
    }
    (await follower(c)).close();
  });
});

Deno.test("follower: first bootstrap with no backup fails with NotFoundError and leaves nothing", async () => {
  await withCtx(async (c) => {
    const f = await follower(c);
    try {
      await assert.rejects(f.step(), NotFoundError);
    } finally {
      f.close();
    }
    assert.equal(await Deno.stat(c.replica).catch(() => null), null);
  });
});

Deno.test("follower: compacted files bridge deleted L0 files without a re-bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 4);
    const f = await follower(c);
    try {
      await f.step();
      await commits(c.source, 6, { upload: false });
      await c.source.writeRange(1, 3, 10); // overlaps what the replica has: fine
      const r = await f.step();
      assert.deepEqual([r.kind, r.txid, r.files], ["applied", 10, 1]);
      assert.equal(f.state?.bootstraps, 1);
      await assertSameAsSource(c.replica, c.source);
    } finally {
      f.close();
    }
  }, { keepStates: true });
});

Deno.test("follower: a gap triggers an in-place re-bootstrap (same inode, readers keep their connection)", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 5);
    const f = await follower(c);
    let reader: DatabaseSync | undefined;
    try {
      await f.step();
      reader = new DatabaseSync(c.replica, { readOnly: true });
      assert.deepEqual({ ...reader.prepare("SELECT max(n) n FROM counter").get() }, { n: 5 });
      const ino = (await Deno.stat(c.replica)).ino;
      await commits(c.source, 5, { upload: false }); // 6…10 never uploaded
      await c.source.snapshot(); // 1…10
      await commits(c.source, 2); // 11, 12
      const r = await f.step();
      assert.equal(r.kind, "bootstrapped");
      assert.match(r.reason ?? "", /TXIDs 6–10 are no longer in the backup/);
      assert.equal(r.txid, 12);
      assert.equal((await Deno.stat(c.replica)).ino, ino);
      assert.equal(f.state?.bootstraps, 2);
      await assertSameAsSource(c.replica, c.source);
      assert.deepEqual({ ...reader.prepare("SELECT max(n) n FROM counter").get() }, { n: 12 });
    } finally {
      reader?.close();
      f.close();
    }
  });
});

Deno.test("follower: a replaced history (newest TXID below ours) triggers a re-bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 8);
    const f = await follower(c);
    try {
      await f.step();
      // The backup is wiped and a new database history starts (3 TXIDs).
      await Deno.remove(`${c.dir}/backups`, { recursive: true });
      const other = LtxSource.create(c.dir, c.client);
      try {
        for (let i = 0; i < 3; i++) {
          await other.commit((db) =>
            db.exec(`CREATE TABLE other${i}(x); INSERT INTO other${i} VALUES (${i})`)
          );
        }
        const r = await f.step();
        assert.equal(r.kind, "bootstrapped");
        assert.match(r.reason ?? "", /history replaced/);
        assert.equal(f.txid, 3);
        await assertSameAsSource(c.replica, other);
      } finally {
        other.close();
      }
    } finally {
      f.close();
    }
  });
});

Deno.test("follower: a rewritten file we applied (new history at the same TXIDs) triggers a re-bootstrap", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 4);
    const f = await follower(c);
    try {
      await f.step();
      await commits(c.source, 1); // TXID 5, applied next
      await f.step();
      assert.equal(f.txid, 5);
      // A new history reaches TXID 7 before we look: TXID numbers alone cannot tell.
      await Deno.remove(`${c.dir}/backups`, { recursive: true });
      const other = LtxSource.create(c.dir, c.client);
      try {
        for (let i = 0; i < 7; i++) await other.commit((db) => db.exec(`CREATE TABLE o${i}(x)`));
        const r = await f.step();
        assert.equal(r.kind, "bootstrapped");
        assert.match(r.reason ?? "", /L0\/0000000000000005-0000000000000005\.ltx was rewritten/);
        await assertSameAsSource(c.replica, other);
      } finally {
        other.close();
      }
    } finally {
      f.close();
    }
  });
});

Deno.test("follower: a page size change replaces the file (new inode)", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 3);
    const f = await follower(c);
    try {
      await f.step();
      const ino = (await Deno.stat(c.replica)).ino;
      await Deno.remove(`${c.dir}/backups`, { recursive: true });
      const other = LtxSource.create(c.dir, c.client, { pageSize: 1024 });
      try {
        for (let i = 0; i < 5; i++) await other.commit((db) => db.exec(`CREATE TABLE o${i}(x)`));
        const r = await f.step();
        assert.equal(r.kind, "bootstrapped");
        assert.notEqual((await Deno.stat(c.replica)).ino, ino);
        assert.equal(f.state?.pageSize, 1024);
        await assertSameAsSource(c.replica, other);
      } finally {
        other.close();
      }
    } finally {
      f.close();
    }
  });
});

Deno.test("follower: a replica modified by another program is rebuilt from the backup", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 4);
    const a = await follower(c);
    try {
      await a.step();
    } finally {
      a.close();
    }
    const w = new DatabaseSync(c.replica);
    w.exec("INSERT INTO counter(n, pad) VALUES (1000, 'not from the backup')");
    w.close();
    const b = await follower(c);
    try {
      const r = await b.step();
      assert.equal(r.kind, "bootstrapped");
      assert.match(r.reason ?? "", /modified by another program/);
    } finally {
      b.close();
    }
    await assertSameAsSource(c.replica, c.source);
  });
});

Deno.test("follower: state recorded but apply rolled back (crash before the commit point) resumes at prev", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 4);
    const a = await follower(c);
    try {
      await a.step();
    } finally {
      a.close();
    }
    // What a crash between the state write and the journal removal leaves: the state says TXID 5 (with prev),
    // SQLite rolled the replica back to the counter of TXID 4.
    const st = await readState(c.replica);
    assert.equal(st.kind, "ok");
    if (st.kind !== "ok") return;
    await writeState(c.replica, {
      ...st.state,
      txid: 5,
      changeCounter: (st.state.changeCounter + 1) >>> 0,
      prev: { txid: 4, changeCounter: st.state.changeCounter },
    });
    await commits(c.source, 2);
    const b = await follower(c);
    try {
      const r = await b.step();
      assert.deepEqual([r.kind, r.txid, r.files], ["applied", 6, 2]);
      assert.equal(b.state?.bootstraps, 1);
    } finally {
      b.close();
    }
    await assertSameAsSource(c.replica, c.source);
    assert.ok(logLines.some((l) => l.includes("rolled back")));
  });
});

Deno.test("follower: a damaged state file or a state for another source leads to an in-place rebuild", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 3);
    const a = await follower(c);
    try {
      await a.step();
    } finally {
      a.close();
    }
    await Deno.writeTextFile(statePathFor(c.replica), "{not json");
    const ino = (await Deno.stat(c.replica)).ino;
    const b = await follower(c);
    try {
      const r = await b.step();
      assert.equal(r.kind, "bootstrapped");
      assert.match(r.reason ?? "", /unusable/);
      assert.equal(r.pages, 1, "only page 1 (the header) differs");
      assert.equal((await Deno.stat(c.replica)).ino, ino);
    } finally {
      b.close();
    }
  });
});

Deno.test("follower: refuses to touch an existing database it did not create (no state file)", async () => {
  await withCtx(async (c) => {
    await commits(c.source, 2);
    await Deno.mkdir(`${c.dir}/local`);
    const app = new DatabaseSync(c.replica);
    app.exec("CREATE TABLE precious(x); INSERT INTO precious VALUES (42)");
    app.close();
    const before = await Deno.readFile(c.replica);
    const f = await follower(c);
    try {
      await assert.rejects(
        f.step(),
        (err: Error) => err instanceof ConflictError && /not a walrust read replica/.test(err.message),
      );
    } finally {
      f.close();
    }
    assert.deepEqual(await Deno.readFile(c.replica), before);
  });
});
