/**
 * Reading `walrust.toml`: finding the file, parsing it with smol-toml, expanding `${VAR}` references,
 * and validating every key and value. Every problem is a {@link ConfigError} that starts with
 * `file:line:col:`; smol-toml reports positions only for syntax errors, so key positions come from
 * {@link scanKeyPositions}, a small scanner over the (already valid) text.
 *
 * @module
 */

import { WEBHOOK_EVENTS } from "../observe/webhook_events.ts";
import { parse, TomlError } from "smol-toml";
import { ConfigError, localIoError } from "../errors.ts";
import { registerSecret } from "../observe/log.ts";
import { parseDuration } from "../util/duration.ts";
import { dirOf } from "../util/fs.ts";
import { parseReplicaUrl } from "../storage/url.ts";
import type { RetentionSettings, RetrySettings, WebhookSettings } from "./types.ts";

/** The file name looked for in the working directory. */
export const CONFIG_FILE_NAME = "walrust.toml";

/** A 1-based position in the config text. */
export interface Pos {
  /** Line, from 1. */
  line: number;
  /** Column, from 1. */
  col: number;
}

/** A value read from the config file and where it was written (`walrust.toml:12:3`). */
export interface ConfigValue<T> {
  /** The validated value (durations in ms). */
  value: T;
  /** `file:line:col` of the key. */
  where: string;
}

/** The replica keys of `[replica]`/`[s3]` or of a database's `replica` table. */
export interface ReplicaConfig {
  /** `url` (alias `bucket`). */
  url?: ConfigValue<string>;
  /** `endpoint`. */
  endpoint?: ConfigValue<string>;
  /** `region`. */
  region?: ConfigValue<string>;
  /** `force_path_style`. */
  forcePathStyle?: ConfigValue<boolean>;
  /** `access_key_id`. */
  accessKeyId?: ConfigValue<string>;
  /** `secret_access_key`. */
  secretAccessKey?: ConfigValue<string>;
  /** `session_token`. */
  sessionToken?: ConfigValue<string>;
}

/** Numeric per-database settings that `[sync]` sets globally and `[[databases]]` may override. */
export type TuningField =
  | "syncIntervalMs"
  | "snapshotIntervalMs"
  | "checkpointIntervalMs"
  | "minCheckpointPages"
  | "truncatePages"
  | "queueMaxBytes"
  | "validationIntervalMs";

/** The per-database tunables as written in the file (global or one database's overrides). */
export interface TuningConfig {
  /** `[sync]` keys (or the same keys directly in a `[[databases]]` entry). */
  sync: Partial<Record<TuningField, ConfigValue<number>>>;
  /** `[compaction] levels`, in ms. */
  compactionIntervalsMs?: ConfigValue<number[]>;
  /** `[retention]` counts. */
  retention: Partial<Record<keyof RetentionSettings, ConfigValue<number>>>;
  /** `queue_dir` (per database only). */
  queueDir?: ConfigValue<string>;
}

/** One `[[databases]]` entry. */
export interface DatabaseEntryConfig {
  /** `path`: a file or a glob (`*`, `?`, `[...]`), relative to the config file's directory. */
  path: ConfigValue<string>;
  /** `name`: the replica name (for a glob: the prefix of every match's name, `<name>/<stem>`). */
  name?: ConfigValue<string>;
  /** `replica`: a URL string (stored as `{ url }`) or a table; merged over the global `[replica]`. */
  replica?: ReplicaConfig;
  /** Per-database overrides. */
  tuning: TuningConfig;
  /** `file:line:col` of the entry's `[[databases]]` header (or of its inline table). */
  where: string;
  /** 0-based index among the entries. */
  index: number;
}

