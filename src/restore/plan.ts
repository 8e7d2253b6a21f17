/**
 * The restore planner: which LTX files, in which order, rebuild the database at a target (latest, a TXID, or
 * the state as of a time). Pure: it sees only file listings, so it is property-tested without storage.
 *
 * It follows Litestream v0.5's `CalcRestorePlan` (reference digest §5.1):
 * 1. start from the newest level-9 snapshot at or before the target (MaxTXID ≤ T; CreatedAt strictly < TS);
 * 2. then, across levels 8…0, repeatedly take the file that extends the contiguous TXID range the furthest
 *    (ties: higher MaxTXID > lower MinTXID > higher level > earlier CreatedAt);
 * 3. a latest restore fails when some level still has a file that starts past the range (a gap).
 *
 * One deliberate addition: a timestamp restore also fails with a gap when a file created before the target time
 * starts past the range, because those missing TXIDs were committed before that time; Litestream would silently
 * return an older state.
 *
 * @module
 */

import { GapError, NotFoundError } from "../errors.ts";

/** Level of full snapshots (`0000000000000001-<max>.ltx`). */
export const SNAPSHOT_LEVEL = 9;

/** What the planner needs to know about one LTX file (a subset of the storage layer's `LtxFileInfo`). */
export interface PlanFile {
  /** Compaction level: 0 raw, 1–8 compacted, 9 snapshots. */
  level: number;
  /** First TXID the file covers. */
  minTXID: number;
  /** Last TXID the file covers (inclusive). */
  maxTXID: number;
  /** When the file was written (file mtime / S3 `litestream-timestamp`). */
  createdAt: Date;
}

/** The restore target: nothing = latest; `txid` = exactly that TXID; `timestamp` = state as of that time. */
export interface RestoreTarget {
  /** Restore up to and including this TXID (≥ 1). */
  txid?: number;
  /** Restore the newest state made only of files created strictly before this time. */
  timestamp?: Date;
}

/** Whether `next` is a better next step than `curr` (Litestream's `restoreCandidateBetter`). */
export function isBetterCandidate(curr: PlanFile, next: PlanFile): boolean {
  if (next.maxTXID !== curr.maxTXID) return next.maxTXID > curr.maxTXID;
  if (next.minTXID !== curr.minTXID) return next.minTXID < curr.minTXID;
  if (next.level !== curr.level) return next.level > curr.level;
  return next.createdAt.getTime() < curr.createdAt.getTime();
}

/** Filename order inside a level: (MinTXID, MaxTXID). */
export function compareFiles(a: PlanFile, b: PlanFile): number {
  return a.minTXID - b.minTXID || a.maxTXID - b.maxTXID;
}

/** One level's files in filename order, read once front to back like Litestream's level iterators. */
class LevelCursor<F extends PlanFile> {
  readonly files: F[];
  pos = 0;
  candidate: F | undefined;

  constructor(files: F[]) {
    this.files = files;
  }

  /** Reads every file that could continue a range ending at `cur`, keeping the best eligible one. */
  refresh(cur: number, eligible: (f: F) => boolean): void {
    if (this.candidate && this.candidate.maxTXID <= cur) this.candidate = undefined;
    while (this.pos < this.files.length) {
      const f = this.files[this.pos];
      if (f.minTXID > cur + 1) return;
      this.pos++;
      if (f.maxTXID <= cur || !eligible(f)) continue;
      if (!this.candidate || isBetterCandidate(this.candidate, f)) this.candidate = f;
    }
  }

  /** Files not read yet (all of them start past the range once `refresh` ran with the final range). */
  remaining(): F[] {
    return this.files.slice(this.pos);
  }
}

function txidRange(from: number, to: number): string {
  return from === to ? `TXID ${from}` : `TXIDs ${from}–${to}`;
}

/**
 * Computes the restore plan: the files to merge, oldest first, beginning with a snapshot or a file that starts
 * at TXID 1, contiguous (each file starts at most one past the previous file's MaxTXID), and ending exactly at
 * `target.txid` when one is given.
 *
 * Throws {@link GapError} when a latest (or timestamp) restore meets missing TXIDs, naming them, and
 * {@link NotFoundError} when nothing matches or the TXID target cannot be reached. `name` (the database) only
 * makes the messages clearer.
 */
