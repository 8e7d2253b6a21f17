/**
 * `/health` (and the data behind the dashboard's `/api/status`): one verdict per database and one overall,
 * computed from the {@link StatusProvider} at request time. Usable as a Fly.io / Kubernetes HTTP check:
 * HTTP 200 for `healthy` and `degraded`, 503 for `unhealthy`.
 *
 * Rules for one database (first match wins; thresholds in {@link HEALTH_THRESHOLDS}):
 * - `unhealthy` when
 *   - its destination's circuit breaker is open (nothing can reach the replica), or
 *   - it is in the `error` state and its lag exceeds `errorLagSeconds` (60 s): failing and falling behind, or
 *   - its lag exceeds `unhealthyLagSeconds` (300 s) whatever the state: backups are minutes behind.
 * - `degraded` when
 *   - its lag exceeds `degradedLagSeconds` (5 s), or
 *   - it is in the `error` state (lag still small), or the breaker is half-open, or
 *   - its last error is recent (within `recentErrorSeconds`, 300 s) and no upload succeeded since, or
 *   - it is `stopped` (no longer replicating).
 * - `healthy` otherwise. An idle database with nothing to ship is healthy (the Rust walrust called a
 *   quiet database "stale" and the whole fleet "degraded"), and so is one that is `starting`.
 *
 * Overall status is the worst database status; a process with no databases is `healthy`.
 * `replica.reachable` is false when any breaker is open, or when a database's newest error is a
 * connection/auth/bucket error with no successful upload after it.
 *
 * Every text field is scrubbed (no credentials, no registered secrets). Times are RFC 3339 strings or null.
 *
 * @module
 */

import type { DbStatus, StatusProvider } from "./events.ts";
import { scrub } from "./scrub.ts";

/** A health verdict. */
export type HealthStatus = "healthy" | "degraded" | "unhealthy";

/** Thresholds of the health rules. */
export interface HealthThresholds {
  /** Lag above which a database is degraded (default 5 s). */
  degradedLagSeconds: number;
  /** Lag above which a database in the error state is unhealthy (default 60 s). */
  errorLagSeconds: number;
  /** Lag above which any database is unhealthy (default 300 s). */
  unhealthyLagSeconds: number;
  /** How long an error keeps a database degraded unless an upload succeeds after it (default 300 s). */
  recentErrorSeconds: number;
}

/** The default thresholds. */
export const HEALTH_THRESHOLDS: Readonly<HealthThresholds> = {
  degradedLagSeconds: 5,
  errorLagSeconds: 60,
  unhealthyLagSeconds: 300,
  recentErrorSeconds: 300,
};

/** The last error of a database as published. */
export interface PublishedError {
  /** One-line message, scrubbed. */
  message: string;
  /** Error class (`connection`, `auth`, `corruption`, ...). */
  class: string;
  /** When it happened (RFC 3339). */
  at: string;
}

/** One database in the `/health` body. */
export interface DbHealth {
  /** The verdict for this database. */
  status: HealthStatus;
  /** Why it is not healthy (empty when healthy). */
  reasons: string[];
  /** Replication state: starting, syncing, idle, error, stopped. */
  state: DbStatus["state"];
  /** Newest TXID written locally. */
  txid: number;
  /** Newest TXID confirmed on the replica. */
  replicated_txid: number;
  /** Replication lag in seconds. */
  lag_seconds: number;
  /** Last successful WAL read (RFC 3339) or null. */
  last_sync: string | null;
  /** Last successful upload (RFC 3339) or null. */
  last_upload: string | null;
  /** Last error or null. */
  last_error: PublishedError | null;
  /** Files waiting in the local queue. */
  queue_files: number;
}

/** The `/health` body. */
export interface HealthReport {
  /** Overall verdict: the worst database verdict. */
  status: HealthStatus;
  /** Seconds since the process started. */
  uptime_seconds: number;
  /** Per-database verdicts by name. */
  databases: Record<string, DbHealth>;
  /** Replica reachability. */
  replica: { reachable: boolean; last_successful_upload: string | null };
}

const RANK: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 };
const REACHABILITY_CLASSES = new Set(["connection", "auth", "bucket_not_found"]);

/** An RFC 3339 timestamp for ms since the epoch, or null. */
export function rfc3339(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
}