/** A validated `walrust.toml`. */
export interface FileConfig {
  /** The path as given (used in messages). */
  file: string;
  /** Directory relative database paths are resolved against. */
  dir: string;
  /** `[replica]` (or `[s3]`). */
  replica: ReplicaConfig;
  /** Global `[sync]`, `[compaction]` and `[retention]`. */
  tuning: TuningConfig;
  /** `[sync] shutdown_timeout` (process-wide). */
  shutdownTimeoutMs?: ConfigValue<number>;
  /** `[retry]`. */
  retry: Partial<Record<keyof RetrySettings, ConfigValue<number>>>;
  /** `[metrics]`. */
  metrics: { addr?: ConfigValue<string>; enabled?: ConfigValue<boolean> };
  /** `[[webhooks]]`. */
  webhooks: ConfigValue<WebhookSettings>[];
  /** `[[databases]]`. */
  databases: DatabaseEntryConfig[];
}

/** Event names a webhook may subscribe to: the observe module's list, the one source of truth. */
export { WEBHOOK_EVENTS };

/** Where the config file was found. */
export interface ConfigLocation {
  /** The path to read. */
  path: string;
  /** How it was chosen: `--config`, `./walrust.toml`, or the `WALRUST_CONFIG` environment variable. */
  how: "flag" | "cwd" | "env";
}

/**
 * Chooses the config file: `--config <file>` (must exist), else `./walrust.toml` when it exists, else
 * `WALRUST_CONFIG` (must exist). Null when there is none.
 */
export async function findConfigPath(
  explicit: string | undefined,
  env: (name: string) => string | undefined,
  cwd: string = Deno.cwd(),
): Promise<ConfigLocation | null> {
  if (explicit !== undefined) {
    if (!(await isFile(explicit))) {
      throw new ConfigError(`config file ${explicit} (from --config) does not exist; check the path`);
    }
    return { path: explicit, how: "flag" };
  }
  const local = `${cwd}/${CONFIG_FILE_NAME}`;
  if (await isFile(local)) return { path: cwd === Deno.cwd() ? CONFIG_FILE_NAME : local, how: "cwd" };
  const fromEnv = env("WALRUST_CONFIG");
  if (fromEnv) {
    if (!(await isFile(fromEnv))) {
      throw new ConfigError(`config file ${fromEnv} (from WALRUST_CONFIG) does not exist; check the path`);
    }
    return { path: fromEnv, how: "env" };
  }
  return null;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw localIoError(err, path, "read config");
  }
}

/** Reads and validates a config file; `env` resolves `${VAR}` references. */
export async function loadConfigFile(
  path: string,
  env: (name: string) => string | undefined,
): Promise<FileConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ConfigError(`config file ${path} does not exist; check the path`);
    }
    throw localIoError(err, path, "read config");
  }
  return parseConfigText(text, path, env);
}

// ---------------------------------------------------------------------------------------------------------
// Key positions

/**
 * Maps every key path in `text` to the position of the key: `sync.interval`, `databases[1].path`,
 * `webhooks[0].events[2]` (array elements too), and table headers (`databases[0]` → the `[[`).
 * The text must already be valid TOML; the scanner is lenient and never throws.
 */
