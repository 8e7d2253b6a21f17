/**
 * Deletion planning: given a replica's listing, which files no retained restore point needs. Pure (the
 * listing and `now` are inputs), so it is property-tested against the restore planner itself.
 *
 * ## Retained restore points
 *
 * With `now`, the GFS policy and the grace period `g` (the L0 retention, 5 minutes, as Litestream):
 *
 * 1. **Snapshots.** The level-9 snapshots {@link selectGfs} keeps (always including the newest). The others
 *    are deleted. `floor` = the TXID of the oldest kept snapshot (0 when there is none).
 * 2. **Superseded files.** A file of level k (0…8) is *superseded* when it is older than `g` (created-at ≤
 *    now − g) and its TXIDs are already held by something coarser: its MaxTXID ≤ `floor`, or ≤ the highest
 *    MaxTXID of any level k+1…8. Superseded files are the only incremental/compacted files that may be deleted.
 * 3. **Restore points** R, as TXIDs:
 *    - the latest TXID of the replica;
 *    - every kept snapshot's TXID;
 *    - the MaxTXID of every file that is not superseded and lies after `floor` — point-in-time recovery
 *      from the oldest kept snapshot to now at the finest level still kept: every TXID of the last `g` and
 *      of what no coarser level holds yet (L0), then each L1 file boundary until L2 covers it, then L2's, and
 *      finally the boundaries of the coarsest level (hourly by default) back to the oldest kept snapshot.
 *    A restore by time resolves to the newest of these points created strictly before that time.
 *
 * A file is **deleted** exactly when it is a snapshot GFS does not keep, or a superseded file, and no restore
 * plan for a point of R uses it (`calcRestorePlan` of `../restore/plan.ts`, computed over the listing without
 * the snapshots GFS drops; a point that only a dropped snapshot can restore — a gap in the chain right after
 * the kept snapshot before it — is planned with all snapshots, and the dropped snapshot it starts from stays
 * as a bridge, the Rust walrust's F7/E2 bug). Exceptions, kept regardless: the newest file of every level
 * (Litestream's compaction and the uploader's position rely on it), and everything around a point that cannot
 * be restored even now (a gap in the chain: every file and snapshot after the kept snapshot before it, up to
 * it, is kept, so a repaired upload can still bridge it and restores by time there see what they saw before).
 *
 * Because every kept file of a plan stays, the same plans exist after the deletion (the restore planner's
 * greedy choice over a subset that still contains its choices makes the same choices); {@link verifyRetention}
 * re-checks that on the kept set before anything is deleted, and the deletion order (newest TXIDs first,
 * snapshots last) keeps every intermediate state restorable too.
 *
 * @module
 */

import type { RetentionSettings } from "../config/types.ts";
import { messageOf } from "../errors.ts";
import { calcRestorePlan, type PlanFile, SNAPSHOT_LEVEL } from "../restore/plan.ts";
import { formatDuration } from "../util/duration.ts";
import { type GfsSelection, selectGfs } from "./gfs.ts";

/** Litestream's L0 retention: an L0 file stays at least this long after it was written (5 minutes). */
export const L0_RETENTION_MS = 5 * 60_000;

/** What the planner needs to know about a file (a subset of the storage layer's `LtxFileInfo`). */
export interface RetentionFile extends PlanFile {
  /** Object key, for output. */
  key: string;
  /** Size in bytes, for totals. */
  size: number;
}

/** The policy: GFS counts for snapshots and the grace period of incremental files. */
export interface RetentionPolicy {
  /** GFS counts (hourly, daily, weekly, monthly). */
  snapshots: RetentionSettings;
  /** No incremental or compacted file younger than this is deleted (default {@link L0_RETENTION_MS}). */
  graceMs?: number;
}

/** One file and why it is kept or deleted. */
export interface FileDecision<F> {
  /** The file. */
  file: F;
  /** One line: why. */
  reason: string;
}

/** A restore point that cannot be restored from the current listing (before any deletion). */
export interface UnrestorablePoint {
  /** The TXID. */
  txid: number;
  /** The planner's message (gap or missing file). */
  message: string;
}

