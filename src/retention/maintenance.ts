/**
 * Running compaction and retention against a replica: {@link enforceRetention} (list, plan, verify, delete in
 * a safe order, re-check), and {@link Compactor}, the per-database scheduler `watch` drives on a timer through
 * {@link createCompactionHook}.
 *
 * Safety against concurrent readers and writers: a compacted file is written and verified before retention
 * can count it as covering its sources; retention only deletes files no retained restore point needs (see
 * `plan.ts`), newest TXIDs first and snapshots last, so a reader at any moment sees a restorable chain; only
 * listed files are deleted, so an upload that lands during a pass is never touched; and the newest file of each
 * level (the uploader's position, the compaction cursor) is never deleted. A restore that listed before a
 * deletion and then misses a file re-plans (see `../restore/restore.ts`).
 *
 * @module
 */

import type { RetentionSettings } from "../config/types.ts";
import { CorruptionError, errorClassOf, messageOf } from "../errors.ts";
import type { EventBus } from "../observe/events.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { SNAPSHOT_LEVEL } from "../restore/plan.ts";
import {
  type LtxFileInfo,
  parseRfc3339,
  type ReplicaClient,
  TIMESTAMP_METADATA_KEY,
} from "../storage/replica_client.ts";
import {
  type CompactionResult,
  compactionSchedule,
  type CompactionState,
  type LevelSchedule,
  newCompactionState,
  runCompaction,
} from "./compact.ts";
import { L0_RETENTION_MS, planRetention, type RetentionPlan, verifyRetention } from "./plan.ts";

/** Keys per delete request; small enough that the newest-first order holds across requests. */
export const DELETE_BATCH = 100;

/**
 * Lists every LTX file of the database. On S3 the snapshots' created-at comes from their
 * `litestream-timestamp` metadata (one HEAD per snapshot, remembered in `timestamps` across calls since a
 * key's metadata never changes) rather than LastModified, because GFS buckets them by the time they were
 * taken, and a snapshot may be uploaded late.
 */
export async function listForRetention(
  client: ReplicaClient,
  timestamps: Map<string, Date> = new Map(),
): Promise<LtxFileInfo[]> {
  const files = await client.allLtxFiles();
  if (client.store.kind !== "s3") return files;
  const snaps = files.filter((f) => f.level === SNAPSHOT_LEVEL);
  for (const f of snaps) {
    let at = timestamps.get(f.key);
    if (!at) {
      const head = await client.store.head(f.key);
      const meta = head?.metadata[TIMESTAMP_METADATA_KEY];
      at = (meta ? parseRfc3339(meta) : null) ?? f.createdAt;
      timestamps.set(f.key, at);
    }
    f.createdAt = at;
  }
  // Forget snapshots that are gone, so the cache stays the size of the listing.
  const live = new Set(snaps.map((f) => f.key));
  for (const k of timestamps.keys()) if (!live.has(k)) timestamps.delete(k);
  return files;
}

/** Options of {@link enforceRetention}. */
export interface EnforceRetentionOptions {
  /** GFS counts. */
  retention: RetentionSettings;
  /** Current time, ms since the epoch. */
  now: number;
  /** Grace period of incremental files (default {@link L0_RETENTION_MS}). */
  graceMs?: number;
  /** Snapshot timestamps learnt by earlier calls (see {@link listForRetention}). */
  timestamps?: Map<string, Date>;
  /** Plan only; delete nothing. */
  dryRun?: boolean;
  /** A listing to plan from instead of listing the replica (dry runs that simulate compaction). */
  files?: LtxFileInfo[];
  /** Bus for the `retention` event. */
  bus?: EventBus;
  /** Database name for events and logs (default: the client's). */
  db?: string;
  /** Logger (default: the process logger). */
  logger?: Logger;
}

/** What {@link enforceRetention} did (or would do). */
export interface RetentionResult {
  /** The plan. */
  plan: RetentionPlan<LtxFileInfo>;
  /** Files deleted (0 on a dry run). */
  deleted: number;
  /** Bytes deleted (0 on a dry run). */
  bytes: number;
  /** Leftovers of interrupted writes removed (directory replicas; see {@link STALE_WRITE_MS}). */
  swept: number;
}

/**
 * Age after which a temp file (or a sidecar without its file) in a directory replica is a leftover of a
 * killed writer rather than a write in progress: a write keeps its temp file's mtime fresh, and an hour is
 * far longer than any single write takes. Measured on the wall clock, like the files' mtimes.
 */
export const STALE_WRITE_MS = 60 * 60_000;