export function scanKeyPositions(text: string): Map<string, Pos> {
  const out = new Map<string, Pos>();
  const lineStarts = [0];
  for (let k = 0; k < text.length; k++) if (text[k] === "\n") lineStarts.push(k + 1);
  const posOf = (idx: number): Pos => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= idx) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: idx - lineStarts[lo] + 1 };
  };
  const n = text.length;
  let i = 0;
  const record = (path: string, idx: number) => {
    if (!out.has(path)) out.set(path, posOf(idx));
  };
  const join = (base: string, seg: string) => (base ? `${base}.${seg}` : seg);
  const ws = () => {
    while (i < n && (text[i] === " " || text[i] === "\t")) i++;
  };
  const wsnl = () => {
    for (;;) {
      ws();
      if (text[i] === "#") { while (i < n && text[i] !== "\n") i++; }
      if (text[i] === "\n" || text[i] === "\r") {
        i++;
        continue;
      }
      return;
    }
  };
  const keySeg = (): string => {
    const q = text[i];
    if (q === '"' || q === "'") {
      i++;
      let s = "";
      while (i < n && text[i] !== q && text[i] !== "\n") {
        if (q === '"' && text[i] === "\\") i++;
        s += text[i++];
      }
      i++;
      return s;
    }
    const start = i;
    while (i < n && /[A-Za-z0-9_-]/.test(text[i])) i++;
    return text.slice(start, i);
  };
  const key = (): { segs: string[]; starts: number[] } => {
    const segs: string[] = [];
    const starts: number[] = [];
    for (;;) {
      ws();
      starts.push(i);
      segs.push(keySeg());
      ws();
      if (text[i] !== ".") return { segs, starts };
      i++;
    }
  };
  const value = (path: string): void => {
    if (text.startsWith('"""', i) || text.startsWith("'''", i)) {
      const q = text.slice(i, i + 3);
      i += 3;
      while (i < n && !text.startsWith(q, i)) i += q[0] === '"' && text[i] === "\\" ? 2 : 1;
      i += 3;
      while (text[i] === q[0]) i++;
      return;
    }
    const c = text[i];
    if (c === '"' || c === "'") {
      i++;
      while (i < n && text[i] !== c && text[i] !== "\n") i += c === '"' && text[i] === "\\" ? 2 : 1;
      i++;
      return;
    }
    if (c === "[") {
      i++;
      for (let k = 0;; k++) {
        wsnl();
        if (i >= n) return;
        if (text[i] === "]") {
          i++;
          return;
        }
        const before = i;
        record(`${path}[${k}]`, i);
        value(`${path}[${k}]`);
        wsnl();
        if (text[i] === ",") i++;
        if (i === before) i++;
      }
    }
    if (c === "{") {
      i++;
      for (;;) {
        wsnl();
        if (i >= n) return;
        if (text[i] === "}") {
          i++;
          return;
        }
        const before = i;
        keyValue(path);
        wsnl();
        if (text[i] === ",") i++;
        if (i === before) i++;
      }
    }
    while (i < n && !",]}\n\r#".includes(text[i])) i++;
  };
  const keyValue = (base: string): void => {
    const { segs, starts } = key();
    let p = base;
    segs.forEach((s, j) => {
      p = join(p, s);
      record(p, starts[j]);
    });
    ws();
    if (text[i] === "=") i++;
    ws();
    value(p);
  };
  const aot = new Map<string, number>();
  let table = "";
  for (;;) {
    wsnl();
    if (i >= n) break;
    if (text[i] === "[") {
      const start = i;
      const isAot = text[i + 1] === "[";
      i += isAot ? 2 : 1;
      const { segs, starts } = key();
      let p = "";
      segs.forEach((s, j) => {
        p = join(p, s);
        const last = j === segs.length - 1;
        if (last && isAot) {
          const count = aot.get(p) ?? 0;
          aot.set(p, count + 1);
          record(p, start);
          p += `[${count}]`;
        } else if (aot.has(p)) {
          p += `[${aot.get(p)! - 1}]`;
        }
        record(p, last ? start : starts[j]);
      });
      ws();
      i += isAot ? 2 : 1;
      table = p;
    } else {
      const before = i;
      keyValue(table);
      if (i === before) i++;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Validation

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Human name of a TOML value's type, for "expected X, got Y". */
function typeName(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Date) return "a date";
  if (isTable(v)) return "a table";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  if (typeof v === "number") return Number.isInteger(v) ? `the integer ${v}` : `the number ${v}`;
  if (typeof v === "boolean") return `${v}`;
  return typeof v;
}

/** Edit distance, for "did you mean" hints on unknown keys. */
function distance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

function suggest(key: string, known: string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dd = distance(key, k);
    if (dd < bestD) {
      bestD = dd;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 4))
    ? `; did you mean '${best}'?`
    : "";
}