/** The outcome of {@link planRetention}. */
export interface RetentionPlan<F extends RetentionFile> {
  /** The time the plan was made for (ms since the epoch). */
  now: number;
  /** Highest TXID in the listing (0 when empty). */
  latestTXID: number;
  /** TXID of the oldest kept snapshot; 0 when no snapshot is kept. */
  floorTXID: number;
  /** The GFS decision for every snapshot. */
  gfs: GfsSelection<F>;
  /** Every retained restore point (TXIDs, ascending), including those in {@link unrestorable}. */
  restorePoints: number[];
  /** Restore points the listing cannot restore even now (a gap); the files around them are kept. */
  unrestorable: UnrestorablePoint[];
  /** Files kept, in listing order, with the reason. */
  keep: FileDecision<F>[];
  /** Files to delete, in the order to delete them (see the module doc), with the reason. */
  delete: FileDecision<F>[];
  /** Total size of the files to delete. */
  deleteBytes: number;
}

function byMax(a: PlanFile, b: PlanFile): number {
  return a.maxTXID - b.maxTXID || a.minTXID - b.minTXID || a.level - b.level;
}

/** Index of the first element of `sorted` (by maxTXID) whose maxTXID is > `txid`. */
function firstAbove(sorted: readonly PlanFile[], txid: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid].maxTXID <= txid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Restore plans for TXID targets over one listing, each computed by `calcRestorePlan` on just the files that
 * can matter: the newest snapshot at or below the target and the files whose MaxTXID lies between that
 * snapshot and the target (the planner skips every other file anyway). Equivalent to planning over the whole
 * listing, at a fraction of the cost when there are many points.
 */
class PointPlanner<F extends PlanFile> {
  readonly #snaps: F[];
  readonly #files: F[];

  constructor(files: readonly F[]) {
    this.#snaps = files.filter((f) => f.level === SNAPSHOT_LEVEL).sort(byMax);
    this.#files = files.filter((f) => f.level < SNAPSHOT_LEVEL).sort(byMax);
  }

