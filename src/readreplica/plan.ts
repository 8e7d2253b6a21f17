/**
 * Which LTX files move a read replica forward from TXID `cur`: the same greedy choice as the restore planner
 * (`../restore/plan.ts`, Litestream's `CalcRestorePlan`), but starting from the replica's TXID instead of a
 * snapshot and using levels 0…8 only (a level-9 snapshot is a whole database; needing one means a gap, which
 * the follower resolves by re-bootstrapping).
 *
 * A file may start before `cur + 1` (a compacted file that overlaps what is applied): its pages are the final
 * images of every page changed in its range, so applying it to the state at `cur` gives the state at its
 * MaxTXID.
 *
 * @module
 */

import { compareFiles, isBetterCandidate, type PlanFile, SNAPSHOT_LEVEL } from "../restore/plan.ts";

/** The outcome of planning from one TXID. */
export interface FollowPlan<F extends PlanFile> {
  /** Files to apply in order; each starts at most one past the previous file's end and ends after it. */
  chain: F[];
  /** The TXID reached when the whole chain is applied. */
  end: number;
  /** TXIDs that are needed but exist at no level (files or a snapshot exist beyond `end`), or null. */
  gap: { from: number; to: number } | null;
  /** The highest TXID of any file (0 when there are none). */
  replicaMax: number;
}

/** Plans the files that extend the contiguous range from `cur` as far as possible. */
export function planFollow<F extends PlanFile>(files: readonly F[], cur: number): FollowPlan<F> {
  const levels: F[][] = [];
  for (let level = SNAPSHOT_LEVEL - 1; level >= 0; level--) {
    levels.push(files.filter((f) => f.level === level).sort(compareFiles));
  }
  const chain: F[] = [];
  let end = cur;
  while (true) {
    let best: F | undefined;
    for (const lv of levels) {
      for (const f of lv) {
        if (f.minTXID > end + 1) break;
        if (f.maxTXID <= end) continue;
        if (!best || isBetterCandidate(best, f)) best = f;
      }
    }
    if (!best) break;
    chain.push(best);
    end = best.maxTXID;
  }
  const replicaMax = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
  let gap: { from: number; to: number } | null = null;
  if (replicaMax > end) {
    const past = files.filter((f) => f.level !== SNAPSHOT_LEVEL && f.minTXID > end + 1);
    const to = past.length > 0 ? Math.min(...past.map((f) => f.minTXID)) - 1 : replicaMax;
    gap = { from: end + 1, to };
  }
  return { chain, end, gap, replicaMax };
}
