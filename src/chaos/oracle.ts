/**
 * The chaos oracle: what a restored database is allowed to be, given what the writer committed and what the
 * replica had acknowledged.
 *
 * The writer logs every committed state as `{seq, commitTime, digest}` (`tests/support/writer.ts`, or
 * {@link ./hot_writer.ts} for the high-rate workload, which logs no digest because its states are replayable
 * from the seq). `commitTime` is `Date.now()` taken right *after* COMMIT returned, so the commit instant of
 * state `s` lies in `(commitTime(s-1), commitTime(s)]` — the writer is sequential and started transaction
 * `s` only after logging `s-1`. That is all that is provable about when a state existed, and the checks
 * below use exactly that:
 *
 * - every restore is a state the writer committed (its `writer_meta.seq` is in the log and its digest equals
 *   the logged one);
 * - a latest restore is the writer's last state;
 * - restores by TXID never go backwards as the TXID grows;
 * - a restore as of time X holds a state whose commit *began* before X (`commitTime(seq-1) < X`; a state
 *   logged after X may still have committed before X, because the log time is taken after COMMIT returns),
 *   and is no older than the newest TXID the runner saw on the replica before X (that file existed, with a
 *   creation time before X, so a restore as of X must include it).
 *
 * Pure functions over plain data: unit-tested in `oracle_test.ts`.
 *
 * @module
 */

/** One committed state as logged by a writer. */
export interface LoggedState {
  /** `writer_meta.seq` after the commit (0 = tables just created). */
  seq: number;
  /** `Date.now()` right after COMMIT returned. */
  commitTime: number;
  /** Logical digest of the database after the commit, or null when the workload is checked by replay. */
  digest: string | null;
}

/** What was observed in a restored database. */
export interface ObservedState {
  /** `writer_meta.seq` read from the restored file. */
  seq: number;
  /** Its logical digest (null when the workload is checked by replay instead). */
  digest: string | null;
}

/** One oracle violation. */
export interface Violation {
  /** `loss` (a committed, replicated state is missing), `phantom` (a state never committed), `order`, `chain`. */
  kind: "loss" | "phantom" | "order" | "chain" | "integrity" | "error";
  /** One line: what was restored, what was expected. */
  message: string;
}

/** The committed history of one database, indexed by seq. */
export class WriterHistory {
  readonly #bySeq = new Map<number, LoggedState>();
  /** States in log order. */
  readonly states: readonly LoggedState[];

  /**
   * Builds the history; throws when the log is not a run of consecutive seqs with non-decreasing times (a
   * broken log would make every later check meaningless).
   */
  constructor(states: readonly LoggedState[]) {
    if (states.length === 0) throw new Error("writer log is empty");
    for (let i = 1; i < states.length; i++) {
      const a = states[i - 1];
      const b = states[i];
      if (b.seq !== a.seq + 1) throw new Error(`writer log: seq ${b.seq} follows seq ${a.seq}`);
      if (b.commitTime < a.commitTime) throw new Error(`writer log: time goes backwards at seq ${b.seq}`);
    }
    this.states = states;
    for (const s of states) this.#bySeq.set(s.seq, s);
  }

  /** The last committed state. */
  get last(): LoggedState {
    return this.states[this.states.length - 1];
  }

  /** The first logged state. */
  get first(): LoggedState {
    return this.states[0];
  }

  /** The state with `seq`, if logged. */
  get(seq: number): LoggedState | undefined {
    return this.#bySeq.get(seq);
  }

  /**
   * The earliest instant state `seq` can have been committed: just after the previous state was logged (or
   * -∞ for the first logged state, which may have been created before the log started).
   */
  earliestCommit(seq: number): number {
    const prev = this.#bySeq.get(seq - 1);
    return prev ? prev.commitTime : Number.NEGATIVE_INFINITY;
  }

