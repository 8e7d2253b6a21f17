import assert from "node:assert/strict";
import fc from "fast-check";
import { GapError, NotFoundError } from "../errors.ts";
import { calcRestorePlan, isBetterCandidate, type PlanFile, SNAPSHOT_LEVEL } from "./plan.ts";

interface F extends PlanFile {
  id: string;
}

let seq = 0;
function f(level: number, min: number, max: number, createdAt = 1000 * max + level): F {
  return {
    level,
    minTXID: min,
    maxTXID: max,
    createdAt: new Date(createdAt),
    id: `${level}:${min}-${max}#${seq++}`,
  };
}
function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail("expected an error");
}
const ranges = (plan: PlanFile[]) => plan.map((p) => `L${p.level}:${p.minTXID}-${p.maxTXID}`);

// ---------------------------------------------------------------------------------------------------------
// Unit tests: the exact rules of Litestream's CalcRestorePlan.

Deno.test("plan: L0 chain from TXID 1 without a snapshot restores to the newest TXID", () => {
  const files = [f(0, 1, 1), f(0, 2, 2), f(0, 3, 3)];
  assert.deepEqual(ranges(calcRestorePlan(files)), ["L0:1-1", "L0:2-2", "L0:3-3"]);
});

Deno.test("plan: starts from the newest snapshot and prefers the file that reaches furthest", () => {
  const files = [
    f(9, 1, 5),
    f(9, 1, 10),
    f(0, 1, 1),
    f(0, 11, 11),
    f(0, 12, 12),
    f(0, 13, 13),
    f(1, 11, 12),
    f(2, 1, 13),
  ];
  // L2 1-13 extends furthest from cur=10 (MinTXID 1 ≤ 11).
  assert.deepEqual(ranges(calcRestorePlan(files)), ["L9:1-10", "L2:1-13"]);
});

Deno.test("plan: tie-break order is higher MaxTXID, then lower MinTXID, then higher level, then earlier CreatedAt", () => {
  const a = f(1, 5, 10, 100);
  assert.equal(isBetterCandidate(a, f(0, 6, 11, 100)), true, "higher MaxTXID wins");
  assert.equal(isBetterCandidate(a, f(0, 4, 10, 100)), true, "lower MinTXID wins");
  assert.equal(isBetterCandidate(a, f(2, 5, 10, 100)), true, "higher level wins");
  assert.equal(isBetterCandidate(a, f(0, 5, 10, 100)), false, "lower level loses");
  assert.equal(isBetterCandidate(a, f(1, 5, 10, 99)), true, "earlier CreatedAt wins");
  assert.equal(isBetterCandidate(a, f(1, 5, 10, 101)), false, "later CreatedAt loses");

  const files = [f(9, 1, 4), f(0, 5, 8, 50), f(1, 5, 8, 60), f(3, 2, 8, 70)];
  // Same MaxTXID 8: lower MinTXID (2, level 3) beats the level-1 and level-0 files.
  assert.deepEqual(ranges(calcRestorePlan(files)), ["L9:1-4", "L3:2-8"]);
  const same = [f(9, 1, 4), f(0, 5, 8, 50), f(1, 5, 8, 60)];
  assert.deepEqual(ranges(calcRestorePlan(same)), ["L9:1-4", "L1:5-8"]);
});

Deno.test("plan: --txid picks the newest snapshot with MaxTXID ≤ T and stops exactly at T", () => {
  const files = [f(9, 1, 3), f(9, 1, 8), ...[1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => f(0, i, i)), f(1, 4, 9)];
  assert.deepEqual(ranges(calcRestorePlan(files, { txid: 6 })), ["L9:1-3", "L0:4-4", "L0:5-5", "L0:6-6"]);
  assert.deepEqual(ranges(calcRestorePlan(files, { txid: 8 })), ["L9:1-8"]);
  assert.deepEqual(ranges(calcRestorePlan(files, { txid: 9 })), ["L9:1-8", "L1:4-9"]);
});

Deno.test("plan: --timestamp uses CreatedAt strictly before the time", () => {
  const files = [f(9, 1, 2, 2000), f(0, 1, 1, 1000), f(0, 2, 2, 2000), f(0, 3, 3, 3000), f(0, 4, 4, 4000)];
  assert.deepEqual(ranges(calcRestorePlan(files, { timestamp: new Date(3000) })), ["L9:1-2"]);
  assert.deepEqual(ranges(calcRestorePlan(files, { timestamp: new Date(3001) })), ["L9:1-2", "L0:3-3"]);
  assert.deepEqual(ranges(calcRestorePlan(files, { timestamp: new Date(2000) })), ["L0:1-1"]);
});

