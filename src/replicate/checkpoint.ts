/**
 * When walrust checkpoints a database, as Litestream v0.5 does (reference digest §4.5, db.go
 * `checkpointIfNeeded`). The decision is a pure function so it can be tested on its own; the procedure
 * (sync, write barrier, release the read lock, checkpoint, re-acquire) lives in `db.ts` because it needs the
 * replication loop's state.
 *
 * Thresholds use the *logical* WAL size: the frames of the current WAL generation up to the replication
 * position, not the file size (a restarted WAL keeps its file size until a TRUNCATE).
 *
 * @module
 */

/** The knobs of the policy (from `DatabaseSettings`). */
export interface CheckpointPolicy {
  /** PASSIVE once this many WAL pages were shipped (Litestream MinCheckpointPageN = 1000; 0 disables). */
  minCheckpointPages: number;
  /** Emergency TRUNCATE at this many WAL pages (Litestream TruncatePageN = 121 359; 0 disables). */
  truncatePages: number;
  /** PASSIVE at least this often when something was shipped since the last checkpoint (60 000 ms). */
  checkpointIntervalMs: number;
}

/** What the loop knows when it asks. */
export interface CheckpointInputs {
  /** Frames of the current WAL generation up to the replication position. */
  walFrames: number;
  /** `walFrames` when the last checkpoint attempt of this generation did not restart the WAL (else 0). */
  framesAtLastAttempt: number;
  /** When the last checkpoint ran (ms since epoch; the start time before the first). */
  lastCheckpointAt: number;
  /** Whether anything was shipped since the last checkpoint. */
  activity: boolean;
  /** Now, ms since epoch. */
  now: number;
}

/** What to do: nothing, a PASSIVE checkpoint (with its reason), or the emergency procedure. */
export type CheckpointDecision =
  | null
  | { mode: "PASSIVE"; reason: "pages" | "interval" }
  | { mode: "EMERGENCY" };

/**
 * Decides, in Litestream's order: emergency at `truncatePages`, PASSIVE at `minCheckpointPages`, PASSIVE when
 * the interval elapsed with activity and the WAL has more than one frame.
 *
 * One addition: when a PASSIVE attempt could not restart the WAL (another reader was in the way), the page
 * trigger waits until another `minCheckpointPages` were shipped instead of firing on every sync, because
 * each attempt holds the write barrier briefly and blocks the application's writers.
 */
export function decideCheckpoint(policy: CheckpointPolicy, s: CheckpointInputs): CheckpointDecision {
  if (policy.truncatePages > 0 && s.walFrames >= policy.truncatePages) return { mode: "EMERGENCY" };
  if (
    policy.minCheckpointPages > 0 && s.walFrames >= policy.minCheckpointPages &&
    s.walFrames - s.framesAtLastAttempt >= policy.minCheckpointPages
  ) {
    return { mode: "PASSIVE", reason: "pages" };
  }
  if (
    policy.checkpointIntervalMs > 0 && s.activity && s.walFrames > 1 &&
    s.now - s.lastCheckpointAt >= policy.checkpointIntervalMs
  ) {
    return { mode: "PASSIVE", reason: "interval" };
  }
  return null;
}

/** Frames of a WAL between offset 32 and `offset` for a page size. */
export function framesBefore(offset: number, pageSize: number): number {
  return offset <= 32 ? 0 : Math.floor((offset - 32) / (24 + pageSize));
}
