/**
 * `walrust explain`: the effective settings of every database (after globs), where each value came from
 * (default, config file, environment, flag) with secrets masked, and an estimated monthly bill for a given
 * write rate at AWS S3, Tigris and Cloudflare R2.
 *
 * @module
 */

import { type Command, parseCommandArgs } from "./command.ts";
import type { CliIO } from "./command.ts";
import { UsageError } from "../errors.ts";
import { REPLICA_HELP, WATCH_HELP, WATCH_OPTIONS } from "../config/cli.ts";
import { type CliConfig, loadCliConfig } from "../config/cli.ts";
import {
  type CostEstimate,
  estimateMonthlyCost,
  GB,
  MONTH_SECONDS,
  PAGES_PER_WRITE,
  PRICES,
} from "../config/cost.ts";
import { parseByteSize } from "../config/load.ts";
import {
  resolveDatabases,
  type ResolvedDatabase,
  resolveProcess,
  resolveReplicaSettings,
  resolveTuning,
  RETRY_KEYS,
  type Sources,
  type Tuning,
  TUNING_KEYS,
} from "../config/resolve.ts";
import type { ReplicaSettings, SettingSource } from "../config/types.ts";
import { formatDuration } from "../util/duration.ts";
import { parseReplicaUrl } from "../storage/url.ts";

/** Size assumed for a database whose file does not exist (and no `--db-size` was given). */
export const ASSUMED_DB_SIZE = GB;

/** One setting in the report. */
export interface ExplainSetting {
  /** Config-style key: `sync.interval`, `replica.url`, `retention.hourly`. */
  key: string;
  /** The value as JSON (durations in ms, sizes in bytes); secrets are never included. */
  value: unknown;
  /** The value as shown to humans (secrets masked). */
  display: string;
  /** Where it came from. */
  source: SettingSource;
  /** File position, variable or flag. */
  detail?: string;
}

/** One database in the report. */
export interface ExplainDatabase {
  /** Replica name. */
  name: string;
  /** Database file. */
  path: string;
  /** The glob it matched, if any. */
  glob?: string;
  /** Whether the file exists. */
  exists: boolean;
  /** Where its objects go (`<replica>/<name>/`), or null without a replica. */
  destination: string | null;
  /** Size used for the estimate. */
  sizeBytes: number;
  /** Whether the size is assumed (file missing) or given with --db-size. */
  sizeSource: "file" | "assumed" | "flag";
  /** Page size used for the estimate. */
  pageSize: number;
  /** Every effective setting. */
  settings: ExplainSetting[];
  /** The monthly estimate. */
  cost: CostEstimate;
}

/** The whole report (`walrust explain --json` prints exactly this). */
export interface ExplainReport {
  /** The config file read, or null. */
  config: string | null;
  /** How the config file was found (`flag`, `cwd`, `env`), or null. */
  configFoundBy: string | null;
  /** The write rate the estimate is for. */
  writesPerSecond: number;
  /** Databases (after globs). */
  databases: ExplainDatabase[];
  /** Global settings when there is no database: what a database would get. */
  defaults: ExplainSetting[] | null;
  /** Estimate for one database of the assumed size with the global settings, when there is none. */
  defaultsCost: CostEstimate | null;
  /** metrics address, shutdown timeout. */
  process: ExplainSetting[];
  /** Webhooks, URL reduced to its origin, secret never shown. */
  webhooks: { url: string; events: string[]; secret: boolean }[];
  /** The price table used. */
  prices: typeof PRICES;
  /** Sum of every database's estimate per provider, USD/month. */
  totals: { name: string; total: number }[];
  /** Assumptions behind the estimate. */
  assumptions: string[];
  /** Warnings met while resolving (globs matching nothing, missing files). */
  warnings: string[];
}

/** Masks an access key id: first 4 and last 3 characters (`AKIA…XYZ`); short keys are fully hidden. */
export function maskAccessKey(id: string): string {
  return id.length >= 12 ? `${id.slice(0, 4)}…${id.slice(-3)}` : "…";
}

