import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import fc from "fast-check";
import { ConflictError, ConnectionError, CorruptionError, GapError, NotFoundError } from "../errors.ts";
import { configureLogging } from "../observe/log.ts";
import { FileObjectStore } from "../storage/file.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { encodeLz4Frame, putV3Object } from "./testing.ts";
import { type V3Generation, v3SegmentKey, v3SnapshotKey, type V3WalSegment } from "./v3_layout.ts";
import { describeV3, findV3Root, planV3Restore, restoreV3 } from "./v3_restore.ts";

configureLogging({ write: () => {} }); // keep test output clean

interface State {
  at: Date;
  rows: number;
  bytes: number;
}

interface Built {
  store: FileObjectStore;
  states: State[];
  /** The source database after a final TRUNCATE checkpoint: what a latest restore must equal byte for byte. */
  final: Uint8Array;
  gens: string[];
}

const T0 = Date.UTC(2026, 0, 1);

function summary(path: string): { rows: number; bytes: number } {
  const db = new DatabaseSync(path);
  try {
    const r = db.prepare("SELECT count(*) AS n, total(length(v)) AS b FROM t").get() as {
      n: number;
      b: number;
    };
    return { rows: r.n, bytes: r.b };
  } finally {
    db.close();
  }
}

/**
 * Writes a v0.3 replica the way Litestream v0.3 lays it out: per generation a snapshot at index 0 (the
 * checkpointed database), then for each WAL index one segment per transaction (raw WAL bytes since the last
 * segment; offset 0 carries the WAL header), then a TRUNCATE checkpoint that starts the next index.
 * Object i gets mtime T0 + i seconds.
 */