/**
 * Plans retention (`plan.ts`), checks that every retained restore point can still be planned from what stays
 * (a failure there is a bug: nothing is deleted and an Error is thrown), then — unless `dryRun` — deletes in
 * the plan's order and emits a `retention` event.
 */
export async function enforceRetention(
  client: ReplicaClient,
  opts: EnforceRetentionOptions,
): Promise<RetentionResult> {
  const files = opts.files ?? await listForRetention(client, opts.timestamps);
  const plan = planRetention(files, { snapshots: opts.retention, graceMs: opts.graceMs }, opts.now);
  const problems = verifyRetention(plan);
  if (problems.length > 0) {
    throw new Error(
      `retention plan for ${client.displayUrl} would break restore points (${
        problems.slice(0, 3).join("; ")
      }); nothing was deleted — please report this bug`,
    );
  }
  const db = opts.db ?? client.dbName;
  const logger = opts.logger ?? rootLog;
  for (const u of plan.unrestorable) {
    logger.warn("restore point cannot be restored; keeping the files around it", {
      db,
      txid: u.txid,
      error: u.message,
    });
  }
  if (opts.dryRun) return { plan, deleted: 0, bytes: 0, swept: 0 };
  const swept = await sweepLeftovers(client, logger, db);
  if (plan.delete.length === 0) return { plan, deleted: 0, bytes: 0, swept };
  let deleted = 0;
  let bytes = 0;
  try {
    for (let i = 0; i < plan.delete.length; i += DELETE_BATCH) {
      const batch = plan.delete.slice(i, i + DELETE_BATCH).map((d) => d.file);
      await client.deleteLtxFiles(batch);
      deleted += batch.length;
      bytes += batch.reduce((n, f) => n + f.size, 0);
    }
  } finally {
    if (deleted > 0) {
      opts.bus?.emit({ type: "retention", db, deleted, bytes });
      logger.info("retention deleted files", { db, deleted, bytes, kept: plan.keep.length });
    }
  }
  return { plan, deleted, bytes, swept };
}

/** Removes leftovers of killed writers from the replica; a failure is logged, never fatal to retention. */
async function sweepLeftovers(client: ReplicaClient, logger: Logger, db: string): Promise<number> {
  try {
    const { removed, bytes } = await client.sweepStale(new Date(Date.now() - STALE_WRITE_MS));
    if (removed.length > 0) {
      logger.info("removed leftovers of interrupted writes from the replica", {
        db,
        files: removed.length,
        bytes,
      });
    }
    return removed.length;
  } catch (err) {
    logger.warn("could not remove leftovers of interrupted writes", { db, error: messageOf(err) });
    return 0;
  }
}

/**
 * How often `watch` enforces retention: 5 minutes, the L0 retention. Each pass lists every level once (the
 * only full listing), so the level-0 backlog stays around 5–10 minutes of files.
 */
export const DEFAULT_RETENTION_INTERVAL_MS = 5 * 60_000;

/** Settings a {@link Compactor} needs (a `DatabaseSettings` has them). */
export interface CompactorSettings {
  /** Database name. */
  name: string;
  /** Compaction intervals for levels 1… (empty = no compaction). */
  compactionIntervalsMs: readonly number[];
  /** GFS counts. */
  retention: RetentionSettings;
}

/** Options of a {@link Compactor}. */
export interface CompactorOptions {
  /** Clock (ms since the epoch); tests inject one. */
  now?: () => number;
  /** Grace period of incremental files (default {@link L0_RETENTION_MS}). */
  graceMs?: number;
  /** Retention runs this often from {@link Compactor.maybeCompact} (default {@link DEFAULT_RETENTION_INTERVAL_MS}). */
  retentionIntervalMs?: number;
  /** Turn retention (deletion) off; compaction still runs. */
  retention?: boolean;
  /** Logger (default: the process logger). */
  logger?: Logger;
}

/** What one {@link Compactor.maybeCompact} did. */
export interface MaintenanceReport {
  /** Compacted files written. */
  compactions: CompactionResult[];
  /** Retention result, when retention ran. */
  retention: RetentionResult | null;
}

/**
 * Compaction and retention of one database, for `watch`: call {@link maybeCompact} every few seconds (15 s,
 * as Litestream's L0 retention check); each level compacts when its wall-clock slot comes, the first time at
 * the first slot boundary after the compactor was made (a level whose slot is done costs no request), and retention runs every `retentionIntervalMs`. Calls never overlap (a call made while one runs
 * waits for it and returns its report).
 */
