/**
 * The event bus between the replication machinery and everything that observes it (metrics, health,
 * dashboard, webhooks, logs). Producers call `emit`; observers subscribe. Emitting never blocks and never
 * throws: a failing observer is isolated.
 *
 * @module
 */

import type { ErrorClass } from "../errors.ts";

/** Every event walrust emits. `db` is the database name; times are ms since the epoch; sizes in bytes. */
export type WalrustEvent =
  | { type: "db_started"; db: string; path: string; txid: number }
  | { type: "db_stopped"; db: string }
  /** A level-0 LTX file was written to the local queue (one sync). */
  | {
    type: "sync";
    db: string;
    txid: number;
    pages: number;
    bytes: number;
    walBytes: number;
    seconds: number;
  }
  /** A file reached the replica. `commitTime` is when its newest transaction was read from the WAL. */
  | {
    type: "upload";
    db: string;
    level: number;
    minTXID: number;
    maxTXID: number;
    bytes: number;
    seconds: number;
    readAt: number;
  }
  | { type: "upload_failed"; db: string; error: string; errorClass: ErrorClass; attempts: number }
  | {
    type: "retry";
    db?: string;
    operation: string;
    errorClass: ErrorClass;
    attempt: number;
    delayMs: number;
  }
  | { type: "checkpoint"; db: string; mode: "passive" | "truncate"; seconds: number; walPagesBefore: number }
  | { type: "checkpoint_emergency"; db: string; walPages: number }
  | { type: "snapshot"; db: string; txid: number; bytes: number; seconds: number }
  | {
    type: "compaction";
    db: string;
    level: number;
    minTXID: number;
    maxTXID: number;
    files: number;
    seconds: number;
  }
  | { type: "retention"; db: string; deleted: number; bytes: number }
  | { type: "circuit_breaker_open"; destination: string; failures: number }
  | { type: "circuit_breaker_closed"; destination: string }
  | { type: "auth_failure"; db?: string; error: string }
  | { type: "corruption_detected"; db?: string; object: string; error: string }
  | { type: "verify"; db: string; ok: boolean; exitCode: number; message: string; txid?: number }
  | { type: "verify_failed"; db: string; exitCode: number; message: string }
  | { type: "queue"; db: string; files: number; bytes: number; limitBytes: number }
  | { type: "error"; db?: string; errorClass: ErrorClass; message: string };

/** The `type` of a {@link WalrustEvent}. */
export type WalrustEventType = WalrustEvent["type"];

/** A subscriber; it receives the event and the time it was emitted (ms since epoch). */
export type EventListener = (event: WalrustEvent, at: number) => void;

/** A synchronous fan-out bus. */
export class EventBus {
  #listeners = new Set<EventListener>();
  readonly #clock: () => number;

  /** A bus stamping events with `clock` (ms since epoch; tests pass their own). */
  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  /** Delivers `event` to every subscriber; a subscriber that throws is ignored (it must not stop replication). */
  emit(event: WalrustEvent): void {
    const at = this.#clock();
    for (const l of this.#listeners) {
      try {
        l(event, at);
      } catch {
        // Observers must never break replication.
      }
    }
  }

  /** Adds a subscriber; returns a function that removes it. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Live state of one replicated database, as shown by /health and the dashboard. */
export interface DbStatus {
  /** Database name. */
  name: string;
  /** Database file path. */
  path: string;
  /** Replica URL with no credentials. */
  replica: string;
  /** `starting`, `syncing` (recent activity), `idle`, `error` or `stopped`. */
  state: "starting" | "syncing" | "idle" | "error" | "stopped";
  /** Newest TXID written locally. */
  txid: number;
  /** Newest TXID confirmed on the replica. */
  replicatedTxid: number;
  /** Seconds between the oldest transaction not yet on the replica being read and now (0 when caught up). */
  lagSeconds: number;
  /** Last successful WAL read (ms since epoch), or null. */
  lastSyncAt: number | null;
  /** Last successful upload (ms since epoch), or null. */
  lastUploadAt: number | null;
  /** Last snapshot (ms since epoch), or null. */
  lastSnapshotAt: number | null;
  /** Current WAL size in bytes. */
  walBytes: number;
  /** Files and bytes waiting in the local queue. */
  queueFiles: number;
  /** Bytes waiting in the local queue. */
  queueBytes: number;
  /** Circuit-breaker state of this database's destination. */
  circuit: "closed" | "open" | "half_open";
  /** Last error (message has no secrets), or null. */
  lastError: { message: string; errorClass: ErrorClass; at: number } | null;
}

/** Something that can report the live status of every database (implemented by the watch supervisor). */
export interface StatusProvider {
  /** Current status of every database. */
  statuses(): DbStatus[];
  /** Process start time (ms since epoch). */
  readonly startedAt: number;
}
