/**
 * End-to-end: a replica built over simulated time (a week of 6-hourly syncs, then minutes, then seconds, with
 * daily snapshots), compacted and pruned by the `Compactor` exactly as `watch` drives it, with an injected
 * clock. Afterwards every retained restore point is restored — by TXID and by time — and compared byte for
 * byte with the recorded database state; the bucket has shrunk.
 */
import assert from "node:assert/strict";
import { NotFoundError } from "../src/errors.ts";
import { EventBus, type WalrustEvent } from "../src/observe/events.ts";
import { configureLogging } from "../src/observe/log.ts";
import { restoreDatabase } from "../src/restore/restore.ts";
import { type DbHistory, putLtx, sampleHistory } from "../src/restore/testing.ts";
import { Compactor, enforceRetention, listForRetention } from "../src/retention/maintenance.ts";
import { planRetention } from "../src/retention/plan.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { MemoryObjectStore } from "../src/storage/memory.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";

configureLogging({ level: "warn" });

const HOUR = 3_600_000;
const N = 70;

/** TXID times: 1–30 every 6 h from Monday 2025-06-02, 31–55 every 7 min, 56–70 every 20 s. */
function schedule(h: DbHistory): void {
  let t = Date.UTC(2025, 5, 2, 0, 0, 30);
  for (let x = 1; x <= N; x++) {
    h.times[x] = t;
    t += x < 30 ? 6 * HOUR : x < 55 ? 7 * 60_000 : 20_000;
  }
}

const SNAPSHOTS = new Set([4, 8, 12, 16, 20, 24, 28, 36, 44, 52, 60]);
const POLICY = { hourly: 2, daily: 2, weekly: 1, monthly: 1 };

Deno.test("retention e2e: compaction + GFS over simulated time keeps every retained point restorable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-retention-e2e-" });
  try {
    const h = sampleHistory(dir, N);
    schedule(h);
    const client = new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app");
    const bus = new EventBus();
    const events: WalrustEvent[] = [];
    bus.subscribe((e) => events.push(e));
    let clock = 0;
    const compactor = new Compactor(
      client,
      { name: "app", compactionIntervalsMs: [30_000, 5 * 60_000, HOUR], retention: POLICY },
      bus,
      { now: () => clock },
    );

    // The watch loop, replayed: each sync uploads its L0 file (and a snapshot on schedule), then the hook ticks.
    let written = 0;
    for (let t = 1; t <= N; t++) {
      clock = h.times[t];
      await putLtx(client, h, 0, t, t);
      written++;
      if (SNAPSHOTS.has(t)) {
        await putLtx(client, h, 9, 1, t);
        written++;
      }
      const r = await compactor.maybeCompact();
      written += r.compactions.length;
    }
    clock = h.times[N] + 10_000;
    await compactor.maybeCompact();
    await compactor.enforceRetention();
    const again = await compactor.enforceRetention();
    assert.equal(again.deleted, 0, "a second pass at the same time deletes nothing");

    // The bucket shrank: old incrementals, compacted files and snapshots are gone.
    const files = await client.allLtxFiles();
    const count = (level: number) => files.filter((f) => f.level === level).length;
    const compactions = events.filter((e) => e.type === "compaction").length;
    const deleted = events.reduce((n, e) => n + (e.type === "retention" ? e.deleted : 0), 0);
    assert.ok(compactions > 60, `${compactions} compactions`);
    assert.equal(files.length, written - deleted);
    assert.ok(files.length < written / 3, `${files.length} of ${written} files left`);
    assert.ok(count(0) < 25, `${count(0)} L0 files left`);
    assert.deepEqual(
      files.filter((f) => f.level === 9).map((f) => f.maxTXID),
      [28, 60],
      "GFS: daily 2025-06-08 (28); hourly 08 and 09, daily 06-09, weekly, monthly and newest: 60",
    );

    // Every retained restore point restores exactly, by TXID and by time (files created strictly before it).
    const plan = planRetention(await listForRetention(client), { snapshots: POLICY }, clock);
    assert.deepEqual(plan.unrestorable, []);
    assert.deepEqual(plan.delete, []);
    assert.equal(plan.floorTXID, 28);
    assert.ok(plan.restorePoints.length >= 15, `${plan.restorePoints.length} restore points`);
    assert.ok(plan.restorePoints.includes(N) && plan.restorePoints.includes(29));
    for (const t of plan.restorePoints) {
      const byTxid = `${dir}/txid-${t}.db`;
      const r = await restoreDatabase(client, { output: byTxid, txid: t });
      assert.equal(r.txid, t);
      assert.deepEqual(await Deno.readFile(byTxid), h.states[t], `TXID ${t}`);
      const byTime = `${dir}/time-${t}.db`;
      const rt = await restoreDatabase(client, { output: byTime, timestamp: new Date(h.times[t] + 1) });
      assert.equal(rt.txid, t, `time of TXID ${t}`);
      assert.deepEqual(await Deno.readFile(byTime), h.states[t], `time of TXID ${t}`);
      await Deno.remove(byTxid);
      await Deno.remove(byTime);
    }
    const latest = `${dir}/latest.db`;
    await restoreDatabase(client, { output: latest });
    assert.deepEqual(await Deno.readFile(latest), h.states[N]);

    // Points before the oldest kept snapshot are gone for good: the deletions were real.
    await assert.rejects(restoreDatabase(client, { output: `${dir}/old.db`, txid: 10 }), NotFoundError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The restore's view of a store: `beforeFirstGet` runs once before any download starts (after the restore
 * listed); compaction and retention use the inner store directly.
 */
class RacingStore extends MemoryObjectStore {
  readonly inner: MemoryObjectStore;
  beforeFirstGet: (() => Promise<void>) | null = null;
  #ran: Promise<void> | null = null;
  constructor(inner: MemoryObjectStore) {
    super("file");
    this.inner = inner;
  }
  override list(prefix: string) {
    return this.inner.list(prefix);
  }
  override async getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    if (this.beforeFirstGet) this.#ran ??= this.beforeFirstGet();
    await this.#ran;
    return this.inner.getStream(key);
  }
}

Deno.test("retention e2e: a restore whose planned files are deleted meanwhile plans again and succeeds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-retention-race-" });
  try {
    const h = sampleHistory(dir, 12);
    const inner = new MemoryObjectStore("file");
    const store = new RacingStore(inner);
    const client = new ReplicaClient(inner, "app");
    await putLtx(client, h, 9, 1, 3);
    for (let t = 1; t <= 12; t++) await putLtx(client, h, 0, t, t);
    const compactor = new Compactor(client, {
      name: "app",
      compactionIntervalsMs: [30_000],
      retention: POLICY,
    });
    let deleted = 0;
    // The restore lists L9 1-3 + L0 4…12 and plans them; before its first download, compaction writes L1 1-12
    // and retention deletes the L0 files the plan was going to read.
    store.beforeFirstGet = async () => {
      await compactor.compact(h.times[12] + HOUR, true);
      deleted =
        (await enforceRetention(client, { retention: POLICY, now: h.times[12] + HOUR, graceMs: 0 })).deleted;
    };
    const out = `${dir}/out.db`;
    const r = await restoreDatabase(new ReplicaClient(store, "app"), { output: out });
    assert.equal(deleted, 11);
    assert.equal(r.txid, 12);
    assert.deepEqual(r.plan.map((f) => `${f.level}:${f.minTXID}-${f.maxTXID}`), ["9:1-3", "1:1-12"]);
    assert.deepEqual(await Deno.readFile(out), h.states[12]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
