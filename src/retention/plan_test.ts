import assert from "node:assert/strict";
import fc from "fast-check";
import { calcRestorePlan, SNAPSHOT_LEVEL } from "../restore/plan.ts";
import { compactionSchedule, simulateCompaction } from "./compact.ts";
import { chainProblem, planRetention, type RetentionFile, verifyRetention } from "./plan.ts";

const T0 = Date.UTC(2025, 4, 1, 0, 0, 0);
const MIN = 60_000;
const NONE = { hourly: 0, daily: 0, weekly: 0, monthly: 0 };

function file(level: number, min: number, max: number, createdAt: number, size = 100): RetentionFile {
  return {
    level,
    minTXID: min,
    maxTXID: max,
    createdAt: new Date(createdAt),
    size,
    key: `L${level}/${min}-${max}`,
  };
}

function keys(list: { file: RetentionFile }[]): string[] {
  return list.map((d) => d.file.key);
}

function reasons(list: { file: RetentionFile; reason: string }[]): Record<string, string> {
  return Object.fromEntries(list.map((d) => [d.file.key, d.reason]));
}

Deno.test("retention plan: snapshots, superseded levels, PITR points, newest-of-level and grace", () => {
  const time = (t: number) => T0 + t * MIN; // TXID t committed at minute t
  const files: RetentionFile[] = [
    file(9, 1, 5, time(5)),
    file(9, 1, 12, time(12)),
    ...Array.from({ length: 20 }, (_, i) => file(0, i + 1, i + 1, time(i + 1))),
    file(1, 1, 10, time(10)),
    file(1, 11, 16, time(16)),
    file(2, 1, 16, time(16)),
  ];
  const now = time(20) + 2 * MIN; // L0 18, 19, 20 are younger than 5 minutes
  const plan = planRetention(files, { snapshots: NONE, graceMs: 5 * MIN }, now);
  assert.equal(plan.latestTXID, 20);
  assert.equal(plan.floorTXID, 12);
  assert.deepEqual(plan.restorePoints, [12, 16, 17, 18, 19, 20]);
  assert.deepEqual(plan.unrestorable, []);
  const del = reasons(plan.delete);
  for (let t = 1; t <= 12; t++) {
    assert.equal(del[`L0/${t}-${t}`], "before the oldest kept snapshot (TXID 12)");
  }
  for (let t = 13; t <= 16; t++) {
    assert.equal(del[`L0/${t}-${t}`], "level 2 holds its TXIDs (through 16); no kept restore point needs it");
  }
  assert.equal(del["L1/1-10"], "before the oldest kept snapshot (TXID 12)");
  assert.match(del["L9/1-5"], /^snapshot not kept by GFS: older than every GFS tier keeps/);
  assert.equal(Object.keys(del).length, 18);
  assert.deepEqual(reasons(plan.keep), {
    "L9/1-12": "snapshot kept: newest",
    "L0/17-17": "needed to restore TXID 17",
    "L0/18-18": "needed to restore TXID 18",
    "L0/19-19": "needed to restore TXID 19",
    "L0/20-20": "newest file of level 0 (never deleted)",
    "L1/11-16": "newest file of level 1 (never deleted)",
    "L2/1-16": "newest file of level 2 (never deleted)",
  });
  // Newest TXIDs first, snapshots last.
  assert.deepEqual(keys(plan.delete).slice(0, 5), [
    "L0/16-16",
    "L0/15-15",
    "L0/14-14",
    "L0/13-13",
    "L0/12-12",
  ]);
  assert.deepEqual(keys(plan.delete).slice(-3), ["L0/2-2", "L0/1-1", "L9/1-5"]);
  assert.ok(keys(plan.delete).indexOf("L0/10-10") < keys(plan.delete).indexOf("L1/1-10"));
  assert.ok(keys(plan.delete).indexOf("L1/1-10") < keys(plan.delete).indexOf("L0/9-9"));
  assert.equal(plan.deleteBytes, 1800);
  assert.deepEqual(verifyRetention(plan), []);

  // Ten minutes later 17–20 are old too, but nothing coarser holds them: they stay, as PITR points.
  const later = planRetention(files, { snapshots: NONE, graceMs: 5 * MIN }, now + 10 * MIN);
  assert.deepEqual(later.restorePoints, [12, 16, 17, 18, 19, 20]);
  assert.equal(reasons(later.keep)["L0/18-18"], "needed to restore TXID 18");
  assert.deepEqual(keys(later.delete), keys(plan.delete));
});

