/**
 * Many databases in one process: one {@link DbReplicator} per database, each with its own sync loop, its own
 * uploader and its own replica store, so a slow or failing database never stalls the others (no shared
 * awaits: the supervisor only starts, observes and stops them). It is the {@link StatusProvider} behind
 * /health, /metrics and the dashboard.
 *
 * Compaction/retention hook: `src/retention/` (written separately) plugs in with
 * {@link Supervisor.setCompactionHook}; the supervisor then calls `hook(db)` for every database once per
 * interval, never twice at once for the same database, and logs (does not propagate) its failures. The calls
 * are spread over the interval, round robin, at most {@link MAX_CONCURRENT_HOOKS} at a time: calling every
 * database's hook at the same instant made a burst of a hundred concurrent listings and merges every interval,
 * which set the process's peak memory. Local L0 files are deleted by the uploader once shipped (except the
 * newest, the replication position), so the hook works from the replica's files.
 *
 * @module
 */

import type { DatabaseSettings, WatchSettings } from "../config/types.ts";
import { messageOf, type WalrustError } from "../errors.ts";
import type { DbStatus, EventBus, StatusProvider } from "../observe/events.ts";
import { log } from "../observe/log.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { openObjectStore } from "../storage/open.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { DbReplicator, type DbReplicatorOptions } from "./db.ts";

/** At most this many compaction hooks run at once (across all databases). */
export const MAX_CONCURRENT_HOOKS = 2;

/** A compaction/retention step for one database, run by the supervisor on a timer. */
export type CompactionHook = (db: DbReplicator) => Promise<void>;

/** Wiring options of a {@link Supervisor}. */
export interface SupervisorOptions {
  /** Opens the store of a database (default: `openObjectStore` with the database's retry settings). */
  openStore?: (db: DatabaseSettings, bus: EventBus) => ObjectStore;
  /** Extra options for every replicator. */
  replicator?: Omit<DbReplicatorOptions, "onFatal">;
}

/** Runs the replication of every database of a `watch` process. */
export class Supervisor implements StatusProvider {
  /** Process start time (ms since epoch). */
  readonly startedAt: number = Date.now();
  /** One replicator per database, in configuration order. */
  readonly replicators: readonly DbReplicator[];
  readonly #stores: ObjectStore[] = [];
  #fatalResolve!: (err: WalrustError) => void;
  /** Resolves with the first error that ends replication of a database while running (lease lost). */
  readonly fatal: Promise<WalrustError>;
  #hookTimer: ReturnType<typeof setTimeout> | undefined;
  #hookRunning = new Set<string>();
  /** Next database (index into `replicators`) whose hook is due, and when. */
  #hookNext = 0;
  #stopped = false;

  /** Creates (does not start) a replicator per database of `settings`. */
  constructor(settings: WatchSettings, bus: EventBus, opts: SupervisorOptions = {}) {
    this.fatal = new Promise((resolve) => (this.#fatalResolve = resolve));
    const open = opts.openStore ??
      ((db: DatabaseSettings, b: EventBus) =>
        openObjectStore(db.replica, { retry: db.retry, bus: b, db: db.name }));
    this.replicators = settings.databases.map((db) => {
      const store = open(db, bus);
      this.#stores.push(store);
      return new DbReplicator(db, new ReplicaClient(store, db.name), bus, {
        ...opts.replicator,
        onFatal: (err) => this.#fatalResolve(err),
      });
    });
  }

  /**
   * Starts every database concurrently. Resolves when all are replicating; rejects with the first failure
   * (database missing or not in WAL mode, lease held elsewhere, bad credentials…) after stopping the rest.
   */
  async start(): Promise<void> {
    try {
      await Promise.all(this.replicators.map((r) => r.start()));
    } catch (err) {
      await Promise.all(this.replicators.map((r) => r.stop({ flushTimeoutMs: 0 }).catch(() => {})));
      this.#closeStores();
      throw err;
    }
  }

  /**
   * Installs the compaction/retention hook: every database's hook is called once per `intervalMs` (the first
   * time within the first interval), one database every `intervalMs / databases`, round robin. While
   * {@link MAX_CONCURRENT_HOOKS} are running the round waits; a database whose own hook is still running is
   * skipped until its next turn.
   */
  setCompactionHook(hook: CompactionHook, intervalMs: number): void {
    clearTimeout(this.#hookTimer);
    const n = this.replicators.length;
    if (n === 0) return;
    const slotMs = Math.max(1, Math.floor(intervalMs / n));
    const step = () => {
      if (this.#stopped) return;
      const db = this.replicators[this.#hookNext];
      // With every slot busy the same database waits for the next step; one still running its own hook
      // is skipped until its next turn.
      if (this.#hookRunning.size >= MAX_CONCURRENT_HOOKS && !this.#hookRunning.has(db.name)) {
        this.#hookTimer = setTimeout(step, slotMs);
        return;
      }
      this.#hookNext = (this.#hookNext + 1) % n;
      if (!this.#hookRunning.has(db.name)) {
        this.#hookRunning.add(db.name);
        hook(db)
          .catch((err) => log.warn("compaction failed", { db: db.name, error: messageOf(err) }))
          .finally(() => this.#hookRunning.delete(db.name));
      }
      this.#hookTimer = setTimeout(step, slotMs);
    };
    this.#hookTimer = setTimeout(step, slotMs);
  }

  /** Live status of every database. */
  statuses(): DbStatus[] {
    return this.replicators.map((r) => r.status());
  }

  /**
   * Stops every database concurrently, each with `flushTimeoutMs` to ship its queue. Returns the number of
   * files left in the local queues (they ship on the next start).
   */
  async stop(flushTimeoutMs: number): Promise<{ pending: number }> {
    this.#stopped = true;
    clearTimeout(this.#hookTimer);
    const results = await Promise.all(
      this.replicators.map((r) =>
        r.stop({ flushTimeoutMs }).catch((err) => {
          log.error("stopping failed", { db: r.name, error: messageOf(err) });
          return { pending: 0 };
        })
      ),
    );
    this.#closeStores();
    return { pending: results.reduce((n, r) => n + r.pending, 0) };
  }

  #closeStores(): void {
    for (const s of this.#stores) {
      try {
        s.close();
      } catch { /* closing anyway */ }
    }
  }
}