Deno.test("plan: latest restore with a gap names the missing TXIDs", () => {
  const files = [f(9, 1, 3), f(0, 4, 4), f(0, 7, 7), f(0, 8, 8)];
  const err = catchError(() => calcRestorePlan(files, {}, "app"));
  assert.ok(err instanceof GapError, String(err));
  assert.equal(err.fromTxid, 5);
  assert.equal(err.toTxid, 6);
  assert.match(err.message, /^app: .*TXIDs 5–6 missing/);
  assert.equal(err.exitCode, 8);
});

Deno.test("plan: a gap after the target does not matter for --txid", () => {
  const files = [f(9, 1, 3), f(0, 4, 4), f(0, 7, 7)];
  assert.deepEqual(ranges(calcRestorePlan(files, { txid: 4 })), ["L9:1-3", "L0:4-4"]);
  assert.throws(
    () => calcRestorePlan(files, { txid: 7 }),
    (e: unknown) =>
      e instanceof NotFoundError && /no backup covers TXID 7: TXIDs 5–6 missing/.test(e.message),
  );
});

Deno.test("plan: empty replica, target before the first backup, target past the newest", () => {
  assert.throws(
    () => calcRestorePlan([]),
    (e: unknown) => e instanceof NotFoundError && /no backup found/.test(e.message),
  );
  const files = [f(9, 1, 5, 5000), f(0, 6, 6, 6000)];
  assert.throws(
    () => calcRestorePlan(files, { txid: 3 }),
    (e: unknown) =>
      e instanceof NotFoundError &&
      /no backup covers TXID 3; the earliest restorable TXID is 5/.test(e.message),
  );
  assert.throws(
    () => calcRestorePlan(files, { txid: 10 }),
    (e: unknown) => e instanceof NotFoundError && /the newest backup is at TXID 6/.test(e.message),
  );
  assert.throws(
    () => calcRestorePlan(files, { timestamp: new Date(4000) }),
    (e: unknown) =>
      e instanceof NotFoundError &&
      e.message ===
        `no backup at or before ${new Date(4000).toISOString()}; the first backup is at ${
          new Date(5000).toISOString()
        }`,
  );
});

Deno.test("plan: no snapshot and no TXID-1 file is not found, naming the missing range", () => {
  assert.throws(
    () => calcRestorePlan([f(0, 5, 5), f(0, 6, 6)]),
    (e: unknown) =>
      e instanceof NotFoundError && /oldest file starts at TXID 5 \(TXIDs 1–4 missing\)/.test(e.message),
  );
});

Deno.test("plan: timestamp restore fails on a gap among files created before the time", () => {
  const files = [f(0, 1, 1, 1000), f(0, 3, 3, 3000), f(0, 5, 5, 9000)];
  assert.throws(() => calcRestorePlan(files, { timestamp: new Date(4000) }), GapError);
  // The gap 4 lies after the time: not an error.
  const ok = [f(0, 1, 1, 1000), f(0, 2, 2, 2000), f(0, 5, 5, 9000)];
  assert.deepEqual(ranges(calcRestorePlan(ok, { timestamp: new Date(4000) })), ["L0:1-1", "L0:2-2"]);
});

// ---------------------------------------------------------------------------------------------------------
// Property tests: random histories, random replicas built from them, and an independent oracle.

/** One transaction: the pages it writes (pgno → value) and the database size in pages after it. */
interface Txn {
  writes: Map<number, number>;
  commit: number;
  at: number;
}

/** A file of the model replica, carrying the merged writes of its TXID range. */
interface ModelFile extends F {
  writes: Map<number, number>;
  commit: number;
}

const historyArb = fc.array(
  fc.record({
    size: fc.integer({ min: 1, max: 8 }),
    pages: fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 4 }),
    gap: fc.integer({ min: 1, max: 5 }),
  }),
  { minLength: 1, maxLength: 30 },
).map((steps) => {
  const txns: Txn[] = [];
  let prev = 0;
  let at = 10_000;
  steps.forEach((s, i) => {
    const writes = new Map<number, number>();
    // Growth pages are always written (as SQLite and Litestream's L0 growth pages do); page 1 changes too.
    for (let p = prev + 1; p <= s.size; p++) writes.set(p, (i + 1) * 100 + p);
    for (const p of s.pages) if (p <= s.size) writes.set(p, (i + 1) * 100 + p);
    writes.set(1, (i + 1) * 100 + 1);
    at += s.gap * 1000;
    txns.push({ writes, commit: s.size, at });
    prev = s.size;
  });
  return txns;
});