async function buildReplica(
  dir: string,
  root: string,
  generations: number[][],
  pageSize = 4096,
): Promise<Built> {
  const store = new FileObjectStore(`${dir}/replica`);
  const src = `${dir}/src.db`;
  const db = new DatabaseSync(src);
  db.exec(`PRAGMA page_size=${pageSize}; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0`);
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
  ins.run(new Uint8Array(1000).fill(7));
  let tick = 0;
  const states: State[] = [];
  const gens: string[] = [];
  let n = 0;
  for (const [g, indexes] of generations.entries()) {
    const gen = (0xa0 + g).toString(16).padStart(16, "0");
    gens.push(gen);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const at = new Date(T0 + 1000 * tick++);
    await putV3Object(store, v3SnapshotKey(root, gen, 0), encodeLz4Frame(Deno.readFileSync(src)), at);
    states.push({ at, ...summary(src) });
    for (const [index, txns] of indexes.entries()) {
      let prev = 0;
      for (let k = 0; k < txns; k++) {
        n++;
        db.exec("BEGIN");
        ins.run(new Uint8Array(200 + (n * 977) % 6000).fill(n & 0xff));
        if (n % 3 === 0) db.prepare("DELETE FROM t WHERE id = ?").run(Math.max(1, n - 2));
        db.exec("COMMIT");
        const wal = Deno.readFileSync(`${src}-wal`);
        const at = new Date(T0 + 1000 * tick++);
        await putV3Object(
          store,
          v3SegmentKey(root, gen, index, prev),
          encodeLz4Frame(wal.subarray(prev)),
          at,
        );
        prev = wal.length;
        states.push({ at, ...summary(src) });
      }
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    }
  }
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
  return { store, states, final: Deno.readFileSync(src), gens };
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("v3 restore: latest equals the source byte for byte; every point in time equals its state", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[3, 2, 2]]);
    const out = `${dir}/out/latest.db`;
    const r = await restoreV3(b.store, "app", { output: out });
    assert.deepEqual(Deno.readFileSync(out), b.final);
    assert.equal(r.walIndex, 2);
    assert.equal(r.segments, 7);
    assert.equal(r.restoredAt.getTime(), b.states[b.states.length - 1].at.getTime());
    assert.deepEqual(await listDir(`${dir}/out`), ["latest.db"], "no temp files left");
    for (const [i, s] of b.states.entries()) {
      const o = `${dir}/pit-${i}.db`;
      await restoreV3(b.store, "app", { output: o, timestamp: s.at });
      assert.deepEqual(summary(o), { rows: s.rows, bytes: s.bytes }, `state ${i} at ${s.at.toISOString()}`);
      if (i > 0) {
        // Just before this state's object was written, the previous state is what exists.
        const o2 = `${dir}/pit-${i}-before.db`;
        await restoreV3(b.store, "app", { output: o2, timestamp: new Date(s.at.getTime() - 1) });
        assert.deepEqual(summary(o2), { rows: b.states[i - 1].rows, bytes: b.states[i - 1].bytes });
      }
    }
    await assert.rejects(
      restoreV3(b.store, "app", { output: `${dir}/early.db`, timestamp: new Date(T0 - 1) }),
      NotFoundError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: snapshots of all generations are candidates, chosen by time", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "", [[2, 1], [2]], 1024);
    const latest = `${dir}/latest.db`;
    const r = await restoreV3(b.store, "", { output: latest });
    assert.equal(r.generation, b.gens[1]);
    assert.deepEqual(Deno.readFileSync(latest), b.final);
    // A time inside the first generation restores from it.
    const s = b.states[3];
    const o = `${dir}/pit.db`;
    const r2 = await restoreV3(b.store, "", { output: o, timestamp: s.at });
    assert.equal(r2.generation, b.gens[0]);
    assert.deepEqual(summary(o), { rows: s.rows, bytes: s.bytes });
    const d = await describeV3(b.store, "");
    assert.equal(d.generations.length, 2);
    assert.equal(d.snapshotCount, 2);
    assert.equal(d.walSegmentCount, 5);
    assert.equal(d.newest?.getTime(), b.states[b.states.length - 1].at.getTime());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: findV3Root prefers <name>/generations/, then a replica root, else null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const own = await buildReplica(`${dir}`, "app", [[1]]);
    assert.equal(await findV3Root(own.store, "app"), "app");
    assert.equal(await findV3Root(own.store, "other"), null);
    await Deno.mkdir(`${dir}/b`);
    const bare = await buildReplica(`${dir}/b`, "", [[1]]);
    assert.equal(await findV3Root(bare.store, "anything"), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function expectNoOutput(dir: string, out: string): Promise<void> {
  const names = await listDir(dir);
  const base = out.slice(out.lastIndexOf("/") + 1);
  assert.deepEqual(names.filter((n) => n.includes(base)), [], `leftovers: ${names}`);
}

Deno.test("v3 restore: a missing segment, index or first segment is a GapError naming it; no output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[3, 2, 2]]);
    const gen = b.gens[0];
    const outDir = `${dir}/o`;
    await Deno.mkdir(outDir);
    const out = `${outDir}/x.db`;
    // The middle segment of index 0.
    const segs = (await Array.fromAsync(b.store.list(`app/generations/${gen}/wal/`))).map((o) => o.key);
    const mid = segs.find((k) => k.includes("/00000000_") && !k.endsWith("_00000000.wal.lz4"))!;
    const midBody = await b.store.get(mid);
    await b.store.delete([mid]);
    const e = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e instanceof GapError, String(e));
    assert.match(e.message, new RegExp(`missing WAL segment ${gen}/00000000 at offset \\d+`));
    await expectNoOutput(outDir, out);
    await b.store.put(mid, midBody);
    // All of index 1.
    const idx1 = segs.filter((k) => k.includes("/00000001_"));
    const bodies = await Promise.all(idx1.map((k) => b.store.get(k)));
    await b.store.delete(idx1);
    const e2 = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e2 instanceof GapError, String(e2));
    assert.match(e2.message, new RegExp(`missing WAL index ${gen}/00000001`));
    assert.equal(e2.fromTxid, 1);
    await expectNoOutput(outDir, out);
    for (const [i, k] of idx1.entries()) await b.store.put(k, bodies[i]);
    // Offset 0 of index 2.
    const first2 = segs.find((k) => k.endsWith("/00000002_00000000.wal.lz4"))!;
    await b.store.delete([first2]);
    const e3 = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e3 instanceof GapError, String(e3));
    assert.match(e3.message, /00000002 at offset 0/);
    await expectNoOutput(outDir, out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: corrupt objects are CorruptionErrors naming the object; no output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[2, 2]]);
    const outDir = `${dir}/o`;
    await Deno.mkdir(outDir);
    const out = `${outDir}/x.db`;
    const seg = v3SegmentKey("app", b.gens[0], 1, 0);
    const good = await b.store.get(seg);
    const bad = good.slice();
    bad[bad.length - 2] ^= 0xff; // inside the content checksum
    await b.store.put(seg, bad);
    const e = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e instanceof CorruptionError, String(e));
    assert.equal(e.object, seg);
    await expectNoOutput(outDir, out);
    // Valid LZ4 around a WAL whose frame checksum is wrong.
    const { decodeLz4FramesToBytes } = await import("./lz4_frame.ts");
    const wal = await decodeLz4FramesToBytes(good, seg);
    wal[32 + 24 + 100] ^= 1;
    await b.store.put(seg, encodeLz4Frame(wal));
    const e2 = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e2 instanceof CorruptionError, String(e2));
    assert.equal(e2.object, seg);
    assert.match(e2.message, /fails its checksum/);
    await expectNoOutput(outDir, out);
    await b.store.put(seg, good);
    // A snapshot that is not a database.
    const snap = v3SnapshotKey("app", b.gens[0], 0);
    await b.store.put(snap, encodeLz4Frame(new Uint8Array(4096).fill(1)));
    const e3 = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e3 instanceof CorruptionError, String(e3));
    assert.match(e3.message, /not a SQLite database|not hold a SQLite database/);
    await expectNoOutput(outDir, out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: a database that fails integrity_check is refused and not left behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[1]]);
    const snapKey = v3SnapshotKey("app", b.gens[0], 0);
    const { decodeLz4FramesToBytes } = await import("./lz4_frame.ts");
    const snap = await decodeLz4FramesToBytes(await b.store.get(snapKey), snapKey);
    // Page 2 is the table's root page: scribble over its cell pointers.
    snap.fill(0xee, 4096 + 8, 4096 + 40);
    await b.store.put(snapKey, encodeLz4Frame(snap));
    await b.store.delete([v3SegmentKey("app", b.gens[0], 0, 0)]);
    const out = `${dir}/o.db`;
    const e = await restoreV3(b.store, "app", { output: out }).catch((err) => err);
    assert.ok(e instanceof CorruptionError, String(e));
    assert.match(e.message, /integrity_check|cannot be opened/);
    await expectNoOutput(dir, out);
    // Without the check the file is produced as stored (the caller asked for it).
    await restoreV3(b.store, "app", { output: out, integrityCheck: false });
    assert.deepEqual(Deno.readFileSync(out), snap);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: an existing output is a ConflictError; --force replaces it and its stale -wal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[2]]);
    const out = `${dir}/o.db`;
    Deno.writeTextFileSync(out, "old");
    await assert.rejects(restoreV3(b.store, "app", { output: out }), ConflictError);
    assert.equal(Deno.readTextFileSync(out), "old");
    Deno.removeSync(out);
    Deno.writeTextFileSync(`${out}-wal`, "stale wal");
    await assert.rejects(
      restoreV3(b.store, "app", { output: out }),
      ConflictError,
      "a stale -wal would corrupt it",
    );
    Deno.writeTextFileSync(out, "old");
    const progress: number[] = [];
    await restoreV3(b.store, "app", { output: out, force: true, onProgress: (d, t) => progress.push(d / t) });
    assert.deepEqual(Deno.readFileSync(out), b.final);
    assert.ok(!(await Array.fromAsync(Deno.readDir(dir))).some((e) => e.name === "o.db-wal"));
    assert.equal(progress[progress.length - 1], 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 restore: empty replica is NotFoundError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      restoreV3(new FileObjectStore(dir), "", { output: `${dir}/o.db` }),
      NotFoundError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- planner properties -----------------------------------------------------------------------------------

const genArb: fc.Arbitrary<V3Generation[]> = fc.array(
  fc.record({
    snapshots: fc.array(
      fc.record({ index: fc.integer({ min: 0, max: 4 }), t: fc.integer({ min: 0, max: 60 }) }),
      {
        maxLength: 3,
      },
    ),
    segments: fc.array(
      fc.record({
        index: fc.integer({ min: 0, max: 5 }),
        offset: fc.constantFrom(0, 0, 4152, 8272),
        t: fc.integer({ min: 0, max: 60 }),
      }),
      { maxLength: 12 },
    ),
  }),
  { minLength: 1, maxLength: 3 },
).map((gs) =>
  gs.map((g, i) => {
    const id = (i + 1).toString(16).padStart(16, "0");
    const at = (t: number) => new Date(T0 + t * 1000);
    const seen = new Set<string>();
    return {
      id,
      snapshots: [...new Map(g.snapshots.map((s) => [s.index, s])).values()].map((s) => ({
        generation: id,
        index: s.index,
        size: 1,
        createdAt: at(s.t),
        key: v3SnapshotKey("", id, s.index),
      })),
      segments: g.segments.filter((s) =>
        !seen.has(`${s.index}/${s.offset}`) && seen.add(`${s.index}/${s.offset}`)
      )
        .map((s): V3WalSegment => ({
          generation: id,
          index: s.index,
          offset: s.offset,
          size: 1,
          createdAt: at(s.t),
          key: v3SegmentKey("", id, s.index, s.offset),
        })),
    };
  })
);

Deno.test("v3 plan: picks the newest qualifying snapshot and exactly the contiguous segments, or says why not", () => {
  fc.assert(
    fc.property(genArb, fc.option(fc.integer({ min: 0, max: 60 }), { nil: undefined }), (gens, t) => {
      const ts = t === undefined ? undefined : new Date(T0 + t * 1000);
      const snaps = gens.flatMap((g) => g.snapshots).filter((s) => !ts || s.createdAt <= ts);
      let plan;
      try {
        plan = planV3Restore(gens, ts);
      } catch (err) {
        if (err instanceof NotFoundError) {
          assert.equal(snaps.length, 0);
          return;
        }
        assert.ok(err instanceof GapError, String(err));
        // There really is a hole: the chosen snapshot's segments do not run index by index from offset 0.
        const snap = [...snaps].sort((a, b) =>
          a.createdAt.getTime() - b.createdAt.getTime() || a.generation.localeCompare(b.generation) ||
          a.index - b.index
        ).pop()!;
        const segs = gens.find((g) => g.id === snap.generation)!.segments
          .filter((s) => s.index >= snap.index && (!ts || s.createdAt <= ts));
        const indexes = [...new Set(segs.map((s) => s.index))].sort((a, b) => a - b);
        const contiguous = indexes.every((ix, i) => ix === snap.index + i) &&
          indexes.every((ix) => segs.some((s) => s.index === ix && s.offset === 0));
        assert.ok(!contiguous, "GapError without a gap");
        return;
      }
      const newest = Math.max(...snaps.map((s) => s.createdAt.getTime()));
      assert.equal(plan.snapshot.createdAt.getTime(), newest);
      const want = gens.find((g) => g.id === plan.snapshot.generation)!.segments
        .filter((s) => s.index >= plan.snapshot.index && (!ts || s.createdAt <= ts));
      const got = plan.indexes.flatMap((i) => i.segments);
      assert.deepEqual(got.map((s) => s.key).sort(), want.map((s) => s.key).sort());
      plan.indexes.forEach((ix, i) => {
        assert.equal(ix.index, plan.snapshot.index + i);
        assert.equal(ix.segments[0].offset, 0);
        for (let k = 1; k < ix.segments.length; k++) {
          assert.ok(ix.segments[k].offset > ix.segments[k - 1].offset);
        }
      });
    }),
    { numRuns: 500 },
  );
});

/** Delegates to a store, delaying reads and recording how many are in flight. */
class SlowStore implements ObjectStore {
  readonly kind = "file" as const;
  readonly displayUrl = "slow://";
  inFlight = 0;
  maxInFlight = 0;
  constructor(readonly inner: ObjectStore, readonly failKey?: string) {}
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  async get(key: string): Promise<Uint8Array> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 5));
      if (key === this.failKey) throw new ConnectionError(`GET ${key}: connection reset`);
      return await this.inner.get(key);
    } finally {
      this.inFlight--;
    }
  }
  getStream(key: string) {
    return this.inner.getStream(key);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  put(key: string, body: Uint8Array) {
    return this.inner.put(key, body);
  }
  delete(keys: string[]) {
    return this.inner.delete(keys);
  }
  close() {}
}