/** Parses a byte size: an integer, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB. */
export function parseByteSize(v: string | number): number | null {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 ? v : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v);
  if (!m) return null;
  const unit = (m[2] ?? "B").toUpperCase();
  const mult: Record<string, number> = {
    B: 1,
    KB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    KIB: 1024,
    MIB: 1024 ** 2,
    GIB: 1024 ** 3,
    TIB: 1024 ** 4,
  };
  return Math.round(Number(m[1]) * mult[unit]);
}

/** Validates a `host:port` listen address; returns an error text or null. */
export function checkListenAddr(addr: string): string | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) return `expected host:port like 127.0.0.1:16767, got '${addr}'`;
  return null;
}

/** Checks a replica URL with the storage module's parser; returns its error text or null. */
export function checkReplicaUrl(url: string): string | null {
  try {
    parseReplicaUrl(url);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Checks an http(s) URL; returns an error text or null. */
export function checkHttpUrl(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `expected an http:// or https:// URL, got '${url}'`;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    return `expected an http:// or https:// URL, got '${url}'`;
  }
  return null;
}

type Kind =
  | "posDuration"
  | "nonNegDuration"
  | "posInt"
  | "nonNegInt"
  | "bytes"
  | "string"
  | "bool"
  | "replicaUrl"
  | "httpUrl"
  | "addr"
  | "durationList"
  | "eventList"
  | "name";

interface KeySpec {
  kind: Kind;
  aliases?: string[];
}

const SYNC_KEYS: Record<string, KeySpec & { field: TuningField | "shutdownTimeoutMs" }> = {
  interval: { kind: "posDuration", aliases: ["wal_sync_interval"], field: "syncIntervalMs" },
  snapshot_interval: { kind: "posDuration", field: "snapshotIntervalMs" },
  checkpoint_interval: { kind: "posDuration", field: "checkpointIntervalMs" },
  min_checkpoint_pages: {
    kind: "posInt",
    aliases: ["min_checkpoint_page_count"],
    field: "minCheckpointPages",
  },
  truncate_pages: { kind: "nonNegInt", aliases: ["wal_truncate_threshold_pages"], field: "truncatePages" },
  queue_max_bytes: { kind: "bytes", field: "queueMaxBytes" },
  validation_interval: { kind: "nonNegDuration", field: "validationIntervalMs" },
  shutdown_timeout: { kind: "nonNegDuration", field: "shutdownTimeoutMs" },
};

const REPLICA_KEYS: Record<string, KeySpec & { field: keyof ReplicaConfig }> = {
  url: { kind: "replicaUrl", aliases: ["bucket"], field: "url" },
  endpoint: { kind: "httpUrl", field: "endpoint" },
  region: { kind: "string", field: "region" },
  force_path_style: { kind: "bool", field: "forcePathStyle" },
  access_key_id: { kind: "string", field: "accessKeyId" },
  secret_access_key: { kind: "string", field: "secretAccessKey" },
  session_token: { kind: "string", field: "sessionToken" },
};

const RETENTION_KEYS: Record<string, KeySpec & { field: keyof RetentionSettings }> = {
  hourly: { kind: "nonNegInt", field: "hourly" },
  daily: { kind: "nonNegInt", field: "daily" },
  weekly: { kind: "nonNegInt", field: "weekly" },
  monthly: { kind: "nonNegInt", field: "monthly" },
};

const RETRY_KEYS: Record<string, KeySpec & { field: keyof RetrySettings }> = {
  max_attempts: { kind: "posInt", field: "maxAttempts" },
  base_delay: { kind: "posDuration", field: "baseDelayMs" },
  max_delay: { kind: "posDuration", field: "maxDelayMs" },
  breaker_threshold: { kind: "nonNegInt", field: "breakerThreshold" },
  breaker_cooldown: { kind: "posDuration", field: "breakerCooldownMs" },
};

const COMPACTION_KEYS: Record<string, KeySpec> = { levels: { kind: "durationList" } };
const METRICS_KEYS: Record<string, KeySpec> = { addr: { kind: "addr" }, enabled: { kind: "bool" } };
const WEBHOOK_KEYS: Record<string, KeySpec> = {
  url: { kind: "httpUrl" },
  events: { kind: "eventList" },
  secret: { kind: "string" },
};
const TOP_KEYS = [
  "replica",
  "s3",
  "sync",
  "compaction",
  "retention",
  "retry",
  "metrics",
  "webhooks",
  "databases",
];
const DATABASE_OWN_KEYS: Record<string, KeySpec> = {
  path: { kind: "string" },
  name: { kind: "name" },
  replica: { kind: "string" }, // string or table; handled specially
  retention: { kind: "string" }, // table; handled specially
  compaction: { kind: "string" }, // table; handled specially
  queue_dir: { kind: "string" },
};
const DATABASE_SYNC_KEYS = Object.fromEntries(
  Object.entries(SYNC_KEYS).filter(([k]) => k !== "shutdown_timeout"),
);

/** Validates a database or glob-prefix name: path segments of `[A-Za-z0-9._-]`, no `.`/`..` segments. */
export function checkName(name: string): string | null {
  if (name === "") return "the name is empty";
  for (const seg of name.split("/")) {
    if (seg === "" || seg === "." || seg === ".." || !/^[A-Za-z0-9._-]+$/.test(seg)) {
      return `'${name}' is not a valid name: use letters, digits, '.', '_', '-' and '/' between parts`;
    }
  }
  return null;
}

class Validator {
  readonly positions: Map<string, Pos>;
  constructor(readonly file: string, text: string, readonly env: (name: string) => string | undefined) {
    this.positions = scanKeyPositions(text);
  }

  /** `file:line:col` of a key path, falling back to its nearest recorded parent. */
  where(path: string): string {
    let p = path;
    for (;;) {
      const pos = this.positions.get(p);
      if (pos) return `${this.file}:${pos.line}:${pos.col}`;
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      if (cut <= 0) return `${this.file}:1:1`;
      p = p.slice(0, cut);
    }
  }

  fail(path: string, msg: string): never {
    throw new ConfigError(`${this.where(path)}: ${msg}`);
  }

  /** Replaces `${VAR}` with the environment variable's value; a missing variable is an error. */
  expand(s: string, path: string, label: string): string {
    return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const v = this.env(name);
      if (v === undefined) {
        this.fail(path, `${label}: environment variable ${name} is not set (referenced as \${${name}})`);
      }
      return v;
    });
  }

  /** Checks for unknown keys and alias clashes; returns canonical key → raw value. */
  keys(table: Table, path: string, label: string, specs: Record<string, KeySpec>, extra: string[] = []) {
    const known = new Map<string, string>();
    for (const [k, s] of Object.entries(specs)) {
      known.set(k, k);
      for (const a of s.aliases ?? []) known.set(a, k);
    }
    for (const k of extra) known.set(k, k);
    const out = new Map<string, { raw: unknown; key: string; path: string }>();
    for (const [k, raw] of Object.entries(table)) {
      const kp = path ? `${path}.${k}` : k;
      const canon = known.get(k);
      if (canon === undefined) {
        this.fail(kp, `unknown key '${k}' in ${label}${suggest(k, [...known.keys()])}`);
      }
      const prev = out.get(canon);
      if (prev) {
        this.fail(kp, `both '${prev.key}' and '${k}' are set in ${label}; keep one (they are aliases)`);
      }
      out.set(canon, { raw, key: k, path: kp });
    }
    return out;
  }

  convert(raw: unknown, kind: Kind, path: string, label: string): unknown {
    const bad = (expected: string): never =>
      this.fail(path, `${label}: expected ${expected}, got ${typeName(raw)}`);
    const durationText = 'a duration like "500ms", "1s", "5m", "1h30m" or a number of seconds';
    const str = (): string => {
      if (typeof raw !== "string") bad("a string");
      return this.expand(raw as string, path, label);
    };
    switch (kind) {
      case "posDuration":
      case "nonNegDuration": {
        const v = typeof raw === "string" ? this.expand(raw, path, label) : raw;
        if (typeof v !== "string" && typeof v !== "number") bad(durationText);
        if (typeof v === "number" && v < 0) this.fail(path, `${label}: must not be negative, got ${v}`);
        if (typeof v === "string" && /^\s*-/.test(v)) {
          this.fail(path, `${label}: must not be negative, got '${v}'`);
        }
        const ms = parseDuration(v as string | number);
        if (ms === null) bad(durationText);
        if (kind === "posDuration" && ms === 0) this.fail(path, `${label}: must be greater than zero`);
        return ms;
      }
      case "posInt":
      case "nonNegInt": {
        if (typeof raw !== "number" || !Number.isInteger(raw)) bad("an integer");
        const min = kind === "posInt" ? 1 : 0;
        if ((raw as number) < min) {
          this.fail(path, `${label}: must be ${min === 1 ? "at least 1" : "zero or more"}, got ${raw}`);
        }
        return raw;
      }
      case "bytes": {
        const v = typeof raw === "string" ? this.expand(raw, path, label) : raw;
        if (typeof v !== "string" && typeof v !== "number") bad('a byte count like 1073741824 or "1GiB"');
        const b = parseByteSize(v as string | number);
        if (b === null) bad('a byte count like 1073741824 or "1GiB"');
        if (b === 0) this.fail(path, `${label}: must be greater than zero`);
        return b;
      }
      case "bool":
        if (typeof raw !== "boolean") bad("true or false");
        return raw;
      case "string": {
        const s = str();
        if (s === "") this.fail(path, `${label}: must not be empty`);
        return s;
      }
      case "name": {
        const s = str();
        const e = checkName(s);
        if (e) this.fail(path, `${label}: ${e}`);
        return s;
      }
      case "replicaUrl": {
        const s = str();
        const e = checkReplicaUrl(s);
        if (e) this.fail(path, `${label}: ${e}`);
        return s;
      }
      case "httpUrl": {
        const s = str();
        const e = checkHttpUrl(s);
        if (e) this.fail(path, `${label}: ${e}`);
        return s;
      }
      case "addr": {
        const s = str();
        const e = checkListenAddr(s);
        if (e) this.fail(path, `${label}: ${e}`);
        return s;
      }
      case "durationList": {
        if (!Array.isArray(raw)) bad('an array of durations like ["30s", "5m", "1h"]');
        const list = (raw as unknown[]).map((el, k) =>
          this.convert(el, "posDuration", `${path}[${k}]`, `${label}[${k}]`) as number
        );
        if (list.length > 8) this.fail(path, `${label}: at most 8 compaction levels, got ${list.length}`);
        for (let k = 1; k < list.length; k++) {
          if (list[k] <= list[k - 1]) {
            this.fail(
              `${path}[${k}]`,
              `${label}: each level's interval must be longer than the previous one`,
            );
          }
        }
        return list;
      }
      case "eventList": {
        if (!Array.isArray(raw)) bad("an array of event names");
        if ((raw as unknown[]).length === 0) {
          this.fail(path, `${label}: the list is empty; leave 'events' out to receive every failure event`);
        }
        return (raw as unknown[]).map((el, k) => {
          const s = this.convert(el, "string", `${path}[${k}]`, `${label}[${k}]`) as string;
          if (!(WEBHOOK_EVENTS as readonly string[]).includes(s)) {
            this.fail(
              `${path}[${k}]`,
              `${label}: unknown event '${s}'; known events: ${WEBHOOK_EVENTS.join(", ")}`,
            );
          }
          return s;
        });
      }
    }
  }

  table(raw: unknown, path: string, label: string): Table {
    if (!isTable(raw)) this.fail(path, `${label} must be a table, got ${typeName(raw)}`);
    return raw as Table;
  }

  value<T>(raw: unknown, kind: Kind, path: string, label: string): ConfigValue<T> {
    return { value: this.convert(raw, kind, path, label) as T, where: this.where(path) };
  }

  replica(raw: unknown, path: string, label: string): ReplicaConfig {
    const t = this.table(raw, path, label);
    const out: ReplicaConfig = {};
    for (const [canon, { raw: v, key, path: kp }] of this.keys(t, path, label, REPLICA_KEYS)) {
      const spec = REPLICA_KEYS[canon];
      // deno-lint-ignore no-explicit-any
      (out as any)[spec.field] = this.value(v, spec.kind, kp, `${label} ${key}`);
    }
    registerSecret(out.accessKeyId?.value);
    registerSecret(out.secretAccessKey?.value);
    registerSecret(out.sessionToken?.value);
    return out;
  }

  retention(raw: unknown, path: string, label: string): TuningConfig["retention"] {
    const t = this.table(raw, path, label);
    const out: TuningConfig["retention"] = {};
    for (const [canon, { raw: v, path: kp }] of this.keys(t, path, label, RETENTION_KEYS)) {
      out[RETENTION_KEYS[canon].field] = this.value(v, "nonNegInt", kp, `${label} ${canon}`);
    }
    return out;
  }

  compaction(raw: unknown, path: string, label: string): ConfigValue<number[]> | undefined {
    const t = this.table(raw, path, label);
    const k = this.keys(t, path, label, COMPACTION_KEYS).get("levels");
    return k ? this.value<number[]>(k.raw, "durationList", k.path, `${label} levels`) : undefined;
  }
}

