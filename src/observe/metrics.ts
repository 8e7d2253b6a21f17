/**
 * Prometheus metrics: a small registry of our own (prom-client breaks `deno compile`) and the walrust
 * metric set, fed by the {@link EventBus} and, at scrape time, by the {@link StatusProvider}.
 *
 * Exposition is the text format 0.0.4: `# HELP` and `# TYPE` per family, label values escaped
 * (`\\`, `"`, newline), HELP text escaped (`\\`, newline), `+Inf`/`-Inf`/`NaN` spelled the Prometheus way.
 *
 * Where the numbers come from:
 * - Counters and histograms count events: `upload` (uploads, bytes, duration), `retry`, `checkpoint`,
 *   `checkpoint_emergency`, `snapshot`, `compaction`, `verify` (validations; `verify_failed` is not
 *   counted again), `retention`, `sync`. `walrust_errors_total{db,class}` counts `error`, `upload_failed`,
 *   `auth_failure` (class `auth`) and `corruption_detected` (class `corruption`) events, once each; `class`
 *   is the {@link ErrorClass} name used in logs (`connection` is the transient class).
 * - Gauges that mirror live state (lag, TXIDs, WAL size, queue, last sync, circuit breaker, database
 *   count) are recomputed from `StatusProvider.statuses()` on every scrape, so a database that went away
 *   disappears from them. Circuit-breaker state is per destination: destinations of the databases come
 *   from their status (`closed` 0, `half_open` 1, `open` 2); other destinations named only by
 *   `circuit_breaker_open`/`_closed` events keep their last event's value.
 *
 * No label ever carries a secret: every label value passes through {@link sanitizeLabelValue} (credentials
 * and query strings stripped from URLs, registered secrets masked).
 *
 * @module
 */

import type { ErrorClass } from "../errors.ts";
import type { DbStatus, EventBus, StatusProvider, WalrustEvent } from "./events.ts";
import { scrub } from "./scrub.ts";
import { VERSION } from "../version.ts";

/** The Content-Type of the 0.0.4 text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Label values by label name. Missing labels are exported as the empty string. */
export type Labels = Record<string, string | number>;

/** The type of a metric family. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Default histogram buckets (seconds): Prometheus's defaults plus a tail for snapshots of big databases. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value for the text format: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes HELP text for the text format: backslash and line feed. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Formats a sample value: integers plainly, `+Inf`, `-Inf`, `NaN`, other numbers in shortest round-trip form. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Makes a label value safe to publish (see {@link scrub}): no URL credentials, no registered secrets. */
export function sanitizeLabelValue(v: string): string {
  return scrub(v);
}

/** One exposed sample line. */
interface Sample {
  suffix: string;
  labels: [string, string][];
  value: number;
}

/** Common part of counters, gauges and histograms: name, help, label names and series keyed by label values. */
abstract class Metric<S> {
  /** The family name. */
  readonly name: string;
  /** The HELP text. */
  readonly help: string;
  /** Label names, in exposition order. */
  readonly labelNames: readonly string[];
  /** The family type. */
  abstract readonly type: MetricType;
  protected series = new Map<string, { values: string[]; state: S }>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name '${name}'`);
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith("__")) throw new Error(`invalid label name '${l}' on ${name}`);
    }
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  /** The label values of `labels` in label-name order, sanitized. Unknown labels are a bug. */
  protected valuesOf(labels: Labels): string[] {
    for (const k of Object.keys(labels)) {
      if (!this.labelNames.includes(k)) throw new Error(`metric ${this.name} has no label '${k}'`);
    }
    return this.labelNames.map((n) => sanitizeLabelValue(String(labels[n] ?? "")));
  }

  /** The series for `labels`, created with `init` when new. */
  protected entry(labels: Labels, init: () => S): { values: string[]; state: S } {
    const values = this.valuesOf(labels);
    const key = JSON.stringify(values);
    let e = this.series.get(key);
    if (!e) {
      e = { values, state: init() };
      this.series.set(key, e);
    }
    return e;
  }

  /** Removes every series. */
  reset(): void {
    this.series.clear();
  }

  /** Removes the series with exactly these labels. */
  remove(labels: Labels): void {
    this.series.delete(JSON.stringify(this.valuesOf(labels)));
  }

  /** The samples of this family, in insertion order of the series. */
  abstract samples(): Sample[];

  protected pairs(values: string[]): [string, string][] {
    return this.labelNames.map((n, i) => [n, values[i]]);
  }
}

/** A monotonically increasing counter. */
export class Counter extends Metric<{ v: number }> {
  /** Always `counter`. */
  readonly type = "counter" as const;

  /** Adds `by` (default 1; negative amounts are a bug) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} cannot decrease (by ${by})`);
    this.entry(labels, () => ({ v: 0 })).state.v += by;
  }

  /** The current value of the series with `labels` (0 when absent). */
  get(labels: Labels = {}): number {
    return this.series.get(JSON.stringify(this.valuesOf(labels)))?.state.v ?? 0;
  }

  /** The samples; an unlabelled counter shows 0 before its first increment. */
  samples(): Sample[] {
    if (this.series.size === 0 && this.labelNames.length === 0) return [{ suffix: "", labels: [], value: 0 }];
    return [...this.series.values()].map((e) => ({
      suffix: "",
      labels: this.pairs(e.values),
      value: e.state.v,
    }));
  }
}