export function calcRestorePlan<F extends PlanFile>(
  files: readonly F[],
  target: RestoreTarget = {},
  name?: string,
): F[] {
  const { txid, timestamp } = target;
  const what = name ? `${name}: ` : "";
  const ts = timestamp?.getTime();
  const eligible = (f: F): boolean =>
    (txid === undefined || f.maxTXID <= txid) && (ts === undefined || f.createdAt.getTime() < ts);

  // 1. The newest snapshot at or before the target: the last eligible one in filename order.
  const snapshots = files.filter((f) => f.level === SNAPSHOT_LEVEL).sort(compareFiles);
  let snapshot: F | undefined;
  for (const s of snapshots) if (eligible(s)) snapshot = s;
  const plan: F[] = snapshot ? [snapshot] : [];
  let cur = snapshot?.maxTXID ?? 0;

  // 2. Greedy extension across levels 8…0.
  const cursors: LevelCursor<F>[] = [];
  for (let level = SNAPSHOT_LEVEL - 1; level >= 0; level--) {
    cursors.push(new LevelCursor(files.filter((f) => f.level === level).sort(compareFiles)));
  }
  const reached = () => txid !== undefined && cur >= txid;
  while (!reached()) {
    let next: LevelCursor<F> | undefined;
    for (const c of cursors) {
      c.refresh(cur, eligible);
      if (c.candidate && (!next || isBetterCandidate(next.candidate!, c.candidate))) next = c;
    }
    if (!next) break;
    plan.push(next.candidate!);
    cur = next.candidate!.maxTXID;
    next.candidate = undefined;
  }

  // 3. Gaps. Every cursor was refreshed with the final range, so what is left starts past cur+1.
  if (plan.length > 0 && txid === undefined) {
    const beyond = cursors.flatMap((c) => c.remaining()).filter((f) => ts === undefined || eligible(f));
    if (beyond.length > 0) {
      const nextMin = Math.min(...beyond.map((f) => f.minTXID));
      throw new GapError(
        `${what}backup chain has a gap: ${txidRange(cur + 1, nextMin - 1)} missing (have TXIDs 1–${cur}, ` +
          `next file starts at TXID ${nextMin}); take a new snapshot, or restore an earlier point with --txid ${cur}`,
        cur + 1,
        nextMin - 1,
      );
    }
  }

  if (plan.length === 0) throw new NotFoundError(what + emptyPlanMessage(files, target));
  if (txid !== undefined && cur < txid) {
    const newest = Math.max(...files.map((f) => f.maxTXID));
    const after = files.filter((f) => f.level !== SNAPSHOT_LEVEL && f.minTXID > cur + 1 && f.minTXID <= txid);
    const detail = newest < txid
      ? `the newest backup is at TXID ${newest}`
      : after.length > 0
      ? `${txidRange(cur + 1, Math.min(...after.map((f) => f.minTXID)) - 1)} missing from the backup chain`
      : `backups reach TXID ${cur} only`;
    throw new NotFoundError(`${what}no backup covers TXID ${txid}: ${detail}`);
  }
  return plan;
}

/** The earliest time a restore could start from (a snapshot or a TXID-1 file), or null. */
function firstBackupAt(files: readonly PlanFile[]): Date | null {
  const starts = files.filter((f) => f.minTXID === 1);
  const pool = starts.length > 0 ? starts : files;
  if (pool.length === 0) return null;
  return new Date(Math.min(...pool.map((f) => f.createdAt.getTime())));
}

function emptyPlanMessage(files: readonly PlanFile[], target: RestoreTarget): string {
  if (files.length === 0) return "no backup found (the replica has no LTX files for this database)";
  const first = firstBackupAt(files);
  if (target.timestamp) {
    return `no backup at or before ${target.timestamp.toISOString()}; the first backup is at ${
      first!.toISOString()
    }`;
  }
  const oldest = Math.min(...files.map((f) => f.minTXID));
  if (target.txid !== undefined) {
    const firstMax = Math.min(...files.filter((f) => f.minTXID === 1).map((f) => f.maxTXID));
    return Number.isFinite(firstMax) && oldest === 1
      ? `no backup covers TXID ${target.txid}; the earliest restorable TXID is ${firstMax}`
      : `no backup covers TXID ${target.txid}; no snapshot or TXID-1 file to start from (oldest file starts at TXID ${oldest})`;
  }
  return `no snapshot or TXID-1 file to restore from: the oldest file starts at TXID ${oldest} ` +
    `(${txidRange(1, oldest - 1)} missing); take a new snapshot`;
}