/** The database at TXID t (1-based): pgno → value for pages 1…commit. */
function stateAt(txns: Txn[], t: number): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < t; i++) for (const [p, v] of txns[i].writes) m.set(p, v);
  const commit = txns[t - 1].commit;
  for (const p of [...m.keys()]) if (p > commit) m.delete(p);
  return m;
}

function makeFile(txns: Txn[], level: number, min: number, max: number, createdAt: number): ModelFile {
  const writes = new Map<number, number>();
  if (min === 1) {
    for (const [p, v] of stateAt(txns, max)) writes.set(p, v);
  } else {
    for (let i = min - 1; i < max; i++) for (const [p, v] of txns[i].writes) writes.set(p, v);
  }
  const commit = txns[max - 1].commit;
  for (const p of [...writes.keys()]) if (p > commit) writes.delete(p);
  return {
    level,
    minTXID: min,
    maxTXID: max,
    createdAt: new Date(createdAt),
    writes,
    commit,
    id: `${level}:${min}-${max}`,
  };
}

/** Splits the files of `below` into consecutive groups, compacting a prefix of them (as Litestream does). */
function compactLevel(
  txns: Txn[],
  below: ModelFile[],
  level: number,
  cuts: boolean[],
  delay: number,
  take: number,
): ModelFile[] {
  const sorted = [...below].sort((a, b) => a.minTXID - b.minTXID);
  const n = Math.floor(sorted.length * take);
  const out: ModelFile[] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (i === n - 1 || cuts[i % cuts.length]) {
      const group = sorted.slice(start, i + 1);
      const createdAt = Math.max(...group.map((g) => g.createdAt.getTime())) + delay;
      out.push(makeFile(txns, level, group[0].minTXID, group[group.length - 1].maxTXID, createdAt));
      start = i + 1;
    }
  }
  return out;
}

const replicaArb = historyArb.chain((txns) =>
  fc.record({
    txns: fc.constant(txns),
    l0cuts: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
    levels: fc.array(
      fc.record({
        cuts: fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
        take: fc.double({ min: 0, max: 1, noNaN: true }),
        delay: fc.integer({ min: 0, max: 7000 }),
      }),
      { minLength: 3, maxLength: 3 },
    ),
    snapshots: fc.array(
      fc.record({ t: fc.integer({ min: 1, max: txns.length }), delay: fc.integer({ min: 0, max: 9000 }) }),
      {
        maxLength: 3,
      },
    ),
    dropSeed: fc.integer({ min: 1, max: 0x7fffffff }),
    dropRate: fc.constantFrom(0, 0, 0.1, 0.3),
    txidTarget: fc.integer({ min: 1, max: txns.length + 2 }),
    tsTarget: fc.integer({ min: 9_000, max: txns[txns.length - 1].at + 20_000 }),
  })
).map((r) => {
  const { txns } = r;
  // L0: a random partition of 1…N into contiguous files, each created when its last transaction was read.
  const l0: ModelFile[] = [];
  let start = 1;
  for (let t = 1; t <= txns.length; t++) {
    if (t === txns.length || r.l0cuts[t % r.l0cuts.length]) {
      l0.push(makeFile(txns, 0, start, t, txns[t - 1].at));
      start = t + 1;
    }
  }
  const all: ModelFile[] = [...l0];
  let below = l0;
  r.levels.forEach((lv, i) => {
    below = compactLevel(txns, below, i + 1, lv.cuts, lv.delay, lv.take);
    all.push(...below);
  });
  for (const s of r.snapshots) all.push(makeFile(txns, SNAPSHOT_LEVEL, 1, s.t, txns[s.t - 1].at + s.delay));
  // Retention and accidents: drop some files at random.
  const rand = mulberry32(r.dropSeed);
  const kept = all.filter(() => rand() >= r.dropRate);
  // Unique keys only (a level cannot hold the same range twice).
  const seen = new Set<string>();
  const files = kept.filter((x) => !seen.has(x.id) && seen.add(x.id));
  return { txns, files, txidTarget: r.txidTarget, tsTarget: r.tsTarget };
});

/** A tiny deterministic PRNG, so that which files get dropped is independent per file yet reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Oracle: the highest TXID a contiguous chain of eligible files starting at TXID 1 reaches (0 = none). */
function reachable(files: PlanFile[], eligible: (x: PlanFile) => boolean, limit: number): number {
  const reach = new Array<boolean>(limit + 1).fill(false);
  reach[0] = true;
  for (let x = 1; x <= limit; x++) {
    reach[x] = files.some((fl) => {
      if (!eligible(fl) || fl.maxTXID !== x) return false;
      for (let y = Math.max(0, fl.minTXID - 1); y < x; y++) if (reach[y]) return true;
      return false;
    });
  }
  let best = 0;
  for (let x = 0; x <= limit; x++) if (reach[x]) best = x;
  return best;
}

