/**
 * Grandfather-father-son selection of level-9 snapshots: which snapshots `retention` keeps.
 *
 * For each tier with a count N > 0 (hourly, daily, weekly, monthly) the calendar is cut into buckets (UTC
 * hours, UTC days, ISO weeks starting on Monday, UTC months). The tier looks at the N newest buckets up to
 * and including the one that holds `now` ("hourly 24" = the current hour and the 23 before it), and keeps,
 * in each of those buckets, the newest snapshot it holds (greatest created-at, then greatest TXID). A bucket
 * without a snapshot keeps nothing, and is still counted: the counts are calendar spans, as the setting's
 * help says ("24 hourly snapshots = the last 24 hours"). Snapshots created after `now` (clock skew) fall into
 * the current bucket's range and are treated like it. The newest snapshot is always kept, whatever the
 * counts, so a replica never loses its last full copy to retention.
 *
 * Pure and clock-free: `now` is a parameter.
 *
 * @module
 */

import type { RetentionSettings } from "../config/types.ts";

/** A GFS tier. */
export type GfsTier = "hourly" | "daily" | "weekly" | "monthly";

/** The tiers, finest first. */
export const GFS_TIERS: readonly GfsTier[] = ["hourly", "daily", "weekly", "monthly"];

/** What the selection needs to know about a snapshot. */
export interface GfsSnapshot {
  /** The snapshot's TXID (a level-9 file `1-<maxTXID>`). */
  maxTXID: number;
  /** When it was taken (file mtime / `litestream-timestamp`). */
  createdAt: Date;
}

/** The outcome for one snapshot. */
export interface GfsDecision<T> {
  /** The snapshot. */
  snapshot: T;
  /** Why it is kept (`newest`, `hourly 2025-01-02T13`, `daily 2025-01-02`, …); empty when it is dropped. */
  keptBy: string[];
  /** For a dropped snapshot: why (a newer one represents its bucket, or it is older than every tier). */
  dropReason?: string;
}

/** The result of {@link selectGfs}: every snapshot once, oldest first. */
export interface GfsSelection<T> {
  /** Snapshots kept, oldest first, with their reasons. */
  keep: GfsDecision<T>[];
  /** Snapshots not kept, oldest first, with the reason. */
  drop: GfsDecision<T>[];
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** UTC day number (days since 1970-01-01) of `ms`. */
function dayOf(ms: number): number {
  return Math.floor(ms / DAY);
}

/**
 * The bucket number of `ms` in `tier`: consecutive integers for consecutive hours/days/weeks/months (UTC;
 * weeks are ISO weeks, Monday to Sunday).
 */
export function bucketIndex(tier: GfsTier, ms: number): number {
  switch (tier) {
    case "hourly":
      return Math.floor(ms / HOUR);
    case "daily":
      return dayOf(ms);
    case "weekly":
      // 1970-01-01 was a Thursday: shifting by 3 days makes Monday 1969-12-29 the start of week 0.
      return Math.floor((dayOf(ms) + 3) / 7);
    case "monthly": {
      const d = new Date(ms);
      return d.getUTCFullYear() * 12 + d.getUTCMonth();
    }
  }
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** A readable name of `ms`'s bucket: `2025-01-02T13`, `2025-01-02`, `2025-W01` (ISO week), `2025-01`. */
export function bucketLabel(tier: GfsTier, ms: number): string {
  const d = new Date(ms);
  const ymd = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  switch (tier) {
    case "hourly":
      return `${ymd}T${pad(d.getUTCHours())}`;
    case "daily":
      return ymd;
    case "weekly": {
      // The ISO week belongs to the year of its Thursday; week 1 holds that year's first Thursday.
      const thursday = new Date(bucketIndex("weekly", ms) * 7 * DAY);
      const year = thursday.getUTCFullYear();
      const week = Math.floor((dayOf(thursday.getTime()) - dayOf(Date.UTC(year, 0, 1))) / 7) + 1;
      return `${year}-W${pad(week)}`;
    }
    case "monthly":
      return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}`;
  }
}

const SPAN: Record<GfsTier, [string, string]> = {
  hourly: ["hour", "hours"],
  daily: ["day", "days"],
  weekly: ["week", "weeks"],
  monthly: ["month", "months"],
};

/** `24 hours`, `1 week`. */
function span(tier: GfsTier, n: number): string {
  return `${n} ${SPAN[tier][n === 1 ? 0 : 1]}`;
}

/** Whether `next` is newer than `cur` (created-at, then TXID). */
function newer(cur: GfsSnapshot, next: GfsSnapshot): boolean {
  const a = cur.createdAt.getTime();
  const b = next.createdAt.getTime();
  return b !== a ? b > a : next.maxTXID > cur.maxTXID;
}

/** Checks the counts: non-negative integers. RangeError otherwise (config validation reports it earlier). */
function checkPolicy(policy: RetentionSettings): void {
  for (const t of GFS_TIERS) {
    const n = policy[t];
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`retention.${t} must be an integer >= 0, got ${n}`);
    }
  }
}

/**
 * Selects the snapshots to keep under `policy` at time `now` (ms since the epoch); see the module doc. Every
 * snapshot appears exactly once in `keep` or `drop`.
 */
export function selectGfs<T extends GfsSnapshot>(
  snapshots: readonly T[],
  policy: RetentionSettings,
  now: number,
): GfsSelection<T> {
  checkPolicy(policy);
  const sorted = [...snapshots].sort((a, b) =>
    a.createdAt.getTime() - b.createdAt.getTime() || a.maxTXID - b.maxTXID
  );
  const keptBy = new Map<T, string[]>();
  const add = (s: T, why: string) => {
    const l = keptBy.get(s);
    if (l) l.push(why);
    else keptBy.set(s, [why]);
  };
  if (sorted.length > 0) add(sorted[sorted.length - 1], "newest");
  for (const tier of GFS_TIERS) {
    const n = policy[tier];
    if (n === 0) continue;
    const first = bucketIndex(tier, now) - n + 1;
    const best = new Map<number, T>();
    for (const s of sorted) {
      const b = bucketIndex(tier, s.createdAt.getTime());
      if (b < first) continue;
      const cur = best.get(b);
      if (!cur || newer(cur, s)) best.set(b, s);
    }
    for (const s of best.values()) add(s, `${tier} ${bucketLabel(tier, s.createdAt.getTime())}`);
  }
  const keep: GfsDecision<T>[] = [];
  const drop: GfsDecision<T>[] = [];
  for (const s of sorted) {
    const why = keptBy.get(s);
    if (why) {
      keep.push({ snapshot: s, keptBy: why });
      continue;
    }
    // Name the finest tier whose window holds it: a newer snapshot of the same bucket represents it there.
    const ms = s.createdAt.getTime();
    const tier = GFS_TIERS.find((t) => policy[t] > 0 && bucketIndex(t, ms) > bucketIndex(t, now) - policy[t]);
    const dropReason = tier
      ? `a newer snapshot represents ${SPAN[tier][0]} ${bucketLabel(tier, ms)}`
      : `older than every GFS tier keeps (${
        GFS_TIERS.filter((t) => policy[t] > 0).map((t) => span(t, policy[t])).join(", ") || "all tiers are 0"
      })`;
    drop.push({ snapshot: s, keptBy: [], dropReason });
  }
  return { keep, drop };
}