/** Reduces a URL to scheme, host and port so tokens in paths, queries or user info never show. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    const rest = u.pathname !== "/" || u.search ? "/…" : "";
    return `${u.protocol}//${u.host}${rest}`;
  } catch {
    return "(invalid URL)";
  }
}

function durationSetting(ms: number): string {
  return ms === 0 ? "0 (off)" : formatDuration(ms);
}

function bytesText(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

function setting(key: string, value: unknown, display: string, sources: Sources): ExplainSetting {
  const s = sources[key] ?? { source: "default" as const };
  const out: ExplainSetting = { key, value, display, source: s.source };
  if (s.detail) out.detail = s.detail;
  return out;
}

function replicaSettings(r: ReplicaSettings | null, sources: Sources): ExplainSetting[] {
  const out: ExplainSetting[] = [];
  out.push(setting("replica.url", r?.url ?? null, r?.url ?? "(none)", sources));
  if (!r) return out;
  let isS3 = true;
  try {
    isS3 = parseReplicaUrl(r.url).kind === "s3";
  } catch {
    // Validated earlier; show the S3 keys if it somehow does not parse.
  }
  if (r.endpoint) out.push(setting("replica.endpoint", maskUrl(r.endpoint), maskUrl(r.endpoint), sources));
  if (isS3) {
    out.push(setting("replica.region", r.region ?? null, r.region ?? "", sources));
    out.push(
      setting("replica.force_path_style", r.forcePathStyle ?? false, String(r.forcePathStyle), sources),
    );
    // Only masked forms leave this function: the JSON value is the masked text too.
    const id = r.accessKeyId ? maskAccessKey(r.accessKeyId) : null;
    out.push(setting("replica.access_key_id", id, id ?? "(not set: SDK default chain)", sources));
    out.push(
      setting(
        "replica.secret_access_key",
        r.secretAccessKey ? "(set)" : null,
        r.secretAccessKey ? "(set, hidden)" : "(not set)",
        sources,
      ),
    );
    if (r.sessionToken) {
      out.push(setting("replica.session_token", "(set)", "(set, hidden)", sources));
    }
  }
  return out;
}

function tuningSettings(t: Tuning, sources: Sources): ExplainSetting[] {
  const out: ExplainSetting[] = [];
  for (const meta of TUNING_KEYS) {
    const v = t[meta.field];
    const display = meta.kind.endsWith("Duration")
      ? durationSetting(v)
      : meta.kind === "bytes"
      ? bytesText(v)
      : meta.field === "truncatePages" && v === 0
      ? "0 (off)"
      : String(v);
    out.push(setting(meta.key, v, display, sources));
  }
  out.push(
    setting(
      "compaction.levels",
      t.compactionIntervalsMs,
      t.compactionIntervalsMs.length ? t.compactionIntervalsMs.map(formatDuration).join(", ") : "(none)",
      sources,
    ),
  );
  for (const f of ["hourly", "daily", "weekly", "monthly"] as const) {
    out.push(setting(`retention.${f}`, t.retention[f], String(t.retention[f]), sources));
  }
  for (const { field, key } of RETRY_KEYS) {
    const v = t.retry[field];
    out.push(setting(key, v, field.endsWith("Ms") ? formatDuration(v) : String(v), sources));
  }
  return out;
}

async function fileFacts(path: string): Promise<{ size: number; pageSize: number } | null> {
  let f: Deno.FsFile | undefined;
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) return null;
    f = await Deno.open(path, { read: true });
    const head = new Uint8Array(100);
    const n = await f.read(head);
    let pageSize = 4096;
    if (n === 100 && new TextDecoder().decode(head.subarray(0, 15)) === "SQLite format 3") {
      const raw = (head[16] << 8) | head[17];
      pageSize = raw === 1 ? 65536 : raw >= 512 ? raw : 4096;
    }
    return { size: st.size, pageSize };
  } catch {
    return null;
  } finally {
    f?.close();
  }
}

function destination(d: ResolvedDatabase): string | null {
  const r = d.replica.settings;
  return r ? `${r.url.replace(/\/+$/, "")}/${d.settings.name}/` : null;
}

/** The assumptions printed under the estimate. */
export const ASSUMPTIONS: readonly string[] = [
  `a month is 30 days (${MONTH_SECONDS.toLocaleString("en-US")} s); list prices, free tiers not subtracted`,
  "a level with interval I uploads one file per interval that saw a write: files = month × min(writes/s, 1/I)",
  `each write changes ${PAGES_PER_WRITE} pages; file sizes are uncompressed (an upper bound)`,
  "L1 compaction reads the local queue; higher levels download each file of the level below once",
  "compaction lists once per tick per level; retention lists every level once per top-level interval",
  "retained: GFS snapshots, top-level files back to the oldest kept snapshot, lower levels until compacted",
  "egress counts every download (compaction, verify) as leaving the provider; DELETEs are free everywhere",
];