export class Compactor {
  /** The replica. */
  readonly client: ReplicaClient;
  /** The levels. */
  readonly schedule: readonly LevelSchedule[];
  readonly #settings: CompactorSettings;
  readonly #bus: EventBus | undefined;
  readonly #opts: CompactorOptions;
  readonly #log: Logger;
  #running: Promise<MaintenanceReport> | null = null;
  #lastRetention = -Infinity;
  /** When this compactor was made: levels wait for their first slot boundary after it. */
  readonly #since: number;
  /** What earlier ticks learnt: lets a tick where nothing is due skip listing. */
  readonly #state: CompactionState = newCompactionState();
  /** Snapshot timestamps already read (S3 metadata). */
  readonly #timestamps = new Map<string, Date>();

  /** A compactor for `client` (UsageError for an invalid schedule). */
  constructor(
    client: ReplicaClient,
    settings: CompactorSettings,
    bus?: EventBus,
    opts: CompactorOptions = {},
  ) {
    this.client = client;
    this.schedule = compactionSchedule(settings.compactionIntervalsMs);
    this.#settings = settings;
    this.#bus = bus;
    this.#opts = opts;
    this.#log = (opts.logger ?? rootLog).child({ db: settings.name });
    this.#since = this.#now();
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  /** Compacts the levels that are due at `now` (every level with new data when `force`). */
  compact(now: number = this.#now(), force = false): Promise<CompactionResult[]> {
    return runCompaction(this.client, this.schedule, {
      now,
      force,
      since: this.#since,
      state: this.#state,
      bus: this.#bus,
      db: this.#settings.name,
      logger: this.#log,
    });
  }

  /** Enforces retention at `now` (see `plan.ts`). */
  enforceRetention(now: number = this.#now(), dryRun = false): Promise<RetentionResult> {
    return enforceRetention(this.client, {
      retention: this.#settings.retention,
      now,
      graceMs: this.#opts.graceMs ?? L0_RETENTION_MS,
      timestamps: this.#timestamps,
      dryRun,
      bus: this.#bus,
      db: this.#settings.name,
      logger: this.#log,
    });
  }

  /**
   * One scheduler tick: due compactions, then retention if something was compacted or the retention interval
   * passed. Errors propagate (the caller logs them); the next tick starts over from a fresh listing.
   */
  maybeCompact(now: number = this.#now()): Promise<MaintenanceReport> {
    if (this.#running) return this.#running;
    this.#running = this.#tick(now).finally(() => (this.#running = null));
    return this.#running;
  }

  async #tick(now: number): Promise<MaintenanceReport> {
    const compactions = await this.compact(now);
    let retention: RetentionResult | null = null;
    const every = this.#opts.retentionIntervalMs ?? DEFAULT_RETENTION_INTERVAL_MS;
    if ((this.#opts.retention ?? true) && now - this.#lastRetention >= every) {
      retention = await this.enforceRetention(now);
      this.#lastRetention = now;
    }
    return { compactions, retention };
  }
}

/** How often `watch` should call the hook of {@link createCompactionHook} (Litestream's L0 retention check). */
export const COMPACTION_HOOK_INTERVAL_MS = 15_000;

/** What the hook needs of a replicated database (`DbReplicator` has it). */
export interface CompactableDb {
  /** Database name. */
  readonly name: string;
  /** Its replica. */
  readonly client: ReplicaClient;
  /** Its settings (compaction intervals, retention). */
  readonly settings: CompactorSettings;
}

/**
 * The hook `watch` installs with `Supervisor.setCompactionHook(hook, COMPACTION_HOOK_INTERVAL_MS)`: one
 * {@link Compactor} per database, created on first use, ticked on every call. Failures reject (the
 * supervisor logs them and tries again on the next tick).
 */
export function createCompactionHook(
  bus?: EventBus,
  opts: CompactorOptions = {},
): (db: CompactableDb) => Promise<void> {
  const compactors = new Map<string, Compactor>();
  return async (db: CompactableDb): Promise<void> => {
    let c = compactors.get(db.name);
    if (!c || c.client !== db.client) {
      c = new Compactor(db.client, db.settings, bus, opts);
      compactors.set(db.name, c);
    }
    try {
      await c.maybeCompact();
    } catch (err) {
      if (err instanceof CorruptionError) {
        bus?.emit({ type: "corruption_detected", db: db.name, object: err.object ?? "", error: err.message });
      } else {
        bus?.emit({
          type: "error",
          db: db.name,
          errorClass: errorClassOf(err),
          message: `compaction: ${messageOf(err)}`,
        });
      }
      throw err;
    }
  };
}