/** A value that goes up and down. */
export class Gauge extends Metric<{ v: number }> {
  /** Always `gauge`. */
  readonly type = "gauge" as const;

  /** Sets the series with `labels` to `v`. */
  set(labels: Labels, v: number): void {
    this.entry(labels, () => ({ v: 0 })).state.v = v;
  }

  /** Adds `by` (may be negative) to the series with `labels`. */
  inc(labels: Labels = {}, by = 1): void {
    this.entry(labels, () => ({ v: 0 })).state.v += by;
  }

  /** The current value of the series with `labels`, or undefined when absent. */
  get(labels: Labels = {}): number | undefined {
    return this.series.get(JSON.stringify(this.valuesOf(labels)))?.state.v;
  }

  /** The samples; an unlabelled gauge shows 0 before it is first set. */
  samples(): Sample[] {
    if (this.series.size === 0 && this.labelNames.length === 0) return [{ suffix: "", labels: [], value: 0 }];
    return [...this.series.values()].map((e) => ({
      suffix: "",
      labels: this.pairs(e.values),
      value: e.state.v,
    }));
  }
}

/** A histogram with fixed upper bounds; exported as cumulative `_bucket{le}`, `_sum` and `_count`. */
export class Histogram extends Metric<{ counts: number[]; sum: number; count: number }> {
  /** Always `histogram`. */
  readonly type = "histogram" as const;
  /** Bucket upper bounds, ascending, without `+Inf`. */
  readonly buckets: readonly number[];

  /** Creates a histogram; `buckets` are sorted, must be distinct and finite (`+Inf` is implicit). */
  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    if (labelNames.includes("le")) throw new Error(`histogram ${name} cannot use the label 'le'`);
    const sorted = [...buckets].filter((b) => b !== Infinity).sort((a, b) => a - b);
    if (sorted.some((b, i) => i > 0 && b === sorted[i - 1]) || sorted.some((b) => !Number.isFinite(b))) {
      throw new Error(`histogram ${name}: buckets must be distinct finite numbers`);
    }
    this.buckets = sorted;
  }

  /** Records one observation of `v` in the series with `labels`. */
  observe(labels: Labels, v: number): void {
    const e = this.entry(
      labels,
      () => ({ counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 }),
    );
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) e.state.counts[i]++;
    e.state.sum += v;
    e.state.count++;
  }

  /** Count and sum of the series with `labels`, or undefined when absent. */
  get(labels: Labels = {}): { count: number; sum: number } | undefined {
    const e = this.series.get(JSON.stringify(this.valuesOf(labels)));
    return e ? { count: e.state.count, sum: e.state.sum } : undefined;
  }

  /** The samples: cumulative buckets, `+Inf`, sum and count per series. */
  samples(): Sample[] {
    const out: Sample[] = [];
    for (const e of this.series.values()) {
      const base = this.pairs(e.values);
      let cum = 0;
      this.buckets.forEach((b, i) => {
        cum += e.state.counts[i];
        out.push({ suffix: "_bucket", labels: [...base, ["le", formatValue(b)]], value: cum });
      });
      out.push({ suffix: "_bucket", labels: [...base, ["le", "+Inf"]], value: e.state.count });
      out.push({ suffix: "_sum", labels: base, value: e.state.sum });
      out.push({ suffix: "_count", labels: base, value: e.state.count });
    }
    return out;
  }
}