/** Applies a plan like the compactor + DecodeDatabaseTo: latest wins, pages past the final commit dropped. */
function applyPlan(plan: ModelFile[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of plan) for (const [k, v] of p.writes) m.set(k, v);
  const commit = plan[plan.length - 1].commit;
  for (const k of [...m.keys()]) if (k > commit) m.delete(k);
  for (let p = 1; p <= commit; p++) assert.ok(m.has(p), `page ${p} missing from the merged plan`);
  return m;
}

function assertContiguousFromOne(plan: PlanFile[]): void {
  assert.ok(plan.length > 0);
  assert.equal(plan[0].minTXID, 1, "plan starts at TXID 1");
  for (let i = 1; i < plan.length; i++) {
    assert.ok(plan[i].minTXID <= plan[i - 1].maxTXID + 1, `contiguous at ${i}: ${ranges(plan)}`);
    assert.ok(plan[i].maxTXID > plan[i - 1].maxTXID, `each file extends the range: ${ranges(plan)}`);
  }
}

Deno.test("plan property: latest restore is contiguous from TXID 1, reaches the newest TXID, equals the history", () => {
  fc.assert(
    fc.property(replicaArb, ({ txns, files }) => {
      const limit = txns.length;
      const r = reachable(files, () => true, limit);
      const beyond = files.filter((x) => x.level !== SNAPSHOT_LEVEL && x.minTXID > r + 1);
      if (r === 0) {
        assert.throws(() => calcRestorePlan(files), NotFoundError);
        return;
      }
      if (beyond.length > 0) {
        assert.throws(
          () => calcRestorePlan(files),
          (e: unknown) => e instanceof GapError && e.fromTxid === r + 1,
        );
        return;
      }
      const plan = calcRestorePlan(files);
      assertContiguousFromOne(plan);
      assert.equal(plan[plan.length - 1].maxTXID, r);
      assert.equal(r, Math.max(...files.map((x) => x.maxTXID)), "no gap means the newest TXID is reached");
      assert.deepEqual(applyPlan(plan), stateAt(txns, r));
    }),
    { numRuns: 400 },
  );
});

Deno.test("plan property: --txid ends exactly at the target or fails exactly when it is unreachable", () => {
  fc.assert(
    fc.property(replicaArb, ({ txns, files, txidTarget }) => {
      const r = reachable(files, (x) => x.maxTXID <= txidTarget, Math.min(txidTarget, txns.length));
      if (r !== txidTarget) {
        assert.throws(() => calcRestorePlan(files, { txid: txidTarget }), NotFoundError);
        return;
      }
      const plan = calcRestorePlan(files, { txid: txidTarget });
      assertContiguousFromOne(plan);
      assert.equal(plan[plan.length - 1].maxTXID, txidTarget);
      assert.deepEqual(applyPlan(plan), stateAt(txns, txidTarget));
    }),
    { numRuns: 400 },
  );
});

Deno.test("plan property: --timestamp restores the newest state made of files created before the time", () => {
  fc.assert(
    fc.property(replicaArb, ({ txns, files, tsTarget }) => {
      const eligible = (x: PlanFile) => x.createdAt.getTime() < tsTarget;
      const r = reachable(files, eligible, txns.length);
      const ts = new Date(tsTarget);
      const beyond = files.filter((x) => x.level !== SNAPSHOT_LEVEL && eligible(x) && x.minTXID > r + 1);
      if (r === 0) {
        assert.throws(() => calcRestorePlan(files, { timestamp: ts }), NotFoundError);
        return;
      }
      if (beyond.length > 0) {
        assert.throws(() => calcRestorePlan(files, { timestamp: ts }), GapError);
        return;
      }
      const plan = calcRestorePlan(files, { timestamp: ts });
      assertContiguousFromOne(plan);
      for (const p of plan) assert.ok(p.createdAt.getTime() < tsTarget);
      assert.equal(plan[plan.length - 1].maxTXID, r);
      assert.deepEqual(applyPlan(plan), stateAt(txns, r));
      // Files are created no earlier than their last transaction, so the state is never from the future; with
      // every L0 file kept it is at least the newest L0 file created before the time.
      const lastBefore = txns.filter((t) => t.at < tsTarget).length;
      assert.ok(r <= lastBefore);
      const l0 = files.filter((x) => x.level === 0);
      const l0Intact = l0.reduce((n, x) => n + x.maxTXID - x.minTXID + 1, 0) === txns.length;
      if (l0Intact) assert.ok(r >= Math.max(0, ...l0.filter(eligible).map((x) => x.maxTXID)));
    }),
    { numRuns: 400 },
  );
});