/** Builds the report for already-resolved inputs (exported for tests). */
export async function buildExplainReport(
  values: Record<string, unknown>,
  io: CliIO,
  dbPaths: string[],
  loaded?: CliConfig,
): Promise<ExplainReport> {
  const wpsText = typeof values["writes-per-second"] === "string" ? values["writes-per-second"] : "1";
  const wps = Number(wpsText);
  if (!/^\d+(\.\d+)?$/.test(wpsText.trim()) || !Number.isFinite(wps)) {
    throw new UsageError(`--writes-per-second: expected a number >= 0, got '${wpsText}'`);
  }
  let sizeFlag: number | undefined;
  if (typeof values["db-size"] === "string") {
    const b = parseByteSize(values["db-size"]);
    if (b === null) {
      throw new UsageError(`--db-size: expected a size like 500MB or 2GiB, got '${values["db-size"]}'`);
    }
    sizeFlag = b;
  }
  const input = loaded ?? await loadCliConfig(values, io);
  const { databases, warnings } = await resolveDatabases(input, dbPaths, "warn");
  const proc = resolveProcess(input);
  const dbs: ExplainDatabase[] = [];
  for (const d of databases) {
    const facts = await fileFacts(d.settings.path);
    const sizeBytes = sizeFlag ?? facts?.size ?? ASSUMED_DB_SIZE;
    const sizeSource = sizeFlag !== undefined ? "flag" : facts ? "file" : "assumed";
    const pageSize = facts?.pageSize ?? 4096;
    const s = d.settings;
    dbs.push({
      name: s.name,
      path: s.path,
      ...(d.glob ? { glob: d.glob } : {}),
      exists: d.exists,
      destination: destination(d),
      sizeBytes,
      sizeSource,
      pageSize,
      settings: [
        setting("path", s.path, s.path, d.sources),
        setting("name", s.name, s.name, d.sources),
        ...replicaSettings(d.replica.settings, d.sources),
        ...tuningSettings(s, d.sources),
        setting("queue_dir", s.queueDir, s.queueDir, d.sources),
      ],
      cost: estimateMonthlyCost({ ...s, writesPerSecond: wps, dbSizeBytes: sizeBytes, pageSize }),
    });
  }
  let defaults: ExplainSetting[] | null = null;
  let defaultsCost: CostEstimate | null = null;
  if (dbs.length === 0) {
    const replica = resolveReplicaSettings(input);
    const tuning = resolveTuning(input);
    defaults = [
      ...replicaSettings(replica.settings, replica.sources),
      ...tuningSettings(tuning.tuning, tuning.sources),
    ];
    defaultsCost = estimateMonthlyCost({
      ...tuning.tuning,
      writesPerSecond: wps,
      dbSizeBytes: sizeFlag ?? ASSUMED_DB_SIZE,
      pageSize: 4096,
    });
  }
  const costs = dbs.length ? dbs.map((d) => d.cost) : defaultsCost ? [defaultsCost] : [];
  return {
    config: input.location?.path ?? null,
    configFoundBy: input.location?.how ?? null,
    writesPerSecond: wps,
    databases: dbs,
    defaults,
    defaultsCost,
    process: [
      setting(
        "metrics.addr",
        proc.metricsAddr,
        proc.metricsAddr ?? "(off)",
        proc.sources,
      ),
      setting(
        "sync.shutdown_timeout",
        proc.shutdownTimeoutMs,
        formatDuration(proc.shutdownTimeoutMs),
        proc.sources,
      ),
    ],
    webhooks: proc.webhooks.map((w) => ({ url: maskUrl(w.url), events: w.events, secret: !!w.secret })),
    prices: PRICES,
    totals: PRICES.map((p, i) => ({
      name: p.name,
      total: costs.reduce((sum, c) => sum + c.providers[i].total, 0),
    })),
    assumptions: [...ASSUMPTIONS],
    warnings,
  };
}

const num = (n: number) => Math.round(n).toLocaleString("en-US");
const usd = (n: number) => `$${n.toFixed(2)}`;

