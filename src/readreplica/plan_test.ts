import assert from "node:assert/strict";
import fc from "fast-check";
import type { PlanFile } from "../restore/plan.ts";
import { planFollow } from "./plan.ts";

const f = (level: number, minTXID: number, maxTXID: number): PlanFile => ({
  level,
  minTXID,
  maxTXID,
  createdAt: new Date(1_700_000_000_000 + maxTXID * 1000),
});
const names = (files: PlanFile[]) => files.map((x) => `${x.level}:${x.minTXID}-${x.maxTXID}`);

Deno.test("planFollow: next L0 files in order from cur + 1", () => {
  const files = [f(9, 1, 5), f(0, 4, 4), f(0, 5, 5), f(0, 6, 6), f(0, 7, 7)];
  const p = planFollow(files, 5);
  assert.deepEqual(names(p.chain), ["0:6-6", "0:7-7"]);
  assert.equal(p.end, 7);
  assert.equal(p.gap, null);
});

Deno.test("planFollow: a compacted file that overlaps what is applied is preferred when it reaches further", () => {
  const files = [f(1, 1, 10), f(0, 9, 9), f(0, 10, 10), f(0, 11, 11)];
  const p = planFollow(files, 8);
  assert.deepEqual(names(p.chain), ["1:1-10", "0:11-11"]);
  assert.equal(p.end, 11);
});

Deno.test("planFollow: gaps, snapshots beyond reach, and a replica that went backwards", () => {
  const gap = planFollow([f(0, 6, 6), f(0, 9, 9)], 5);
  assert.deepEqual(names(gap.chain), ["0:6-6"]);
  assert.deepEqual(gap.gap, { from: 7, to: 8 });
  const snap = planFollow([f(9, 1, 20), f(0, 21, 21)], 5);
  assert.deepEqual(snap.chain, []);
  assert.deepEqual(snap.gap, { from: 6, to: 20 });
  const idle = planFollow([f(9, 1, 5), f(0, 5, 5)], 5);
  assert.deepEqual([idle.chain.length, idle.gap, idle.replicaMax], [0, null, 5]);
  assert.equal(planFollow([f(9, 1, 3)], 5).replicaMax, 3);
});

Deno.test("planFollow (property): the chain is contiguous and reaches the furthest TXID any path reaches", () => {
  // Files cut from one history 1…n: some L0 files, some compacted ranges, maybe a snapshot.
  const arb = fc.record({
    n: fc.integer({ min: 1, max: 40 }),
    cur: fc.integer({ min: 0, max: 40 }),
    l0: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 40 }),
    ranges: fc.array(
      fc.record({
        level: fc.integer({ min: 1, max: 8 }),
        a: fc.integer({ min: 1, max: 40 }),
        len: fc.nat(10),
      }),
      { maxLength: 8 },
    ),
    snap: fc.option(fc.integer({ min: 1, max: 40 })),
  });
  fc.assert(
    fc.property(arb, ({ n, cur, l0, ranges, snap }) => {
      const files: PlanFile[] = [];
      for (const t of new Set(l0)) if (t <= n) files.push(f(0, t, t));
      for (const r of ranges) if (r.a + r.len <= n) files.push(f(r.level, r.a, r.a + r.len));
      if (snap !== null && snap <= n) files.push(f(9, 1, snap));
      const start = Math.min(cur, n);
      const p = planFollow(files, start);
      let end = start;
      for (const x of p.chain) {
        assert.ok(x.level <= 8);
        assert.ok(x.minTXID <= end + 1 && x.maxTXID > end, "contiguous and advancing");
        end = x.maxTXID;
      }
      assert.equal(p.end, end);
      // Furthest reachable TXID by brute force over levels 0–8.
      let reach = start;
      for (let changed = true; changed;) {
        changed = false;
        for (const x of files) {
          if (x.level <= 8 && x.minTXID <= reach + 1 && x.maxTXID > reach) {
            reach = x.maxTXID;
            changed = true;
          }
        }
      }
      assert.equal(p.end, reach);
      const max = files.reduce((m, x) => Math.max(m, x.maxTXID), 0);
      assert.equal(p.gap !== null, max > reach);
      if (p.gap) assert.equal(p.gap.from, reach + 1);
    }),
    { numRuns: 500 },
  );
});