/**
 * Parses and validates config text. `file` is used in messages; `env` resolves `${VAR}`. Secrets found in
 * the file are registered with `registerSecret`.
 */
export function parseConfigText(
  text: string,
  file: string,
  env: (name: string) => string | undefined,
): FileConfig {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    if (err instanceof TomlError) {
      const msg = err.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
      throw new ConfigError(`${file}:${err.line}:${err.column}: invalid TOML: ${msg}`, { cause: err });
    }
    throw new ConfigError(`${file}: invalid TOML: ${err instanceof Error ? err.message : String(err)}`);
  }
  const v: Validator = new Validator(file, text, env);
  const cfg: FileConfig = {
    file,
    dir: dirOf(file),
    replica: {},
    tuning: { sync: {}, retention: {} },
    retry: {},
    metrics: {},
    webhooks: [],
    databases: [],
  };
  for (const k of Object.keys(doc)) {
    if (!TOP_KEYS.includes(k)) {
      v.fail(k, `unknown ${isTable(doc[k]) ? "section" : "key"} '${k}'${suggest(k, TOP_KEYS)}`);
    }
  }
  if (doc.replica !== undefined && doc.s3 !== undefined) {
    v.fail("s3", "both [replica] and [s3] are set; [s3] is an alias of [replica], keep one");
  }
  if (doc.replica !== undefined) cfg.replica = v.replica(doc.replica, "replica", "[replica]");
  if (doc.s3 !== undefined) cfg.replica = v.replica(doc.s3, "s3", "[s3]");
  if (doc.sync !== undefined) {
    const t = v.table(doc.sync, "sync", "[sync]");
    for (const [canon, { raw, key, path }] of v.keys(t, "sync", "[sync]", SYNC_KEYS)) {
      const spec = SYNC_KEYS[canon];
      const val = v.value<number>(raw, spec.kind, path, `[sync] ${key}`);
      if (spec.field === "shutdownTimeoutMs") cfg.shutdownTimeoutMs = val;
      else cfg.tuning.sync[spec.field] = val;
    }
  }
  if (doc.compaction !== undefined) {
    cfg.tuning.compactionIntervalsMs = v.compaction(doc.compaction, "compaction", "[compaction]");
  }
  if (doc.retention !== undefined) {
    cfg.tuning.retention = v.retention(doc.retention, "retention", "[retention]");
  }
  if (doc.retry !== undefined) {
    const t = v.table(doc.retry, "retry", "[retry]");
    for (const [canon, { raw, path }] of v.keys(t, "retry", "[retry]", RETRY_KEYS)) {
      const spec = RETRY_KEYS[canon];
      cfg.retry[spec.field] = v.value<number>(raw, spec.kind, path, `[retry] ${canon}`);
    }
    const { baseDelayMs: base, maxDelayMs: max } = cfg.retry;
    if (base && max && max.value < base.value) {
      v.fail("retry.max_delay", "[retry] max_delay: must not be shorter than base_delay");
    }
  }
  if (doc.metrics !== undefined) {
    const t = v.table(doc.metrics, "metrics", "[metrics]");
    for (const [canon, { raw, path }] of v.keys(t, "metrics", "[metrics]", METRICS_KEYS)) {
      if (canon === "addr") cfg.metrics.addr = v.value<string>(raw, "addr", path, "[metrics] addr");
      else cfg.metrics.enabled = v.value<boolean>(raw, "bool", path, "[metrics] enabled");
    }
  }
  if (doc.webhooks !== undefined) {
    if (!Array.isArray(doc.webhooks)) {
      v.fail("webhooks", "webhooks must be an array of tables ([[webhooks]])");
    }
    (doc.webhooks as unknown[]).forEach((raw, idx) => {
      const path = `webhooks[${idx}]`;
      const label = `[[webhooks]] #${idx + 1}`;
      const t = v.table(raw, path, label);
      const keys = v.keys(t, path, label, WEBHOOK_KEYS);
      const url = keys.get("url");
      if (!url) v.fail(path, `${label}: 'url' is required`);
      const hook: WebhookSettings = {
        url: v.convert(url.raw, "httpUrl", url.path, `${label} url`) as string,
        events: keys.has("events")
          ? v.convert(
            keys.get("events")!.raw,
            "eventList",
            keys.get("events")!.path,
            `${label} events`,
          ) as string[]
          : [...WEBHOOK_EVENTS],
      };
      const secret = keys.get("secret");
      if (secret) {
        hook.secret = v.convert(secret.raw, "string", secret.path, `${label} secret`) as string;
        registerSecret(hook.secret);
      }
      cfg.webhooks.push({ value: hook, where: v.where(path) });
    });
  }
  if (doc.databases !== undefined) {
    if (!Array.isArray(doc.databases)) {
      v.fail("databases", "databases must be an array of tables ([[databases]])");
    }
    (doc.databases as unknown[]).forEach((raw, idx) => {
      const path = `databases[${idx}]`;
      const label = `[[databases]] #${idx + 1}`;
      const t = v.table(raw, path, label);
      const keys = v.keys(t, path, label, { ...DATABASE_OWN_KEYS, ...DATABASE_SYNC_KEYS });
      const p = keys.get("path");
      if (!p) v.fail(path, `${label}: 'path' is required`);
      const entry: DatabaseEntryConfig = {
        path: v.value<string>(p.raw, "string", p.path, `${label} path`),
        tuning: { sync: {}, retention: {} },
        where: v.where(path),
        index: idx,
      };
      for (const [canon, { raw: r, key, path: kp }] of keys) {
        const kl = `${label} ${key}`;
        if (canon === "path") continue;
        if (canon === "name") entry.name = v.value<string>(r, "name", kp, kl);
        else if (canon === "queue_dir") entry.tuning.queueDir = v.value<string>(r, "string", kp, kl);
        else if (canon === "retention") entry.tuning.retention = v.retention(r, kp, kl);
        else if (canon === "compaction") entry.tuning.compactionIntervalsMs = v.compaction(r, kp, kl);
        else if (canon === "replica") {
          entry.replica = typeof r === "string"
            ? { url: v.value<string>(r, "replicaUrl", kp, kl) }
            : v.replica(r, kp, kl);
        } else {
          const spec = SYNC_KEYS[canon];
          entry.tuning.sync[spec.field as TuningField] = v.value<number>(r, spec.kind, kp, kl);
        }
      }
      cfg.databases.push(entry);
    });
  }
  return cfg;
}
