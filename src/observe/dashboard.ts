/**
 * The dashboard: `/` serves one self-contained page ({@link DASHBOARD_HTML}) and `/api/status` the JSON it polls
 * every second (one entry per database with its health verdict, lag, TXIDs, queue, last snapshot and error).
 *
 * The page is sent with a Content-Security-Policy that allows only its own inline script (by SHA-256), inline
 * styles and same-origin fetches, so even a bug in the page could not load or send anything elsewhere.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { DbStatus, StatusProvider } from "./events.ts";
import { computeHealth, dbHealth, type HealthStatus, publishError, rfc3339 } from "./health.ts";
import type { PublishedError } from "./health.ts";
import { scrub } from "./scrub.ts";
import { VERSION } from "../version.ts";
import { DASHBOARD_HTML, DASHBOARD_JS } from "./dashboard_page.ts";

export { DASHBOARD_HTML } from "./dashboard_page.ts";

/** One database in `/api/status`. */
export interface DbStatusView {
  /** Database name. */
  name: string;
  /** Replica URL without credentials. */
  replica: string;
  /** Replication state. */
  state: DbStatus["state"];
  /** Health verdict of this database. */
  health: HealthStatus;
  /** Why it is not healthy. */
  reasons: string[];
  /** Newest local TXID. */
  txid: number;
  /** Newest TXID on the replica. */
  replicated_txid: number;
  /** Replication lag, seconds. */
  lag_seconds: number;
  /** Last WAL read (RFC 3339) or null. */
  last_sync: string | null;
  /** Last upload (RFC 3339) or null. */
  last_upload: string | null;
  /** Last snapshot (RFC 3339) or null. */
  last_snapshot: string | null;
  /** WAL size, bytes. */
  wal_bytes: number;
  /** Files in the local queue. */
  queue_files: number;
  /** Bytes in the local queue. */
  queue_bytes: number;
  /** Circuit-breaker state of the destination. */
  circuit: DbStatus["circuit"];
  /** Last error or null. */
  last_error: PublishedError | null;
}

/** The `/api/status` body. */
export interface StatusView {
  /** Overall verdict. */
  status: HealthStatus;
  /** walrust version. */
  version: string;
  /** Server time (RFC 3339), so the page computes "ago" without trusting the browser's clock. */
  now: string;
  /** Seconds since the process started. */
  uptime_seconds: number;
  /** Replica reachability. */
  replica: { reachable: boolean; last_successful_upload: string | null };
  /** Databases, in the provider's order. */
  databases: DbStatusView[];
}

/** Builds the `/api/status` body at time `now`. */
export function statusView(status: StatusProvider, now: number = Date.now()): StatusView {
  // One snapshot of the statuses, so the overall verdict and the rows agree.
  const list = status.statuses();
  const report = computeHealth({ statuses: () => list, startedAt: status.startedAt }, now);
  const databases = list.map((s): DbStatusView => {
    const h = dbHealth(s, now);
    return {
      name: scrub(s.name),
      replica: scrub(s.replica),
      state: s.state,
      health: h.status,
      reasons: h.reasons,
      txid: s.txid,
      replicated_txid: s.replicatedTxid,
      lag_seconds: s.lagSeconds,
      last_sync: rfc3339(s.lastSyncAt),
      last_upload: rfc3339(s.lastUploadAt),
      last_snapshot: rfc3339(s.lastSnapshotAt),
      wal_bytes: s.walBytes,
      queue_files: s.queueFiles,
      queue_bytes: s.queueBytes,
      circuit: s.circuit,
      last_error: publishError(s.lastError),
    };
  });
  return {
    status: report.status,
    version: VERSION,
    now: new Date(now).toISOString(),
    uptime_seconds: report.uptime_seconds,
    replica: report.replica,
    databases,
  };
}

const SCRIPT_HASH = createHash("sha256").update(DASHBOARD_JS).digest("base64");

/** The dashboard's Content-Security-Policy: only its own script, inline styles and same-origin fetches. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${SCRIPT_HASH}'`,
  "style-src 'unsafe-inline'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** The `/` response: the page, with its CSP. */
export function dashboardResponse(): Response {
  return new Response(DASHBOARD_HTML, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": DASHBOARD_CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      "cache-control": "no-store",
    },
  });
}

/** The `/api/status` response (JSON, not cached). */
export function statusResponse(status: StatusProvider, now: number = Date.now()): Response {
  return new Response(JSON.stringify(statusView(status, now)), {
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  });
}
