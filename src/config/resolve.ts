/**
 * Merging defaults < `walrust.toml` < environment < command-line flags into resolved settings, recording
 * where every value came from (for `walrust explain`). Per-database entries of the config file sit between
 * the file's global sections and the environment.
 *
 * @module
 */

import { ConfigError, DatabaseError, UsageError } from "../errors.ts";
import { registerSecret } from "../observe/log.ts";
import { parseDuration } from "../util/duration.ts";
import { baseOf, dirOf } from "../util/fs.ts";
import { expandGlob, hasGlob } from "./glob.ts";
import { parseReplicaUrl, type ReplicaUrl } from "../storage/url.ts";
import {
  checkHttpUrl,
  checkListenAddr,
  checkName,
  checkReplicaUrl,
  type ConfigValue,
  type DatabaseEntryConfig,
  type FileConfig,
  parseByteSize,
  type ReplicaConfig,
  type TuningField,
} from "./load.ts";
import {
  type DatabaseSettings,
  DEFAULTS,
  type ReplicaSettings,
  type RetentionSettings,
  type RetrySettings,
  type SettingSource,
  type WebhookSettings,
} from "./types.ts";

/** Where one resolved value came from. */
export interface SourceInfo {
  /** default, config, env or flag. */
  source: SettingSource;
  /** `walrust.toml:12:3`, the environment variable's name, or the flag (`--sync-interval`). */
  detail?: string;
}

/** Sources by config-style key (`sync.interval`, `replica.url`, `retention.hourly`, …). */
export type Sources = Record<string, SourceInfo>;

/** What resolution works from. */
export interface ResolveInput {
  /** The validated config file, or null when there is none. */
  config: FileConfig | null;
  /** parseArgs values of the command (flags). */
  flags: Record<string, unknown>;
  /** Environment lookup. */
  env: (name: string) => string | undefined;
  /** Directory relative command-line paths are resolved against (for comparisons only). */
  cwd?: string;
}

/** Metadata of the numeric per-database settings: config key, flag, kind. */
export const TUNING_KEYS: readonly {
  field: TuningField;
  key: string;
  flag: string;
  kind: "posDuration" | "nonNegDuration" | "posInt" | "nonNegInt" | "bytes";
}[] = [
  { field: "syncIntervalMs", key: "sync.interval", flag: "sync-interval", kind: "posDuration" },
  {
    field: "snapshotIntervalMs",
    key: "sync.snapshot_interval",
    flag: "snapshot-interval",
    kind: "posDuration",
  },
  {
    field: "checkpointIntervalMs",
    key: "sync.checkpoint_interval",
    flag: "checkpoint-interval",
    kind: "posDuration",
  },
  {
    field: "minCheckpointPages",
    key: "sync.min_checkpoint_pages",
    flag: "min-checkpoint-pages",
    kind: "posInt",
  },
  { field: "truncatePages", key: "sync.truncate_pages", flag: "truncate-pages", kind: "nonNegInt" },
  { field: "queueMaxBytes", key: "sync.queue_max_bytes", flag: "queue-max-bytes", kind: "bytes" },
  {
    field: "validationIntervalMs",
    key: "sync.validation_interval",
    flag: "validation-interval",
    kind: "nonNegDuration",
  },
];

const RETENTION_FIELDS: readonly (keyof RetentionSettings)[] = ["hourly", "daily", "weekly", "monthly"];

/** `[retry]` keys by field. */
export const RETRY_KEYS: readonly { field: keyof RetrySettings; key: string }[] = [
  { field: "maxAttempts", key: "retry.max_attempts" },
  { field: "baseDelayMs", key: "retry.base_delay" },
  { field: "maxDelayMs", key: "retry.max_delay" },
  { field: "breakerThreshold", key: "retry.breaker_threshold" },
  { field: "breakerCooldownMs", key: "retry.breaker_cooldown" },
];

const DEFAULT_SOURCE: SourceInfo = { source: "default" };
const REGION_DEFAULT = "us-east-1";

function fromConfig<T>(v: ConfigValue<T> | undefined): [T, SourceInfo] | undefined {
  return v ? [v.value, { source: "config", detail: v.where }] : undefined;
}

/** The last defined layer wins (layers are in increasing precedence). */
function pick<T>(def: [T, SourceInfo] | undefined, ...layers: ([T, SourceInfo] | undefined)[]) {
  let out = def;
  for (const l of layers) if (l !== undefined) out = l;
  return out;
}