function sourceText(s: ExplainSetting): string {
  const label = { default: "default", config: "config", env: "env", flag: "flag" }[s.source];
  return s.detail ? `${label} (${s.detail})` : label;
}

function settingsTable(rows: ExplainSetting[], indent: string): string {
  const kw = Math.max(...rows.map((r) => r.key.length));
  const vw = Math.min(40, Math.max(...rows.map((r) => r.display.length)));
  return rows.map((r) => `${indent}${r.key.padEnd(kw)}  ${r.display.padEnd(vw)}  ${sourceText(r)}`).join(
    "\n",
  );
}

function costText(c: CostEstimate, levels: number[], wps: number, indent: string): string {
  const lines: string[] = [];
  lines.push(`${indent}Requests per month at ${wps} write${wps === 1 ? "" : "s"}/s:`);
  const row = (label: string, n: number, note = "") =>
    lines.push(`${indent}  ${label.padEnd(34)} ${num(n).padStart(14)}${note ? "  " + note : ""}`);
  row("PUT  L0 uploads", c.puts.l0);
  c.puts.compaction.forEach((n, i) =>
    row(`PUT  L${i + 1} compaction (${formatDuration(levels[i] ?? 0)})`, n)
  );
  row("PUT  snapshots", c.puts.snapshot);
  row("GET  compaction inputs", c.gets.compaction);
  if (c.gets.validation > 0) row("GET  verify", c.gets.validation);
  row("LIST compaction + retention + verify", c.lists.total);
  row("DELETE retention", c.deletes, "(free)");
  lines.push(
    `${indent}Uploaded per month: ${bytesText(c.uploadBytes)}; downloaded (egress): ${
      bytesText(c.egressBytes)
    }`,
  );
  lines.push(
    `${indent}Stored after retention: ${
      bytesText(c.storage.totalBytes)
    } = ${c.storage.snapshots} snapshots ` +
      `(${bytesText(c.storage.snapshotBytes)}, oldest ${
        formatDuration(c.storage.oldestSnapshotAgeMs)
      } old) + ` +
      `${bytesText(c.storage.incrementalBytes)} incremental`,
  );
  lines.push(`${indent}Estimated monthly cost:`);
  for (const p of c.providers) {
    lines.push(
      `${indent}  ${p.name.padEnd(16)} ${usd(p.total).padStart(10)}   (storage ${usd(p.storage)}, PUT/LIST ${
        usd(p.classA)
      }, GET ${usd(p.classB)}, egress ${usd(p.egress)})`,
    );
  }
  return lines.join("\n");
}

/** Formats the report for humans. */
export function formatExplainText(r: ExplainReport): string {
  const out: string[] = [];
  const how = { flag: "--config", cwd: "working directory", env: "WALRUST_CONFIG" } as Record<string, string>;
  out.push(
    r.config
      ? `Configuration: ${r.config} (from ${how[r.configFoundBy ?? ""] ?? r.configFoundBy})`
      : "Configuration: no walrust.toml (flags and environment only)",
  );
  out.push("");
  for (const d of r.databases) {
    const size = `${bytesText(d.sizeBytes)}${d.sizeSource === "assumed" ? " assumed: file not found" : ""}`;
    out.push(
      `Database '${d.name}'  ${d.path}${d.glob ? ` (glob ${d.glob})` : ""}, ${size}  →  ${
        d.destination ?? "(no replica configured)"
      }`,
    );
    out.push(settingsTable(d.settings, "  "));
    const levels = d.settings.find((s) => s.key === "compaction.levels")?.value as number[];
    out.push(costText(d.cost, levels, r.writesPerSecond, "  "));
    out.push("");
  }
  if (r.defaults) {
    out.push("No databases configured. Settings a database would get:");
    out.push(settingsTable(r.defaults, "  "));
    if (r.defaultsCost) {
      const levels = r.defaults.find((s) => s.key === "compaction.levels")?.value as number[];
      out.push(`  For one ${bytesText(ASSUMED_DB_SIZE)} database (change with --db-size):`);
      out.push(costText(r.defaultsCost, levels, r.writesPerSecond, "  "));
    }
    out.push("");
  }
  out.push("Process:");
  out.push(settingsTable(r.process, "  "));
  if (r.webhooks.length === 0) out.push("  webhooks: none");
  for (const w of r.webhooks) {
    out.push(
      `  webhook ${w.url}  events: ${w.events.join(", ")}  signed: ${
        w.secret ? "yes (secret hidden)" : "no"
      }`,
    );
  }
  out.push("");
  if (r.databases.length > 1) {
    out.push(
      `Total for ${r.databases.length} databases: ${
        r.totals.map((t) => `${t.name} ${usd(t.total)}`).join(", ")
      }`,
    );
    out.push("");
  }
  out.push("Prices used (USD, list prices; see src/config/cost.ts for sources):");
  out.push(
    `  ${"provider".padEnd(16)} ${"storage/GB-mo".padStart(13)} ${"PUT+LIST/1k".padStart(12)} ${
      "GET/1k".padStart(8)
    } ${"DELETE".padStart(7)} ${"egress/GB".padStart(10)}`,
  );
  for (const p of r.prices) {
    out.push(
      `  ${p.name.padEnd(16)} ${p.storagePerGbMonth.toFixed(3).padStart(13)} ${
        p.classAPer1000.toFixed(4).padStart(12)
      } ${p.classBPer1000.toFixed(5).padStart(8)} ${
        (p.deletePer1000 === 0 ? "free" : p.deletePer1000.toFixed(4)).padStart(7)
      } ${(p.egressPerGb === 0 ? "free" : p.egressPerGb.toFixed(2)).padStart(10)}`,
    );
  }
  out.push("Assumptions:");
  for (const a of r.assumptions) out.push(`  - ${a}`);
  if (r.warnings.length) {
    out.push("Warnings:");
    for (const w of r.warnings) out.push(`  - ${w}`);
  }
  return out.join("\n") + "\n";
}