Deno.test("retention plan: a superseded file that a young point's plan needs is kept", () => {
  const time = (t: number) => T0 + t * MIN;
  // L2 1-12 was written late (at TXID 12's time): TXID 11 cannot use it, so its plan goes through L1 5-10.
  const files = [
    file(9, 1, 4, time(4)),
    ...Array.from({ length: 12 }, (_, i) => file(0, i + 1, i + 1, time(i + 1))),
    file(1, 5, 10, time(10)),
    file(1, 11, 11, time(11)),
    file(2, 1, 12, time(12)),
  ];
  const plan = planRetention(files, { snapshots: { ...NONE, daily: 1 }, graceMs: 3 * MIN }, time(12) + MIN);
  assert.deepEqual(plan.restorePoints, [4, 11, 12]);
  assert.deepEqual(reasons(plan.keep), {
    "L9/1-4": "snapshot kept: newest, daily 2025-05-01",
    "L0/11-11": "younger than the retention grace period (3m)",
    "L0/12-12": "newest file of level 0 (never deleted)",
    "L1/5-10": "needed to restore TXID 11",
    "L1/11-11": "newest file of level 1 (never deleted)",
    "L2/1-12": "newest file of level 2 (never deleted)",
  });
  assert.deepEqual(keys(plan.delete), Array.from({ length: 10 }, (_, i) => `L0/${10 - i}-${10 - i}`));
  assert.equal(
    reasons(plan.delete)["L0/7-7"],
    "level 2 holds its TXIDs (through 12); no kept restore point needs it",
  );
  assert.equal(reasons(plan.delete)["L0/4-4"], "before the oldest kept snapshot (TXID 4)");
  assert.deepEqual(verifyRetention(plan), []);
});

Deno.test("retention plan: a gap keeps everything around it and reports the unrestorable points", () => {
  const time = (t: number) => T0 + t * MIN;
  const l0 = Array.from({ length: 20 }, (_, i) => i + 1).filter((t) => t !== 15);
  const files = [
    file(9, 1, 10, time(10)),
    ...l0.map((t) => file(0, t, t, time(t))),
    file(1, 11, 14, time(14)),
    file(1, 16, 20, time(20)),
  ];
  const plan = planRetention(files, { snapshots: NONE, graceMs: 0 }, time(100));
  assert.deepEqual(plan.restorePoints, [10, 14, 20]);
  assert.deepEqual(plan.unrestorable.map((u) => u.txid), [20]);
  assert.match(plan.unrestorable[0].message, /TXID 20/);
  const keep = reasons(plan.keep);
  for (const t of [11, 12, 13, 14, 16, 17, 18, 19]) {
    assert.equal(
      keep[`L0/${t}-${t}`],
      "the chain around it has a gap; kept until a snapshot bridges it",
      `${t}`,
    );
  }
  assert.deepEqual(keys(plan.delete), Array.from({ length: 10 }, (_, i) => `L0/${10 - i}-${10 - i}`));
  assert.deepEqual(verifyRetention(plan), []);

  // A later snapshot bridges the gap: from then on the files before it can go.
  const bridged = planRetention(
    [...files, file(9, 1, 20, time(20))],
    { snapshots: NONE, graceMs: 0 },
    time(100),
  );
  assert.deepEqual(bridged.unrestorable, []);
  assert.deepEqual(bridged.floorTXID, 20);
  assert.equal(bridged.delete.length, 20); // every L0 but the newest, L1 11-14 and the older snapshot
  assert.deepEqual(verifyRetention(bridged), []);
});

Deno.test("retention plan: without snapshots the chain from TXID 1 is kept; unknown levels are left alone", () => {
  const time = (t: number) => T0 + t * MIN;
  const files = [
    ...Array.from({ length: 10 }, (_, i) => file(0, i + 1, i + 1, time(i + 1))),
    file(1, 1, 10, time(10)),
    file(12, 1, 3, time(3)),
  ];
  const plan = planRetention(
    files,
    { snapshots: { hourly: 24, daily: 7, weekly: 12, monthly: 12 } },
    time(60),
  );
  assert.equal(plan.floorTXID, 0);
  assert.deepEqual(plan.restorePoints, [10]);
  assert.deepEqual(keys(plan.delete), Array.from({ length: 9 }, (_, i) => `L0/${9 - i}-${9 - i}`));
  assert.equal(reasons(plan.keep)["L12/1-3"], "level 12 is not used by walrust; left alone");
  assert.deepEqual(verifyRetention(plan), []);
  assert.deepEqual(planRetention([], { snapshots: NONE }, 0).restorePoints, []);
});