function flagString(flags: Record<string, unknown>, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

/** Parses one tuning flag, or undefined when it was not given. UsageError names the flag. */
export function parseTuningFlag(
  flags: Record<string, unknown>,
  meta: (typeof TUNING_KEYS)[number],
): number | undefined {
  const raw = flagString(flags, meta.flag);
  if (raw === undefined) return undefined;
  const bad = (what: string): never => {
    throw new UsageError(`--${meta.flag}: expected ${what}, got '${raw}'`);
  };
  switch (meta.kind) {
    case "posDuration":
    case "nonNegDuration": {
      const ms = /^\s*-/.test(raw) ? null : parseDuration(raw);
      if (ms === null) bad("a duration like 500ms, 1s, 5m or 1h30m");
      if (meta.kind === "posDuration" && ms === 0) bad("a duration greater than zero");
      return ms!;
    }
    case "posInt":
    case "nonNegInt": {
      const min = meta.kind === "posInt" ? 1 : 0;
      if (!/^\d+$/.test(raw.trim()) || Number(raw) < min) bad(`an integer >= ${min}`);
      return Number(raw);
    }
    case "bytes": {
      const b = parseByteSize(raw);
      if (b === null || b === 0) bad("a byte count greater than zero like 1073741824 or 1GiB");
      return b!;
    }
  }
}

function envLayer(env: ResolveInput["env"], ...names: string[]): [string, SourceInfo] | undefined {
  for (const n of names) {
    const v = env(n);
    if (v !== undefined && v !== "") return [v, { source: "env", detail: n }];
  }
  return undefined;
}

/** A replica destination with the source of each field; `settings` is null when no URL is given anywhere. */
export interface ResolvedReplica {
  /** The merged settings, or null without a URL. */
  settings: ReplicaSettings | null;
  /** Sources by key (`replica.url`, `replica.endpoint`, …). */
  sources: Sources;
}

/**
 * Resolves a replica: `[replica]` < the database's own `replica` < environment < flags. Credentials move as
 * a pair: when `AWS_ACCESS_KEY_ID` is set, the key, secret and token all come from the environment.
 * Every secret is registered with `registerSecret`.
 */
export function resolveReplicaSettings(input: ResolveInput, perDb?: ReplicaConfig): ResolvedReplica {
  const g = input.config?.replica ?? {};
  const d = perDb ?? {};
  const { flags, env } = input;
  const sources: Sources = {};
  const flagUrl = flagString(flags, "bucket");
  const envUrl = envLayer(env, "WALRUST_REPLICA_URL");
  if (flagUrl !== undefined) {
    const e = checkReplicaUrl(flagUrl);
    if (e) throw new UsageError(`-b/--bucket: ${e}`);
  }
  if (envUrl) {
    const e = checkReplicaUrl(envUrl[0]);
    if (e) throw new UsageError(`WALRUST_REPLICA_URL: ${e}`);
  }
  const url = pick<string>(
    undefined,
    fromConfig(g.url),
    fromConfig(d.url),
    envUrl,
    flagUrl !== undefined ? [flagUrl, { source: "flag", detail: "--bucket" }] : undefined,
  );
  const flagEndpoint = flagString(flags, "endpoint");
  const envEndpoint = envLayer(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
  if (flagEndpoint !== undefined) {
    const e = checkHttpUrl(flagEndpoint);
    if (e) throw new UsageError(`--endpoint: ${e}`);
  }
  if (envEndpoint) {
    const e = checkHttpUrl(envEndpoint[0]);
    if (e) throw new UsageError(`${envEndpoint[1].detail}: ${e}`);
  }
  const endpoint = pick<string>(
    undefined,
    fromConfig(g.endpoint),
    fromConfig(d.endpoint),
    envEndpoint,
    flagEndpoint !== undefined ? [flagEndpoint, { source: "flag", detail: "--endpoint" }] : undefined,
  );
  const flagRegion = flagString(flags, "region");
  const region = pick<string>(
    [REGION_DEFAULT, DEFAULT_SOURCE],
    fromConfig(g.region),
    fromConfig(d.region),
    envLayer(env, "AWS_REGION", "AWS_DEFAULT_REGION"),
    flagRegion !== undefined ? [flagRegion, { source: "flag", detail: "--region" }] : undefined,
  )!;
  const forcePathStyle = pick<boolean>(
    [endpoint !== undefined, DEFAULT_SOURCE],
    fromConfig(g.forcePathStyle),
    fromConfig(d.forcePathStyle),
    flags["force-path-style"] === true ? [true, { source: "flag", detail: "--force-path-style" }] : undefined,
  )!;
  // Credentials are a pair: never combine a key id from one place with a secret from another.
  let creds: { id?: [string, SourceInfo]; secret?: [string, SourceInfo]; token?: [string, SourceInfo] } = {};
  const envId = envLayer(env, "AWS_ACCESS_KEY_ID");
  if (envId) {
    creds = {
      id: envId,
      secret: envLayer(env, "AWS_SECRET_ACCESS_KEY"),
      token: envLayer(env, "AWS_SESSION_TOKEN"),
    };
  } else {
    const from = d.accessKeyId || d.secretAccessKey ? d : g;
    creds = {
      id: fromConfig(from.accessKeyId),
      secret: fromConfig(from.secretAccessKey),
      token: fromConfig(from.sessionToken) ?? envLayer(env, "AWS_SESSION_TOKEN"),
    };
  }
  registerSecret(creds.id?.[0]);
  registerSecret(creds.secret?.[0]);
  registerSecret(creds.token?.[0]);
  if (url) sources["replica.url"] = url[1];
  if (endpoint) sources["replica.endpoint"] = endpoint[1];
  sources["replica.region"] = region[1];
  sources["replica.force_path_style"] = forcePathStyle[1];
  if (creds.id) sources["replica.access_key_id"] = creds.id[1];
  if (creds.secret) sources["replica.secret_access_key"] = creds.secret[1];
  if (creds.token) sources["replica.session_token"] = creds.token[1];
  if (!url) return { settings: null, sources };
  const settings: ReplicaSettings = {
    url: url[0],
    region: region[0],
    forcePathStyle: forcePathStyle[0],
  };
  if (endpoint) settings.endpoint = endpoint[0];
  if (creds.id) settings.accessKeyId = creds.id[0];
  if (creds.secret) settings.secretAccessKey = creds.secret[0];
  if (creds.token) settings.sessionToken = creds.token[0];
  return { settings, sources };
}

/** The per-database tunables (everything in DatabaseSettings except path, name, replica, queueDir). */
export type Tuning = Pick<
  DatabaseSettings,
  TuningField | "compactionIntervalsMs" | "retention" | "retry"
>;

/**
 * Resolves the tunables: defaults < `[sync]`/`[compaction]`/`[retention]`/`[retry]` < the database entry's
 * overrides < flags.
 */
export function resolveTuning(
  input: ResolveInput,
  entry?: DatabaseEntryConfig,
): { tuning: Tuning; sources: Sources } {
  const g = input.config?.tuning;
  const d = entry?.tuning;
  const sources: Sources = {};
  const num: Partial<Record<TuningField, number>> = {};
  for (const meta of TUNING_KEYS) {
    const flag = parseTuningFlag(input.flags, meta);
    const r = pick<number>(
      [DEFAULTS[meta.field], DEFAULT_SOURCE],
      fromConfig(g?.sync[meta.field]),
      fromConfig(d?.sync[meta.field]),
      flag !== undefined ? [flag, { source: "flag", detail: `--${meta.flag}` }] : undefined,
    )!;
    num[meta.field] = r[0];
    sources[meta.key] = r[1];
  }
  const levels = pick<number[]>(
    [[...DEFAULTS.compactionIntervalsMs], DEFAULT_SOURCE],
    fromConfig(g?.compactionIntervalsMs),
    fromConfig(d?.compactionIntervalsMs),
  )!;
  sources["compaction.levels"] = levels[1];
  const retention = { ...DEFAULTS.retention } as RetentionSettings;
  for (const f of RETENTION_FIELDS) {
    const r = pick<number>(
      [DEFAULTS.retention[f], DEFAULT_SOURCE],
      fromConfig(g?.retention[f]),
      fromConfig(d?.retention[f]),
    )!;
    retention[f] = r[0];
    sources[`retention.${f}`] = r[1];
  }
  const retry = { ...DEFAULTS.retry } as RetrySettings;
  for (const { field, key } of RETRY_KEYS) {
    const r = pick<number>([DEFAULTS.retry[field], DEFAULT_SOURCE], fromConfig(input.config?.retry[field]))!;
    retry[field] = r[0];
    sources[key] = r[1];
  }
  if (retry.maxDelayMs < retry.baseDelayMs) {
    // Only reachable when one of the two comes from the defaults.
    throw new ConfigError(
      `${
        input.config?.file ?? "config"
      }: [retry] max_delay (${retry.maxDelayMs} ms) is shorter than base_delay (${retry.baseDelayMs} ms)`,
    );
  }
  return {
    tuning: {
      ...(num as Record<TuningField, number>),
      compactionIntervalsMs: levels[0],
      retention,
      retry,
    },
    sources,
  };
}

/** Settings of the process as a whole, with sources. */
export interface ResolvedProcess {
  /** `host:port` or null (metrics off). */
  metricsAddr: string | null;
  /** Webhook receivers. */
  webhooks: WebhookSettings[];
  /** Flush timeout on shutdown, ms. */
  shutdownTimeoutMs: number;
  /** Sources of `metrics.addr`, `sync.shutdown_timeout`, `webhooks`. */
  sources: Sources;
}

/** Resolves metrics address, webhooks and shutdown timeout. */
export function resolveProcess(input: ResolveInput): ResolvedProcess {
  const { flags, config } = input;
  const sources: Sources = {};
  const flagAddr = flagString(flags, "metrics-addr");
  const noMetrics = flags["no-metrics"] === true;
  if (flagAddr !== undefined && noMetrics) {
    throw new UsageError("--metrics-addr and --no-metrics contradict each other; give one");
  }
  if (flagAddr !== undefined) {
    const e = checkListenAddr(flagAddr);
    if (e) throw new UsageError(`--metrics-addr: ${e}`);
  }
  const cfgAddr: [string | null, SourceInfo] | undefined = config?.metrics.enabled?.value === false
    ? [null, { source: "config", detail: config.metrics.enabled.where }]
    : fromConfig(config?.metrics.addr);
  const addr = pick<string | null>(
    [DEFAULTS.metricsAddr, DEFAULT_SOURCE],
    cfgAddr,
    flagAddr !== undefined ? [flagAddr, { source: "flag", detail: "--metrics-addr" }] : undefined,
    noMetrics ? [null, { source: "flag", detail: "--no-metrics" }] : undefined,
  )!;
  sources["metrics.addr"] = addr[1];
  const flagShutdown = flagString(flags, "shutdown-timeout");
  let shutdownFlag: number | undefined;
  if (flagShutdown !== undefined) {
    const ms = /^\s*-/.test(flagShutdown) ? null : parseDuration(flagShutdown);
    if (ms === null) {
      throw new UsageError(`--shutdown-timeout: expected a duration like 10s, got '${flagShutdown}'`);
    }
    shutdownFlag = ms;
  }
  const shutdown = pick<number>(
    [DEFAULTS.shutdownTimeoutMs, DEFAULT_SOURCE],
    fromConfig(config?.shutdownTimeoutMs),
    shutdownFlag !== undefined ? [shutdownFlag, { source: "flag", detail: "--shutdown-timeout" }] : undefined,
  )!;
  sources["sync.shutdown_timeout"] = shutdown[1];
  const webhooks = (config?.webhooks ?? []).map((w) => w.value);
  sources["webhooks"] = config && config.webhooks.length > 0
    ? { source: "config", detail: config.webhooks[0].where }
    : DEFAULT_SOURCE;
  return { metricsAddr: addr[0], webhooks, shutdownTimeoutMs: shutdown[0], sources };
}

/** One resolved database with the sources of its settings. */
export interface ResolvedDatabase {
  /** The settings `watch` and the other commands use. */
  settings: DatabaseSettings;
  /** Sources by key, including `path`, `name` and the replica's keys. */
  sources: Sources;
  /** The glob pattern the database matched, if it came from one. */
  glob?: string;
  /** Whether the database file exists (always true unless resolved leniently). */
  exists: boolean;
  /** Index of the `[[databases]]` entry it came from. */
  entry?: number;
  /** The replica's sources and settings (null settings: no replica configured for it). */
  replica: ResolvedReplica;
}

/** How to treat a non-glob database path that does not exist. */
export type MissingPolicy = "error" | "warn" | "skip";

/** The file name without its last extension: `app.db` → `app`, `a.b.sqlite` → `a.b`, `data` → `data`. */
export function stemOf(path: string): string {
  const b = baseOf(path);
  const i = b.lastIndexOf(".");
  return i > 0 ? b.slice(0, i) : b;
}

function joinPath(dir: string, p: string): string {
  if (p.startsWith("/") || dir === "." || dir === "") return p;
  return `${dir}/${p}`;
}

function absolute(p: string, cwd: string): string {
  const raw = p.startsWith("/") ? p : `${cwd}/${p}`;
  const out: string[] = [];
  for (const seg of raw.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return "/" + out.join("/");
}

async function identity(p: string, cwd: string): Promise<string> {
  try {
    return await Deno.realPath(p);
  } catch {
    return absolute(p, cwd);
  }
}

async function isFileAt(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/** A key identifying a replica destination, for collision checks (`file:///x`, `/x/` and `/x` are one). */
export function replicaIdentity(r: ReplicaSettings, cwd: string): string {
  let u: ReplicaUrl;
  try {
    u = parseReplicaUrl(r.url);
  } catch {
    return `?|${r.url}`;
  }
  if (u.kind === "file") return `file|${absolute(u.path ?? "", cwd)}`;
  return `s3|${r.endpoint ?? ""}|${u.bucket}|${u.prefix}`;
}

function queueDirFor(path: string): string {
  return `${dirOf(path)}/.${baseOf(path)}-walrust`;
}

interface Candidate {
  path: string;
  name: string;
  nameSource: SourceInfo;
  pathSource: SourceInfo;
  entry?: DatabaseEntryConfig;
  glob?: string;
  exists: boolean;
}

/** Expands the config's `[[databases]]` into candidates (globs expanded, names derived). */
async function configCandidates(
  config: FileConfig,
  missing: MissingPolicy,
  warnings: string[],
): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for (const entry of config.databases) {
    const p = joinPath(config.dir, entry.path.value);
    const pathSource: SourceInfo = { source: "config", detail: entry.path.where };
    if (hasGlob(entry.path.value)) {
      const matches = await expandGlob(p);
      if (matches.length === 0) {
        warnings.push(`${entry.path.where}: glob '${entry.path.value}' matches no database file; skipped`);
      }
      for (const m of matches) {
        const stem = stemOf(m);
        out.push({
          path: m,
          name: entry.name ? `${entry.name.value}/${stem}` : stem,
          nameSource: entry.name ? { source: "config", detail: entry.name.where } : DEFAULT_SOURCE,
          pathSource,
          entry,
          glob: entry.path.value,
          exists: true,
        });
      }
      continue;
    }
    const exists = await isFileAt(p);
    if (!exists) {
      const msg = `database ${p} does not exist (${entry.path.where}); fix the path or create the database`;
      if (missing === "error") throw new DatabaseError(msg);
      if (missing === "warn") warnings.push(msg);
      if (missing === "skip") continue;
    }
    out.push({
      path: p,
      name: entry.name?.value ?? stemOf(p),
      nameSource: entry.name ? { source: "config", detail: entry.name.where } : DEFAULT_SOURCE,
      pathSource,
      entry,
      exists,
    });
  }
  return out;
}

/** Builds a resolved database from a candidate. */
function build(input: ResolveInput, c: Candidate): ResolvedDatabase {
  const nameErr = checkName(c.name);
  if (nameErr) {
    throw new ConfigError(
      `database ${c.path}: ${nameErr}; set \`name\` for it in a [[databases]] entry`,
    );
  }
  const replica = resolveReplicaSettings(input, c.entry?.replica);
  const { tuning, sources } = resolveTuning(input, c.entry);
  const queueDir = c.entry?.tuning.queueDir
    ? joinPath(input.config!.dir, c.entry.tuning.queueDir.value)
    : queueDirFor(c.path);
  sources["path"] = c.pathSource;
  sources["name"] = c.nameSource;
  sources["queue_dir"] = c.entry?.tuning.queueDir
    ? { source: "config", detail: c.entry.tuning.queueDir.where }
    : DEFAULT_SOURCE;
  Object.assign(sources, replica.sources);
  return {
    settings: {
      path: c.path,
      name: c.name,
      // A database without a replica is reported by the caller that needs one (watch, snapshot…).
      replica: replica.settings ?? { url: "" },
      queueDir,
      ...tuning,
    },
    sources,
    glob: c.glob,
    exists: c.exists,
    entry: c.entry?.index,
    replica,
  };
}

/**
 * Rejects two databases on one replica prefix: the same name on the same replica, a name that is a
 * path-prefix of another (`a` and `a/b`), or the same database file listed twice.
 */
export async function checkCollisions(dbs: ResolvedDatabase[], cwd: string): Promise<void> {
  const byFile = new Map<string, ResolvedDatabase>();
  for (const d of dbs) {
    const id = await identity(d.settings.path, cwd);
    const prev = byFile.get(id);
    if (prev) {
      throw new ConfigError(
        `database ${d.settings.path} is listed twice (as '${prev.settings.name}' and '${d.settings.name}'); ` +
          `remove one entry`,
      );
    }
    byFile.set(id, d);
  }
  for (let i = 0; i < dbs.length; i++) {
    for (let j = i + 1; j < dbs.length; j++) {
      const a = dbs[i];
      const b = dbs[j];
      if (!a.replica.settings || !b.replica.settings) continue;
      if (replicaIdentity(a.replica.settings, cwd) !== replicaIdentity(b.replica.settings, cwd)) continue;
      const an = a.settings.name;
      const bn = b.settings.name;
      const dest = `${a.replica.settings.url.replace(/\/+$/, "")}/${an}`;
      if (an === bn) {
        throw new ConfigError(
          `databases ${a.settings.path} and ${b.settings.path} would both replicate to ${dest}; ` +
            `give one of them a different \`name\` in walrust.toml`,
        );
      }
      if (bn.startsWith(an + "/") || an.startsWith(bn + "/")) {
        const [outer, inner] = bn.startsWith(an + "/") ? [a, b] : [b, a];
        throw new ConfigError(
          `database ${inner.settings.path} (name '${inner.settings.name}') would replicate inside ` +
            `${outer.settings.path}'s prefix (name '${outer.settings.name}'); rename one of them`,
        );
      }
    }
  }
}

/** Databases and the warnings met while resolving them. */
export interface ResolvedDatabases {
  /** The databases, in config/command-line order. */
  databases: ResolvedDatabase[];
  /** Warnings (globs matching nothing, missing files when lenient). */
  warnings: string[];
}

/**
 * Resolves the databases to work on: the command-line paths when given (each picks up the overrides and
 * name of a `[[databases]]` entry for the same file), else every `[[databases]]` entry (globs expanded).
 * Names must be unique per replica.
 */
export async function resolveDatabases(
  input: ResolveInput,
  dbPaths: string[],
  missing: MissingPolicy,
): Promise<ResolvedDatabases> {
  const warnings: string[] = [];
  const cwd = input.cwd ?? Deno.cwd();
  let candidates: Candidate[];
  if (dbPaths.length > 0) {
    const fromConfig = input.config ? await configCandidates(input.config, "skip", []) : [];
    const ids = new Map<string, Candidate>();
    for (const c of fromConfig) ids.set(await identity(c.path, cwd), c);
    candidates = [];
    for (const p of dbPaths) {
      const exists = await isFileAt(p);
      if (!exists) {
        const msg = `database ${p} does not exist; check the path`;
        if (missing === "error") throw new DatabaseError(msg);
        if (missing === "warn") warnings.push(msg);
        if (missing === "skip") continue;
      }
      const match = ids.get(await identity(p, cwd));
      candidates.push({
        path: p,
        name: match?.name ?? stemOf(p),
        nameSource: match?.nameSource ?? DEFAULT_SOURCE,
        pathSource: { source: "flag", detail: "command line" },
        entry: match?.entry,
        glob: match?.glob,
        exists,
      });
    }
  } else {
    candidates = input.config ? await configCandidates(input.config, missing, warnings) : [];
  }
  const databases = candidates.map((c) => build(input, c));
  await checkCollisions(databases, cwd);
  return { databases, warnings };
}

/** Resolves the settings of a database that is not in the config (defaults + global sections + flags). */
export function resolveStandalone(input: ResolveInput, path: string, name: string): ResolvedDatabase {
  return build(input, {
    path,
    name,
    nameSource: DEFAULT_SOURCE,
    pathSource: { source: "flag", detail: "command line" },
    exists: true,
  });
}