Deno.test("v3 restore: small segments are fetched ahead (bounded), and a failed fetch fails the restore", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const b = await buildReplica(dir, "app", [[12, 6]]);
    const slow = new SlowStore(b.store);
    await restoreV3(slow, "app", { output: `${dir}/a.db` });
    assert.deepEqual(Deno.readFileSync(`${dir}/a.db`), b.final);
    assert.ok(slow.maxInFlight > 1 && slow.maxInFlight <= 8, `in flight: ${slow.maxInFlight}`);
    const failing = new SlowStore(b.store, v3SegmentKey("app", b.gens[0], 1, 0));
    await assert.rejects(restoreV3(failing, "app", { output: `${dir}/b.db` }), ConnectionError);
    await expectNoOutput(dir, `${dir}/b.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("v3 plan: two names for one position (8- and 16-hex offsets) are refused, not both applied", () => {
  const id = "00000000000000aa";
  const at = new Date(T0);
  const seg = (offset: number, key: string): V3WalSegment => ({
    generation: id,
    index: 0,
    offset,
    size: 1,
    createdAt: at,
    key,
  });
  const gens: V3Generation[] = [{
    id,
    snapshots: [{ generation: id, index: 0, size: 1, createdAt: at, key: v3SnapshotKey("", id, 0) }],
    segments: [
      seg(0, v3SegmentKey("", id, 0, 0)),
      seg(4152, v3SegmentKey("", id, 0, 4152)),
      seg(4152, `generations/${id}/wal/00000000_0000000000001038.wal.lz4`),
    ],
  }];
  assert.throws(() => planV3Restore(gens), CorruptionError);
  gens[0].segments.pop();
  assert.deepEqual(planV3Restore(gens).indexes.map((i) => i.segments.length), [2]);
});
