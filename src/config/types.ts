/**
 * The resolved settings every command works from, after defaults, `walrust.toml`, environment variables
 * and command-line flags have been merged (in that order of increasing precedence).
 *
 * @module
 */

/** Where a setting's value came from (shown by `walrust explain`). */
export type SettingSource = "default" | "config" | "env" | "flag";

/** Connection settings for one replica destination. Secrets live only here and are never logged. */
export interface ReplicaSettings {
  /** `s3://bucket/prefix`, `file:///abs/dir` or a plain directory path, as the user gave it. */
  url: string;
  /** S3-compatible endpoint (`--endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`); undefined = AWS. */
  endpoint?: string;
  /** Region (`AWS_REGION`, `AWS_DEFAULT_REGION`); default `us-east-1` (`auto` works for R2 and Tigris). */
  region?: string;
  /** Path-style addressing (MinIO, s3rver); defaults to true when an endpoint is set, false for AWS. */
  forcePathStyle?: boolean;
  /** Access key id (`AWS_ACCESS_KEY_ID`). Secret-adjacent: shown only masked. */
  accessKeyId?: string;
  /** Secret access key (`AWS_SECRET_ACCESS_KEY`). Never shown. */
  secretAccessKey?: string;
  /** Session token (`AWS_SESSION_TOKEN`). Never shown. */
  sessionToken?: string;
}

/** Retry, backoff and circuit-breaker settings for replica requests. */
export interface RetrySettings {
  /** Tries per request, including the first (default 5). */
  maxAttempts: number;
  /** Base delay for full-jitter exponential backoff, ms (default 100). */
  baseDelayMs: number;
  /** Cap on one backoff delay, ms (default 30 000). */
  maxDelayMs: number;
  /** Consecutive failures that open the circuit breaker (default 10; 0 disables it). */
  breakerThreshold: number;
  /** How long the breaker stays open before one trial request, ms (default 60 000). */
  breakerCooldownMs: number;
}

/** GFS retention of snapshots (counts per tier; the newest snapshot is always kept). */
export interface RetentionSettings {
  /** Hourly snapshots kept (default 24). */
  hourly: number;
  /** Daily snapshots kept (default 7). */
  daily: number;
  /** Weekly snapshots kept (default 12). */
  weekly: number;
  /** Monthly snapshots kept (default 12). */
  monthly: number;
}

/** One webhook receiver. */
export interface WebhookSettings {
  /** URL to POST JSON to. */
  url: string;
  /** Events delivered to this receiver (default: all failure events). */
  events: string[];
  /** HMAC-SHA256 secret for the `X-Walrust-Signature` header. Never shown. */
  secret?: string;
}

/** Everything one replicated database needs. Durations are milliseconds. */
export interface DatabaseSettings {
  /** Path of the SQLite database file. */
  path: string;
  /** Name under the replica prefix (default: file name without extension, `app.db` → `app`). */
  name: string;
  /** The replica destination (the database's objects live under `<prefix>/<name>/`). */
  replica: ReplicaSettings;
  /** How often newly committed WAL frames are read and queued (default 1000; sub-second allowed). */
  syncIntervalMs: number;
  /** How often a full level-9 snapshot is written (default 24 h). */
  snapshotIntervalMs: number;
  /** PASSIVE checkpoint at least this often when there was activity (default 60 000). */
  checkpointIntervalMs: number;
  /** PASSIVE checkpoint once this many WAL pages were shipped (default 1000). */
  minCheckpointPages: number;
  /** Emergency TRUNCATE checkpoint at this many WAL pages (default 121 359; 0 disables). */
  truncatePages: number;
  /** Local queue directory (default `<db dir>/.<db file>-walrust`). */
  queueDir: string;
  /** Queue size limit in bytes; a loud warning at 80 % (default 1 GiB). */
  queueMaxBytes: number;
  /** Compaction intervals for levels 1.. (default [30 s, 5 min, 1 h]). */
  compactionIntervalsMs: number[];
  /** Retention of snapshots and of what they need. */
  retention: RetentionSettings;
  /** Run `verify` this often from `watch` (0 = off). */
  validationIntervalMs: number;
  /** Retry policy for this database's replica. */
  retry: RetrySettings;
}

/** Settings of the `watch` process as a whole. */
export interface WatchSettings {
  /** Databases to replicate. */
  databases: DatabaseSettings[];
  /** `host:port` for /metrics, /health and the dashboard (default `127.0.0.1:16767`); null = off. */
  metricsAddr: string | null;
  /** Webhook receivers. */
  webhooks: WebhookSettings[];
  /** Flush timeout on shutdown, ms (default 10 000). */
  shutdownTimeoutMs: number;
}

/** Defaults, in one place, so `explain` and the code agree. */
export const DEFAULTS = {
  syncIntervalMs: 1_000,
  snapshotIntervalMs: 24 * 3_600_000,
  checkpointIntervalMs: 60_000,
  minCheckpointPages: 1_000,
  truncatePages: 121_359,
  queueMaxBytes: 1024 * 1024 * 1024,
  compactionIntervalsMs: [30_000, 5 * 60_000, 3_600_000],
  retention: { hourly: 24, daily: 7, weekly: 12, monthly: 12 },
  validationIntervalMs: 0,
  retry: {
    maxAttempts: 5,
    baseDelayMs: 100,
    maxDelayMs: 30_000,
    breakerThreshold: 10,
    breakerCooldownMs: 60_000,
  },
  metricsAddr: "127.0.0.1:16767",
  shutdownTimeoutMs: 10_000,
} as const;