  /** The newest snapshot with MaxTXID ≤ `txid`, or undefined. */
  base(txid: number): F | undefined {
    const i = firstAbove(this.#snaps, txid);
    return i > 0 ? this.#snaps[i - 1] : undefined;
  }

  /** The plan for exactly `txid` (throws the planner's GapError/NotFoundError). */
  plan(txid: number): F[] {
    const base = this.base(txid);
    const from = base?.maxTXID ?? 0;
    const slice = this.#files.slice(firstAbove(this.#files, from), firstAbove(this.#files, txid));
    return calcRestorePlan(base ? [base, ...slice] : slice, { txid });
  }
}

/**
 * Plans retention for `files` (one database's whole listing, every level) at `now`; see the module doc for
 * exactly what is kept. Levels above 9 (not used by walrust or Litestream) are ignored and kept.
 */
export function planRetention<F extends RetentionFile>(
  files: readonly F[],
  policy: RetentionPolicy,
  now: number,
): RetentionPlan<F> {
  const grace = policy.graceMs ?? L0_RETENTION_MS;
  const gfs = selectGfs(files.filter((f) => f.level === SNAPSHOT_LEVEL), policy.snapshots, now);
  const keptSnaps = gfs.keep.map((d) => d.snapshot).sort(byMax);
  const floor = keptSnaps.length > 0 ? keptSnaps[0].maxTXID : 0;
  const incr = files.filter((f) => f.level < SNAPSHOT_LEVEL);
  const live: F[] = [...keptSnaps, ...incr];
  const latest = files.reduce((m, f) => (f.level <= SNAPSHOT_LEVEL ? Math.max(m, f.maxTXID) : m), 0);

  // Highest MaxTXID per level, and for each level the coarser level (k+1…8) reaching furthest.
  const maxOf = new Array<number>(SNAPSHOT_LEVEL).fill(0);
  for (const f of incr) maxOf[f.level] = Math.max(maxOf[f.level], f.maxTXID);
  const coverOf = (level: number): { txid: number; level: number } => {
    let best = { txid: 0, level: -1 };
    // Ties go to the coarser level: it is the one restores use.
    for (let j = level + 1; j < SNAPSHOT_LEVEL; j++) {
      if (maxOf[j] > 0 && maxOf[j] >= best.txid) best = { txid: maxOf[j], level: j };
    }
    return best;
  };
  const covers = Array.from({ length: SNAPSHOT_LEVEL }, (_, k) => coverOf(k));
  const superseded = (f: F): boolean =>
    f.createdAt.getTime() <= now - grace && (f.maxTXID <= floor || f.maxTXID <= covers[f.level].txid);

  // The newest file of every level (filename order, as Litestream's "last file"), never deleted.
  const newest = new Map<number, F>();
  for (const f of files) {
    const cur = newest.get(f.level);
    if (!cur || f.minTXID > cur.minTXID || (f.minTXID === cur.minTXID && f.maxTXID > cur.maxTXID)) {
      newest.set(f.level, f);
    }
  }

  // Restore points.
  const points = new Set<number>();
  if (latest > 0) points.add(latest);
  for (const s of keptSnaps) points.add(s.maxTXID);
  for (const f of incr) if (f.maxTXID > floor && !superseded(f)) points.add(f.maxTXID);
  const restorePoints = [...points].sort((a, b) => a - b);

  // Plans of every point over the listing without the dropped snapshots. A point that only a dropped snapshot
  // can restore (the chain has a gap after the kept snapshot before it) keeps that snapshot: a bridge.
  const planner = new PointPlanner(live);
  let withAllSnapshots: PointPlanner<F> | undefined;
  const neededBy = new Map<F, number>();
  const bridges = new Map<F, number>();
  const unrestorable: UnrestorablePoint[] = [];
  const brokenRanges: [number, number][] = [];
  for (const t of restorePoints) {
    let plan: F[];
    try {
      plan = planner.plan(t);
    } catch (err) {
      withAllSnapshots ??= new PointPlanner([...files.filter((f) => f.level === SNAPSHOT_LEVEL), ...incr]);
      try {
        plan = withAllSnapshots.plan(t);
        if (plan[0].level === SNAPSHOT_LEVEL && !bridges.has(plan[0])) bridges.set(plan[0], t);
      } catch {
        unrestorable.push({ txid: t, message: messageOf(err) });
        brokenRanges.push([planner.base(t)?.maxTXID ?? 0, t]);
        continue;
      }
    }
    for (const f of plan) if (!neededBy.has(f)) neededBy.set(f, t);
  }
  // A file overlapping (base, t] of an unrestorable point t; a snapshot (which starts at 1) ending inside it.
  const inBrokenRange = (f: F) =>
    brokenRanges.some(([lo, hi]) =>
      f.maxTXID > lo && (f.level === SNAPSHOT_LEVEL ? f.maxTXID <= hi : f.minTXID <= hi)
    );

  const keep: FileDecision<F>[] = [];
  const del: FileDecision<F>[] = [];
  const gfsKept = new Map(gfs.keep.map((d) => [d.snapshot, d.keptBy]));
  const gfsDropped = new Map(gfs.drop.map((d) => [d.snapshot, d.dropReason ?? "not kept by GFS"]));
  for (const f of files) {
    if (f.level === SNAPSHOT_LEVEL) {
      const kept = gfsKept.get(f);
      const bridge = bridges.get(f);
      if (kept) keep.push({ file: f, reason: `snapshot kept: ${kept.join(", ")}` });
      else if (bridge !== undefined) {
        keep.push({
          file: f,
          reason:
            `snapshot kept: the only base for restore point TXID ${bridge} (a gap follows the kept snapshot before it)`,
        });
      } else if (inBrokenRange(f)) {
        keep.push({
          file: f,
          reason: "snapshot kept: the chain around it has a gap that no kept snapshot bridges",
        });
      } else del.push({ file: f, reason: `snapshot not kept by GFS: ${gfsDropped.get(f)}` });
      continue;
    }
    if (f.level > SNAPSHOT_LEVEL) {
      keep.push({ file: f, reason: `level ${f.level} is not used by walrust; left alone` });
      continue;
    }
    const by = neededBy.get(f);
    if (newest.get(f.level) === f) {
      keep.push({ file: f, reason: `newest file of level ${f.level} (never deleted)` });
    } else if (by !== undefined) {
      keep.push({ file: f, reason: `needed to restore TXID ${by}` });
    } else if (!superseded(f)) {
      const young = f.createdAt.getTime() > now - grace;
      keep.push({
        file: f,
        reason: young
          ? `younger than the retention grace period (${formatDuration(grace)})`
          : `no coarser level holds TXID ${f.maxTXID} yet`,
      });
    } else if (inBrokenRange(f)) {
      keep.push({ file: f, reason: "the chain around it has a gap; kept until a snapshot bridges it" });
    } else {
      const cover = covers[f.level];
      del.push({
        file: f,
        reason: f.maxTXID <= floor
          ? `before the oldest kept snapshot (TXID ${floor})`
          : `level ${cover.level} holds its TXIDs (through ${cover.txid}); no kept restore point needs it`,
      });
    }
  }

  // Newest TXIDs first, snapshots last: what is left at any moment is a prefix that joins the kept chain.
  del.sort((a, b) => {
    const sa = a.file.level === SNAPSHOT_LEVEL ? 1 : 0;
    const sb = b.file.level === SNAPSHOT_LEVEL ? 1 : 0;
    return sa - sb || b.file.maxTXID - a.file.maxTXID || b.file.minTXID - a.file.minTXID ||
      a.file.level - b.file.level;
  });
  return {
    now,
    latestTXID: latest,
    floorTXID: floor,
    gfs,
    restorePoints,
    unrestorable,
    keep,
    delete: del,
    deleteBytes: del.reduce((n, d) => n + d.file.size, 0),
  };
}

/** Checks that `plan` is a contiguous chain from a snapshot or TXID 1 to exactly `txid`; a message or null. */
export function chainProblem(plan: readonly PlanFile[], txid: number): string | null {
  if (plan.length === 0) return `no plan for TXID ${txid}`;
  const first = plan[0];
  if (first.level !== SNAPSHOT_LEVEL && first.minTXID !== 1) {
    return `plan for TXID ${txid} starts at TXID ${first.minTXID}, not at a snapshot`;
  }
  for (let i = 1; i < plan.length; i++) {
    const prev = plan[i - 1];
    const cur = plan[i];
    if (cur.minTXID > prev.maxTXID + 1 || cur.maxTXID <= prev.maxTXID) {
      return `plan for TXID ${txid} is not contiguous at ${prev.minTXID}-${prev.maxTXID} → ${cur.minTXID}-${cur.maxTXID}`;
    }
  }
  const last = plan[plan.length - 1].maxTXID;
  return last === txid ? null : `plan for TXID ${txid} ends at TXID ${last}`;
}

/**
 * Re-plans every restorable point of `plan` on the files it keeps, plus the latest restore, and returns the
 * problems (empty when the deletion is safe). A non-empty result is a bug in the planner: callers must not
 * delete anything then.
 */
export function verifyRetention<F extends RetentionFile>(plan: RetentionPlan<F>): string[] {
  const kept = plan.keep.map((d) => d.file).filter((f) => f.level <= SNAPSHOT_LEVEL);
  const broken = new Set(plan.unrestorable.map((u) => u.txid));
  const planner = new PointPlanner(kept);
  const problems: string[] = [];
  for (const t of plan.restorePoints) {
    if (broken.has(t)) continue;
    try {
      const p = chainProblem(planner.plan(t), t);
      if (p) problems.push(p);
    } catch (err) {
      problems.push(`TXID ${t}: ${messageOf(err)}`);
    }
  }
  if (plan.latestTXID > 0 && !broken.has(plan.latestTXID)) {
    try {
      const files = calcRestorePlan(kept);
      const last = files[files.length - 1].maxTXID;
      if (last !== plan.latestTXID) {
        problems.push(`latest restore reaches TXID ${last}, not ${plan.latestTXID}`);
      }
    } catch (err) {
      problems.push(`latest restore: ${messageOf(err)}`);
    }
  }
  return problems;
}