/** Printed when there is nothing to explain. */
export const NO_CONFIG_TEXT =
  `No configuration found: no --config, no ./walrust.toml, no WALRUST_CONFIG, and no replica flags.

To configure walrust, create walrust.toml in the working directory, for example:

  [replica]
  url = "s3://my-bucket/backups"      # or file:///var/backups/walrust

  [[databases]]
  path = "/data/app.db"

then run 'walrust explain' again (see docs/config.md for every key), or explain flags directly:

  walrust explain /data/app.db -b s3://my-bucket/backups --sync-interval 1s --writes-per-second 10
`;

const EXPLAIN_OPTIONS = {
  ...WATCH_OPTIONS,
  "writes-per-second": { type: "string" },
  "db-size": { type: "string" },
  json: { type: "boolean" },
} as const;

/** Whether anything (config, flags, replica env) was given to explain. */
function hasAnything(values: Record<string, unknown>, io: CliIO, positionals: string[]): boolean {
  if (positionals.length) return true;
  const flagKeys = Object.keys(WATCH_OPTIONS);
  if (flagKeys.some((k) => values[k] !== undefined)) return true;
  return !!io.env("WALRUST_REPLICA_URL");
}

/** The `explain` command. */
export const explainCommand: Command = {
  name: "explain",
  help:
    `Usage: walrust explain [<db>...] [--config walrust.toml] [--writes-per-second N] [--db-size SIZE] [--json]

Prints, per database (globs expanded), every effective setting and its source (default, config file
with line:col, environment variable, or flag), secrets masked, and an estimated monthly bill at AWS S3,
Tigris and Cloudflare R2 for the given write rate (default 1 write/s).

Options:
      --writes-per-second <n>  write transactions per second for the estimate (default 1)
      --db-size <size>         database size for the estimate (default: the file's size, 1 GiB if missing)
      --json                   print the report as JSON
  Every 'walrust watch' flag is accepted and shown as a 'flag' source.

${REPLICA_HELP}

${WATCH_HELP}`,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("explain", args, EXPLAIN_OPTIONS);
    const v = values as Record<string, unknown>;
    const input = await loadCliConfig(v, io);
    if (!input.config && !hasAnything(v, io, positionals)) {
      if (v.json) {
        io.stdout(
          JSON.stringify({ config: null, databases: [], message: "no configuration" }, null, 2) + "\n",
        );
      } else io.stdout(NO_CONFIG_TEXT);
      return 0;
    }
    const report = await buildExplainReport(v, io, positionals, input);
    io.stdout(v.json ? JSON.stringify(report, null, 2) + "\n" : formatExplainText(report));
    return 0;
  },
};