Deno.test("retention verify: reports a kept set that no longer restores a retained point", () => {
  const time = (t: number) => T0 + t * MIN;
  const files = [file(9, 1, 2, time(2)), file(0, 3, 3, time(3)), file(0, 4, 4, time(4))];
  const plan = planRetention(files, { snapshots: NONE, graceMs: 0 }, time(60));
  assert.deepEqual(verifyRetention(plan), []);
  const broken = { ...plan, keep: plan.keep.filter((d) => d.file.key !== "L0/3-3") };
  const problems = verifyRetention(broken);
  assert.ok(problems.some((p) => p.startsWith("TXID 3:")), problems.join("\n"));
  assert.ok(problems.some((p) => p.startsWith("latest restore:")), problems.join("\n"));
  assert.equal(chainProblem([], 5), "no plan for TXID 5");
  assert.match(chainProblem([file(0, 2, 3, 0)], 3)!, /starts at TXID 2/);
  assert.match(chainProblem([file(9, 1, 2, 0), file(0, 4, 4, 0)], 4)!, /not contiguous/);
  assert.match(chainProblem([file(9, 1, 2, 0)], 4)!, /ends at TXID 2/);
});

// ---------------------------------------------------------------------------------------------------------
// Property: random histories (syncs, snapshots, compactions, lost uploads, retention passes over time) and
// random policies. After retention, every retained restore point that could be restored before is restored
// by a contiguous plan from the kept files — by TXID and by time — and so is every intermediate state of the
// deletion; nothing deleted is used by any point's plan; running retention again deletes nothing.

interface Step {
  dt: number;
  snapshot: boolean;
  compact: boolean;
  lose: boolean;
  retain: boolean;
}

const stepArb: fc.Arbitrary<Step> = fc.record({
  dt: fc.oneof(
    fc.integer({ min: 1_000, max: 60_000 }),
    fc.integer({ min: 60_000, max: 3_600_000 }),
    fc.integer({ min: 3_600_000, max: 3 * 86_400_000 }),
  ),
  snapshot: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
  compact: fc.boolean(),
  lose: fc.integer({ min: 0, max: 40 }).map((n) => n === 0),
  retain: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
});

const scenarioArb = fc.record({
  steps: fc.array(stepArb, { minLength: 1, maxLength: 90, size: "max" }),
  intervals: fc.constantFrom<number[]>([], [30_000], [30_000, 300_000, 3_600_000], [60_000, 86_400_000]),
  retention: fc.record({
    hourly: fc.integer({ min: 0, max: 6 }),
    daily: fc.integer({ min: 0, max: 4 }),
    weekly: fc.integer({ min: 0, max: 3 }),
    monthly: fc.integer({ min: 0, max: 2 }),
  }),
  graceMs: fc.constantFrom(0, 60_000, 300_000),
  force: fc.boolean(),
  tail: fc.integer({ min: 0, max: 40 * 86_400_000 }),
  cut: fc.double({ min: 0, max: 1, noNaN: true }),
});

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never;

/** Plays a history; returns the listing, the commit time of each TXID and the final time. */
function play(s: Scenario): { files: RetentionFile[]; times: number[]; now: number } {
  const schedule = compactionSchedule(s.intervals);
  let files: RetentionFile[] = [];
  const times = [0];
  let now = T0;
  const make = (level: number, min: number, max: number, createdAt: Date, size: number): RetentionFile => ({
    level,
    minTXID: min,
    maxTXID: max,
    createdAt,
    size,
    key: `L${level}/${min}-${max}`,
  });
  s.steps.forEach((st, i) => {
    const t = i + 1;
    now += st.dt;
    times.push(now);
    if (!st.lose) files.push(file(0, t, t, now));
    if (st.snapshot) files.push(file(SNAPSHOT_LEVEL, 1, t, now));
    if (st.compact) {
      const keysBefore = new Set(files.map((f) => f.key));
      const sim = simulateCompaction(files, schedule, { now, force: s.force }, make);
      // A real compaction overwrites an existing key with the same range; keep one entry per key.
      files = [...files, ...sim.files.filter((f) => !keysBefore.has(f.key))];
    }
    if (st.retain) {
      const plan = planRetention(files, { snapshots: s.retention, graceMs: s.graceMs }, now);
      assert.deepEqual(verifyRetention(plan), []);
      const gone = new Set(plan.delete.map((d) => d.file));
      files = files.filter((f) => !gone.has(f));
    }
  });
  return { files, times, now: now + s.tail };
}

/**
 * Every retained, restorable point restores from `kept` by TXID (exact) and by time (the point's state); and a
 * restore by any later time up to the next point succeeds with a state at least as new as the last point
 * before it (never a gap error where the listing `before` retention had none, unless an unrestorable point
 * lies in between) — the guarantee for times between points.
 */
