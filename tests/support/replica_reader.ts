/**
 * A reader application for read-replica tests, run as a separate process:
 *
 * ```
 * deno run -A tests/support/replica_reader.ts <replica.db> --accounts N --stop <file> [--reopen-every K]
 * ```
 *
 * In a loop until `<file>` exists, inside one read transaction: `PRAGMA integrity_check` must say ok, the
 * account balances must sum to 0 over exactly N accounts, and the `counter` rows must be consecutive
 * (count = max − min + 1). `max(n)` identifies the state seen; it must never go backwards. The connection is
 * read-only with a busy timeout (what docs/read-replica.md tells applications to do) and is kept open across
 * iterations — so SQLite's page-cache invalidation is exercised — except that it is reopened every K
 * iterations. At the end one JSON line goes to stdout: {@link ReaderReport}.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";

/** What a reader observed. */
export interface ReaderReport {
  /** Read transactions completed (successfully or not). */
  iterations: number;
  /** Failed checks and errors. */
  failures: number;
  /** Up to 10 failure messages. */
  samples: string[];
  /** Distinct states (counter max) seen. */
  distinctStates: number;
  /** Smallest and largest state seen. */
  minState: number;
  /** Largest state seen. */
  maxState: number;
}

function main(): void {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      accounts: { type: "string" },
      stop: { type: "string" },
      "reopen-every": { type: "string", default: "100" },
    },
    allowPositionals: true,
  });
  const path = positionals[0];
  const accounts = Number(values.accounts);
  const stop = values.stop!;
  const reopenEvery = Number(values["reopen-every"]);
  const report: ReaderReport = {
    iterations: 0,
    failures: 0,
    samples: [],
    distinctStates: 0,
    minState: 0,
    maxState: 0,
  };
  const seen = new Set<number>();
  let last = 0;
  const fail = (msg: string) => {
    report.failures++;
    if (report.samples.length < 10) report.samples.push(`iteration ${report.iterations}: ${msg}`);
  };
  const stopped = () => {
    try {
      Deno.statSync(stop);
      return true;
    } catch {
      return false;
    }
  };

  const pause = new Int32Array(new SharedArrayBuffer(4));
  let db: DatabaseSync | null = null;
  while (!stopped()) {
    try {
      if (!db || report.iterations % reopenEvery === 0) {
        db?.close();
        db = new DatabaseSync(path, { readOnly: true, timeout: 20_000 });
      }
      db.exec("BEGIN");
      try {
        const ic = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
        if (ic.length !== 1 || ic[0].integrity_check !== "ok") {
          fail(`integrity_check: ${ic.slice(0, 3).map((r) => r.integrity_check).join("; ")}`);
        }
        const bank = db.prepare("SELECT count(*) AS n, coalesce(sum(balance), 0) AS s FROM accounts")
          .get() as {
            n: number;
            s: number;
          };
        if (bank.n !== accounts || bank.s !== 0) fail(`accounts: ${bank.n} rows summing to ${bank.s}`);
        const c = db.prepare("SELECT count(*) AS n, min(n) AS lo, max(n) AS hi FROM counter").get() as {
          n: number;
          lo: number;
          hi: number;
        };
        if (c.n === 0 || c.hi - c.lo + 1 !== c.n) fail(`counter: ${c.n} rows from ${c.lo} to ${c.hi}`);
        if (c.hi < last) fail(`state went backwards from ${last} to ${c.hi}`);
        last = Math.max(last, c.hi);
        seen.add(c.hi);
      } finally {
        db.exec("COMMIT");
      }
    } catch (err) {
      fail(`error: ${err instanceof Error ? err.message : String(err)}`);
      try {
        db?.close();
      } catch { /* reopen next time */ }
      db = null;
    }
    report.iterations++;
    // A real application does other work between queries; 1 ms also leaves CPU to the replicator.
    Atomics.wait(pause, 0, 0, 1);
  }
  db?.close();
  report.distinctStates = seen.size;
  report.minState = seen.size ? Math.min(...seen) : 0;
  report.maxState = seen.size ? Math.max(...seen) : 0;
  console.log(JSON.stringify(report));
}

if (import.meta.main) main();