/** A set of metric families rendered together. Collectors run before each render (scrape-time gauges). */
export class Registry {
  #metrics = new Map<string, Counter | Gauge | Histogram>();
  #collectors: (() => void)[] = [];

  #add<M extends Counter | Gauge | Histogram>(m: M): M {
    if (this.#metrics.has(m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  /** Registers a counter. By convention its name ends in `_total`. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  /** Registers a gauge. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }

  /** Registers a histogram with `buckets` (default {@link DEFAULT_BUCKETS}). */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = DEFAULT_BUCKETS,
  ): Histogram {
    return this.#add(new Histogram(name, help, labelNames, buckets));
  }

  /** Adds a function run before every render, to refresh gauges from live state. */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  /** The registered family called `name`, if any. */
  get(name: string): Counter | Gauge | Histogram | undefined {
    return this.#metrics.get(name);
  }

  /** Runs the collectors and renders every family in the text format 0.0.4 (ends with a newline). */
  render(): string {
    for (const c of this.#collectors) {
      try {
        c();
      } catch {
        // A failing collector must not take /metrics down; its gauges keep their previous values.
      }
    }
    const lines: string[] = [];
    for (const m of this.#metrics.values()) {
      lines.push(`# HELP ${m.name} ${escapeHelp(m.help)}`);
      lines.push(`# TYPE ${m.name} ${m.type}`);
      for (const s of m.samples()) {
        const labels = s.labels.length
          ? `{${s.labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",")}}`
          : "";
        lines.push(`${m.name}${s.suffix}${labels} ${formatValue(s.value)}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}

const CIRCUIT_VALUE: Record<DbStatus["circuit"], number> = { closed: 0, half_open: 1, open: 2 };

/**
 * The walrust metric set on its own {@link Registry}: subscribes to `bus` on construction and refreshes
 * status-mirroring gauges from `status` on every {@link WalrustMetrics.render}.
 */
export class WalrustMetrics {
  /** The registry holding every family below (exposed for tests and extra families). */
  readonly registry: Registry = new Registry();
  #unsubscribe: () => void;
  #status: StatusProvider;
  /** Breaker state per destination from events, for destinations no database status names. */
  #eventBreakers = new Map<string, number>();

  // Status mirrors (refilled at scrape time).
  /** `walrust_replication_lag_seconds`. */
  readonly lag: Gauge;
  /** `walrust_last_sync_timestamp_seconds`. */
  readonly lastSync: Gauge;
  /** `walrust_current_txid`. */
  readonly currentTxid: Gauge;
  /** `walrust_replicated_txid`. */
  readonly replicatedTxid: Gauge;
  /** `walrust_wal_size_bytes`. */
  readonly walSize: Gauge;
  /** `walrust_queue_files`. */
  readonly queueFiles: Gauge;
  /** `walrust_queue_bytes`. */
  readonly queueBytes: Gauge;
  /** `walrust_circuit_breaker_state`. */
  readonly breaker: Gauge;
  /** `walrust_databases`. */
  readonly databases: Gauge;
  /** `walrust_uptime_seconds`. */
  readonly uptime: Gauge;
  /** `process_resident_memory_bytes`. */
  readonly rss: Gauge;
  // Event-driven.
  /** `walrust_queue_limit_bytes`. */
  readonly queueLimit: Gauge;
  /** `walrust_syncs_total`. */
  readonly syncs: Counter;
  /** `walrust_uploads_total`. */
  readonly uploads: Counter;
  /** `walrust_uploaded_bytes_total`. */
  readonly uploadedBytes: Counter;
  /** `walrust_upload_duration_seconds`. */
  readonly uploadDuration: Histogram;
  /** `walrust_errors_total`. */
  readonly errors: Counter;
  /** `walrust_retries_total`. */
  readonly retries: Counter;
  /** `walrust_checkpoints_total`. */
  readonly checkpoints: Counter;
  /** `walrust_checkpoint_duration_seconds`. */
  readonly checkpointDuration: Histogram;
  /** `walrust_checkpoint_emergencies_total`. */
  readonly emergencyCheckpoints: Counter;
  /** `walrust_snapshots_total`. */
  readonly snapshots: Counter;
  /** `walrust_snapshot_duration_seconds`. */
  readonly snapshotDuration: Histogram;
  /** `walrust_compactions_total`. */
  readonly compactions: Counter;
  /** `walrust_compaction_duration_seconds`. */
  readonly compactionDuration: Histogram;
  /** `walrust_validations_total`. */
  readonly validations: Counter;
  /** `walrust_retention_deleted_files_total`. */
  readonly retentionDeleted: Counter;

  /** Creates the families and subscribes to `bus`; call {@link WalrustMetrics.close} to unsubscribe. */
  constructor(bus: EventBus, status: StatusProvider) {
    const r = this.registry;
    this.#status = status;
    r.gauge("walrust_build_info", "walrust build information (always 1).", ["version"]).set(
      { version: VERSION },
      1,
    );
    this.lag = r.gauge(
      "walrust_replication_lag_seconds",
      "Seconds since the oldest transaction not yet on the replica was read (0 when caught up).",
      ["db"],
    );
    this.lastSync = r.gauge(
      "walrust_last_sync_timestamp_seconds",
      "Unix time of the last successful WAL read.",
      ["db"],
    );
    this.currentTxid = r.gauge("walrust_current_txid", "Newest TXID written locally.", ["db"]);
    this.replicatedTxid = r.gauge("walrust_replicated_txid", "Newest TXID confirmed on the replica.", ["db"]);
    this.walSize = r.gauge("walrust_wal_size_bytes", "Current size of the database's WAL file.", ["db"]);
    this.queueFiles = r.gauge("walrust_queue_files", "LTX files waiting in the local upload queue.", ["db"]);
    this.queueBytes = r.gauge("walrust_queue_bytes", "Bytes waiting in the local upload queue.", ["db"]);
    this.queueLimit = r.gauge("walrust_queue_limit_bytes", "Configured local queue size limit.", ["db"]);
    this.syncs = r.counter("walrust_syncs_total", "Level-0 LTX files written to the local queue.", ["db"]);
    this.uploads = r.counter("walrust_uploads_total", "LTX files uploaded to the replica.", ["db", "level"]);
    this.uploadedBytes = r.counter("walrust_uploaded_bytes_total", "Bytes uploaded to the replica.", ["db"]);
    this.uploadDuration = r.histogram(
      "walrust_upload_duration_seconds",
      "Duration of one LTX upload, including retries.",
      ["db"],
    );
    this.errors = r.counter(
      "walrust_errors_total",
      "Failures by error class (connection = transient network/5xx, auth, corruption, ...).",
      ["db", "class"],
    );
    this.retries = r.counter("walrust_retries_total", "Retried replica requests.", ["operation"]);
    this.breaker = r.gauge(
      "walrust_circuit_breaker_state",
      "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
      ["destination"],
    );
    this.checkpoints = r.counter("walrust_checkpoints_total", "WAL checkpoints run.", ["db", "mode"]);
    this.checkpointDuration = r.histogram(
      "walrust_checkpoint_duration_seconds",
      "Duration of one WAL checkpoint.",
      ["db", "mode"],
    );
    this.emergencyCheckpoints = r.counter(
      "walrust_checkpoint_emergencies_total",
      "Times the WAL reached the emergency TRUNCATE threshold.",
      ["db"],
    );
    this.snapshots = r.counter("walrust_snapshots_total", "Snapshots written to the replica.", ["db"]);
    this.snapshotDuration = r.histogram(
      "walrust_snapshot_duration_seconds",
      "Duration of one snapshot.",
      ["db"],
    );
    this.compactions = r.counter("walrust_compactions_total", "Level compactions run.", ["db", "level"]);
    this.compactionDuration = r.histogram(
      "walrust_compaction_duration_seconds",
      "Duration of one level compaction.",
      ["db", "level"],
    );
    this.validations = r.counter(
      "walrust_validations_total",
      "Backup validations (verify) by result: ok or failure.",
      ["db", "result"],
    );
    this.retentionDeleted = r.counter(
      "walrust_retention_deleted_files_total",
      "Replica files deleted by retention.",
      ["db"],
    );
    this.databases = r.gauge("walrust_databases", "Databases being replicated.");
    this.uptime = r.gauge("walrust_uptime_seconds", "Seconds since the process started.");
    this.rss = r.gauge("process_resident_memory_bytes", "Resident memory size in bytes.");
    r.onCollect(() => this.#collect());
    this.#unsubscribe = bus.subscribe((e) => this.#onEvent(e));
  }

  /** Renders all metrics in the text format 0.0.4. */
  render(): string {
    return this.registry.render();
  }

  /** Stops listening to the bus. */
  close(): void {
    this.#unsubscribe();
  }

  #error(db: string | undefined, cls: ErrorClass): void {
    this.errors.inc({ db: db ?? "", class: cls });
  }

  #onEvent(e: WalrustEvent): void {
    switch (e.type) {
      case "sync":
        this.syncs.inc({ db: e.db });
        break;
      case "upload":
        this.uploads.inc({ db: e.db, level: e.level });
        this.uploadedBytes.inc({ db: e.db }, Math.max(0, e.bytes));
        this.uploadDuration.observe({ db: e.db }, e.seconds);
        break;
      case "upload_failed":
        this.#error(e.db, e.errorClass);
        break;
      case "error":
        this.#error(e.db, e.errorClass);
        break;
      case "auth_failure":
        this.#error(e.db, "auth");
        break;
      case "corruption_detected":
        this.#error(e.db, "corruption");
        break;
      case "retry":
        this.retries.inc({ operation: e.operation });
        break;
      case "circuit_breaker_open":
        this.#eventBreakers.set(sanitizeLabelValue(e.destination), CIRCUIT_VALUE.open);
        break;
      case "circuit_breaker_closed":
        this.#eventBreakers.set(sanitizeLabelValue(e.destination), CIRCUIT_VALUE.closed);
        break;
      case "checkpoint":
        this.checkpoints.inc({ db: e.db, mode: e.mode });
        this.checkpointDuration.observe({ db: e.db, mode: e.mode }, e.seconds);
        break;
      case "checkpoint_emergency":
        this.emergencyCheckpoints.inc({ db: e.db });
        break;
      case "snapshot":
        this.snapshots.inc({ db: e.db });
        this.snapshotDuration.observe({ db: e.db }, e.seconds);
        break;
      case "compaction":
        this.compactions.inc({ db: e.db, level: e.level });
        this.compactionDuration.observe({ db: e.db, level: e.level }, e.seconds);
        break;
      case "verify":
        this.validations.inc({ db: e.db, result: e.ok ? "ok" : "failure" });
        break;
      case "retention":
        this.retentionDeleted.inc({ db: e.db }, Math.max(0, e.deleted));
        break;
      case "queue":
        this.queueLimit.set({ db: e.db }, e.limitBytes);
        break;
      default:
        // db_started, db_stopped, verify_failed: reflected through status or counted elsewhere.
        break;
    }
  }

  #collect(): void {
    const now = Date.now();
    const mirrors = [
      this.lag,
      this.lastSync,
      this.currentTxid,
      this.replicatedTxid,
      this.walSize,
      this.queueFiles,
      this.queueBytes,
      this.breaker,
    ];
    let statuses: DbStatus[];
    try {
      statuses = this.#status.statuses();
    } catch {
      statuses = [];
    }
    for (const g of mirrors) g.reset();
    const statusBreakers = new Map<string, number>();
    for (const s of statuses) {
      const db = { db: s.name };
      this.lag.set(db, s.lagSeconds);
      if (s.lastSyncAt !== null) this.lastSync.set(db, s.lastSyncAt / 1000);
      this.currentTxid.set(db, s.txid);
      this.replicatedTxid.set(db, s.replicatedTxid);
      this.walSize.set(db, s.walBytes);
      this.queueFiles.set(db, s.queueFiles);
      this.queueBytes.set(db, s.queueBytes);
      // Several databases share a destination: show the worst state any of them sees.
      const dest = sanitizeLabelValue(s.replica);
      statusBreakers.set(dest, Math.max(statusBreakers.get(dest) ?? 0, CIRCUIT_VALUE[s.circuit] ?? 0));
    }
    for (const [dest, v] of this.#eventBreakers) {
      if (!statusBreakers.has(dest)) this.breaker.set({ destination: dest }, v);
    }
    for (const [dest, v] of statusBreakers) this.breaker.set({ destination: dest }, v);
    this.databases.set({}, statuses.length);
    this.uptime.set({}, Math.max(0, (now - this.#status.startedAt) / 1000));
    try {
      this.rss.set({}, Deno.memoryUsage().rss);
    } catch {
      // Not available on this platform: keep the last value.
    }
  }
}