/** The worse of two verdicts. */
export function worse(a: HealthStatus, b: HealthStatus): HealthStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

/** The verdict and its reasons for one database (rules in the module doc). */
export function dbHealth(
  s: DbStatus,
  now: number,
  t: HealthThresholds = HEALTH_THRESHOLDS,
): { status: HealthStatus; reasons: string[] } {
  const lag = Number.isFinite(s.lagSeconds) ? s.lagSeconds : 0;
  const lagText = `replication lag ${lag.toFixed(1)} s`;
  const unhealthy: string[] = [];
  if (s.circuit === "open") unhealthy.push("circuit breaker open: the replica is not being contacted");
  if (s.state === "error" && lag > t.errorLagSeconds) {
    unhealthy.push(`in error state with ${lagText} (> ${t.errorLagSeconds} s)`);
  } else if (lag > t.unhealthyLagSeconds) {
    unhealthy.push(`${lagText} (> ${t.unhealthyLagSeconds} s)`);
  }
  if (unhealthy.length) return { status: "unhealthy", reasons: unhealthy };

  const degraded: string[] = [];
  if (lag > t.degradedLagSeconds) degraded.push(`${lagText} (> ${t.degradedLagSeconds} s)`);
  if (s.state === "error") degraded.push("in error state");
  if (s.circuit === "half_open") degraded.push("circuit breaker half-open");
  if (s.state === "stopped") degraded.push("stopped");
  const e = s.lastError;
  if (
    e && s.state !== "error" && now - e.at <= t.recentErrorSeconds * 1000 &&
    (s.lastUploadAt === null || s.lastUploadAt < e.at)
  ) {
    degraded.push(`recent ${e.errorClass} error`);
  }
  if (degraded.length) return { status: "degraded", reasons: degraded };
  return { status: "healthy", reasons: [] };
}

/** Publishes a database's last error (scrubbed), or null. */
export function publishError(e: DbStatus["lastError"]): PublishedError | null {
  return e ? { message: scrub(e.message), class: e.errorClass, at: rfc3339(e.at) ?? "" } : null;
}

/** Computes the `/health` body from `status` at time `now` (ms since epoch). */
export function computeHealth(
  status: StatusProvider,
  now: number = Date.now(),
  t: HealthThresholds = HEALTH_THRESHOLDS,
): HealthReport {
  const statuses = status.statuses();
  let overall: HealthStatus = "healthy";
  let reachable = true;
  let lastUpload: number | null = null;
  const databases: Record<string, DbHealth> = {};
  for (const s of statuses) {
    const h = dbHealth(s, now, t);
    overall = worse(overall, h.status);
    if (s.circuit === "open") reachable = false;
    if (
      s.lastError && REACHABILITY_CLASSES.has(s.lastError.errorClass) &&
      (s.lastUploadAt === null || s.lastUploadAt < s.lastError.at)
    ) {
      reachable = false;
    }
    if (s.lastUploadAt !== null && (lastUpload === null || s.lastUploadAt > lastUpload)) {
      lastUpload = s.lastUploadAt;
    }
    databases[scrub(s.name)] = {
      status: h.status,
      reasons: h.reasons,
      state: s.state,
      txid: s.txid,
      replicated_txid: s.replicatedTxid,
      lag_seconds: s.lagSeconds,
      last_sync: rfc3339(s.lastSyncAt),
      last_upload: rfc3339(s.lastUploadAt),
      last_error: publishError(s.lastError),
      queue_files: s.queueFiles,
    };
  }
  return {
    status: overall,
    uptime_seconds: Math.max(0, Math.round((now - status.startedAt) / 100) / 10),
    databases,
    replica: { reachable, last_successful_upload: rfc3339(lastUpload) },
  };
}

/** The HTTP status for a verdict: 503 for unhealthy, 200 otherwise. */
export function httpStatusOf(status: HealthStatus): number {
  return status === "unhealthy" ? 503 : 200;
}

/** The `/health` response (JSON, not cached). */
export function healthResponse(status: StatusProvider, now: number = Date.now()): Response {
  const report = computeHealth(status, now);
  return new Response(JSON.stringify(report, null, 2) + "\n", {
    status: httpStatusOf(report.status),
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}
