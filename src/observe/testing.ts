/**
 * Test helpers for code that observes replication: a {@link DbStatus} factory and a mutable fake
 * {@link StatusProvider}. Used by the observe tests; harmless (and tiny) in the product.
 *
 * @module
 */

import type { DbStatus, StatusProvider } from "./events.ts";

/** A plausible idle, caught-up database status, with `overrides` applied. */
export function fakeDbStatus(overrides: Partial<DbStatus> = {}): DbStatus {
  const now = Date.now();
  return {
    name: "app",
    path: "/data/app.db",
    replica: "s3://bucket/backups",
    state: "idle",
    txid: 10,
    replicatedTxid: 10,
    lagSeconds: 0,
    lastSyncAt: now,
    lastUploadAt: now,
    lastSnapshotAt: now,
    walBytes: 4096,
    queueFiles: 0,
    queueBytes: 0,
    circuit: "closed",
    lastError: null,
    ...overrides,
  };
}

/** A {@link StatusProvider} whose databases tests change at will. `statuses()` returns copies. */
export class FakeStatusProvider implements StatusProvider {
  /** Process start time reported to observers. */
  readonly startedAt: number;
  /** The databases, in order. */
  dbs: DbStatus[];
  /** When set, `statuses()` throws it (to test failing providers). */
  failWith: unknown = undefined;

  /** Creates the fake with `dbs`, started `uptimeMs` ago. */
  constructor(dbs: DbStatus[] = [], uptimeMs = 1000) {
    this.dbs = dbs;
    this.startedAt = Date.now() - uptimeMs;
  }

  /** Copies of the current statuses. */
  statuses(): DbStatus[] {
    if (this.failWith !== undefined) throw this.failWith;
    return this.dbs.map((d) => ({ ...d, lastError: d.lastError ? { ...d.lastError } : null }));
  }

  /** Applies `patch` to the database called `name` (which must exist). */
  update(name: string, patch: Partial<DbStatus>): void {
    const i = this.dbs.findIndex((d) => d.name === name);
    if (i < 0) throw new Error(`no fake database '${name}'`);
    this.dbs[i] = { ...this.dbs[i], ...patch };
  }
}