  /** The newest state logged at or before `t` (null if none): the state surely committed by time `t`. */
  committedBy(t: number): LoggedState | null {
    let lo = 0;
    let hi = this.states.length - 1;
    let best: LoggedState | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.states[mid].commitTime <= t) {
        best = this.states[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return best;
  }
}

/** Checks that `obs` is a state the writer committed (digest equal when both sides have one). */
export function checkCommitted(h: WriterHistory, obs: ObservedState, what: string): Violation | null {
  const rec = h.get(obs.seq);
  if (!rec) {
    return {
      kind: "phantom",
      message: `${what}: restored seq ${obs.seq} was never committed (log has ${h.first.seq}…${h.last.seq})`,
    };
  }
  if (rec.digest !== null && obs.digest !== null && rec.digest !== obs.digest) {
    return {
      kind: "phantom",
      message: `${what}: restored seq ${obs.seq} but its content differs from the committed state ` +
        `(digest ${obs.digest.slice(0, 12)}…, logged ${rec.digest.slice(0, 12)}…)`,
    };
  }
  return null;
}

/** A latest restore must be exactly the writer's last state. */
export function checkLatest(h: WriterHistory, obs: ObservedState, what = "latest restore"): Violation[] {
  const v = checkCommitted(h, obs, what);
  if (v) return [v];
  if (obs.seq !== h.last.seq) {
    return [{
      kind: "loss",
      message:
        `${what}: restored seq ${obs.seq}, but the writer's last committed state is seq ${h.last.seq} ` +
        `(${h.last.seq - obs.seq} committed transactions missing)`,
    }];
  }
  return [];
}

/** One restore by TXID: the TXID asked and the state it gave. */
export interface TxidRestore {
  /** TXID restored. */
  txid: number;
  /** State observed. */
  state: ObservedState;
}

/** Restores by TXID: each a committed state, and seq never decreasing as the TXID grows. */
export function checkTxidRestores(h: WriterHistory, restores: readonly TxidRestore[]): Violation[] {
  const out: Violation[] = [];
  for (const r of restores) {
    const v = checkCommitted(h, r.state, `restore --txid ${r.txid}`);
    if (v) out.push(v);
  }
  const sorted = [...restores].sort((a, b) => a.txid - b.txid);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (b.state.seq < a.state.seq) {
      out.push({
        kind: "order",
        message:
          `restore --txid ${b.txid} gave seq ${b.state.seq}, older than --txid ${a.txid} (seq ${a.state.seq})`,
      });
    } else if (b.txid === a.txid && b.state.seq !== a.state.seq) {
      out.push({
        kind: "order",
        message: `two restores of TXID ${a.txid} differ (seq ${a.state.seq} and ${b.state.seq})`,
      });
    }
  }
  return out;
}

/** One restore as of a time. */
export interface TimestampRestore {
  /** Target time (ms). */
  target: number;
  /** TXID the restore reported, or null when it found nothing (exit 10). */
  txid: number | null;
  /** State observed, or null when nothing was restored. */
  state: ObservedState | null;
  /** The newest TXID the runner saw on the replica strictly before `target` (0 = none). */
  ackedTxid: number;
  /** The state of a restore at `ackedTxid` (null when `ackedTxid` is 0). */
  ackedState: ObservedState | null;
}

/** A restore as of time X (see the module doc for exactly what is provable). */
export function checkTimestampRestore(h: WriterHistory, r: TimestampRestore): Violation[] {
  const what = `restore --timestamp ${new Date(r.target).toISOString()}`;
  if (r.state === null || r.txid === null) {
    if (r.ackedTxid > 0) {
      return [{
        kind: "loss",
        message: `${what}: found nothing, but TXID ${r.ackedTxid} was on the replica before that time`,
      }];
    }
    return [];
  }
  const out: Violation[] = [];
  const v = checkCommitted(h, r.state, what);
  if (v) return [v];
  const begun = h.earliestCommit(r.state.seq);
  if (!(begun < r.target)) {
    out.push({
      kind: "phantom",
      message: `${what}: restored seq ${r.state.seq}, whose transaction began at ` +
        `${new Date(begun).toISOString()}, after the target`,
    });
  }
  if (r.txid < r.ackedTxid) {
    out.push({
      kind: "loss",
      message:
        `${what}: restored TXID ${r.txid}, but TXID ${r.ackedTxid} was on the replica before that time`,
    });
  }
  if (r.ackedState && r.state.seq < r.ackedState.seq) {
    out.push({
      kind: "loss",
      message:
        `${what}: restored seq ${r.state.seq}, older than seq ${r.ackedState.seq} of TXID ${r.ackedTxid}, ` +
        `which was on the replica before that time`,
    });
  }
  return out;
}

/** A `(time, newest TXID visible on the replica)` observation made by the runner while a round ran. */
export interface AckObservation {
  /** When the listing finished (ms): everything it saw existed before then. */
  at: number;
  /** Newest contiguous TXID seen (0 = nothing yet). */
  txid: number;
}

/**
 * The newest TXID seen on the replica by a listing that *finished* strictly before `target`, minus nothing:
 * the file existed then, and its creation time (set when its frames were read) is earlier still.
 */
export function ackedBefore(observations: readonly AckObservation[], target: number): number {
  let best = 0;
  for (const o of observations) if (o.at < target && o.txid > best) best = o.txid;
  return best;
}

/**
 * The newest TXID `T` such that TXIDs 1…T are all covered by files whose ranges are given (a file
 * `[min, max]` covers those TXIDs; snapshots are `[1, max]`). 0 when TXID 1 is not covered.
 */
export function contiguousTxid(files: readonly { minTXID: number; maxTXID: number }[]): number {
  const sorted = [...files].sort((a, b) => a.minTXID - b.minTXID || b.maxTXID - a.maxTXID);
  let cur = 0;
  for (const f of sorted) {
    if (f.minTXID > cur + 1) break;
    if (f.maxTXID > cur) cur = f.maxTXID;
  }
  return cur;
}