function checkPoints(
  kept: RetentionFile[],
  points: number[],
  times: number[],
  what: string,
  before: RetentionFile[],
  unrestorable: number[],
): void {
  for (const t of points) {
    const byTxid = calcRestorePlan(kept, { txid: t });
    assert.equal(chainProblem(byTxid, t), null, `${what}: TXID ${t}`);
    const byTime = calcRestorePlan(kept, { timestamp: new Date(times[t] + 1) });
    assert.equal(byTime[byTime.length - 1].maxTXID, t, `${what}: time of TXID ${t}`);
    assert.equal(chainProblem(byTime, t), null, `${what}: time of TXID ${t}`);
  }
  if (points.length === 0) return;
  let p = 0;
  for (let t = points[0]; t < times.length; t++) {
    while (p + 1 < points.length && points[p + 1] <= t) p++;
    // Past a point that cannot be restored (a lost upload no snapshot bridges), the files kept around the gap
    // make a restore by time report the gap instead of silently falling back: not a retention guarantee.
    if (unrestorable.some((u) => u > points[p] && u <= t)) continue;
    const at = { timestamp: new Date(times[t] + 1) };
    try {
      calcRestorePlan(before, at);
    } catch {
      continue; // the history itself has a gap there (a lost upload): nothing to preserve
    }
    const plan = calcRestorePlan(kept, { timestamp: new Date(times[t] + 1) });
    const got = plan[plan.length - 1].maxTXID;
    assert.ok(got >= points[p] && got <= t, `${what}: time of TXID ${t} restored TXID ${got}`);
  }
}

Deno.test("retention plan (property): retained restore points survive deletion, exactly the unused files go", () => {
  fc.assert(
    fc.property(scenarioArb, (s) => {
      const { files, times, now } = play(s);
      const plan = planRetention(files, { snapshots: s.retention, graceMs: s.graceMs }, now);
      assert.deepEqual(verifyRetention(plan), []);

      // Partition, newest-of-level and GFS invariants.
      assert.equal(plan.keep.length + plan.delete.length, files.length);
      const kept = plan.keep.map((d) => d.file);
      const deleted = new Set(plan.delete.map((d) => d.file));
      for (let level = 0; level <= SNAPSHOT_LEVEL; level++) {
        const lv = files.filter((f) => f.level === level).sort((a, b) =>
          a.minTXID - b.minTXID || a.maxTXID - b.maxTXID
        );
        if (lv.length > 0) assert.ok(!deleted.has(lv[lv.length - 1]), `newest of level ${level} deleted`);
      }
      for (const d of plan.gfs.keep) assert.ok(!deleted.has(d.snapshot));

      // Exactly: no plan of a retained point (over the listing without the deleted snapshots) uses a deleted
      // file.
      const dropped = new Set(plan.delete.filter((d) => d.file.level === SNAPSHOT_LEVEL).map((d) => d.file));
      const live = files.filter((f) => !dropped.has(f));
      const broken = new Set(plan.unrestorable.map((u) => u.txid));
      const points = plan.restorePoints.filter((t) => !broken.has(t));
      for (const t of points) {
        for (const f of calcRestorePlan(live, { txid: t })) {
          assert.ok(!deleted.has(f), `TXID ${t} needs ${f.key}`);
        }
      }
      // Every deleted incremental is superseded: old enough, and held by a coarser level or the floor.
      for (const d of plan.delete) {
        if (d.file.level === SNAPSHOT_LEVEL) continue;
        assert.ok(
          d.file.createdAt.getTime() <= now - s.graceMs,
          `${d.file.key} deleted inside the grace period`,
        );
      }

      // After deletion, and at an intermediate point of it (a prefix of the order), by TXID and by time.
      checkPoints(kept, points, times, "after", files, [...broken]);
      const prefix = plan.delete.slice(0, Math.floor(plan.delete.length * s.cut)).map((d) => d.file);
      const gone = new Set(prefix);
      checkPoints(
        files.filter((f) => !gone.has(f)),
        points,
        times,
        `after ${prefix.length} deletions`,
        files,
        [...broken],
      );
      if (plan.latestTXID > 0 && !broken.has(plan.latestTXID)) {
        const latest = calcRestorePlan(kept);
        assert.equal(latest[latest.length - 1].maxTXID, plan.latestTXID);
      }

      // Idempotent: a second pass at the same time deletes nothing and keeps the same points.
      const again = planRetention(kept, { snapshots: s.retention, graceMs: s.graceMs }, now);
      assert.deepEqual(keys(again.delete), []);
      assert.deepEqual(again.restorePoints, plan.restorePoints);
    }),
    { numRuns: 1000 },
  );
});
