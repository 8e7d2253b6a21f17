/**
 * Logging: one line per event that matters, human-readable by default, JSON with `--log-format json`.
 * Every line passes through {@link redact}, which removes every registered secret, so a credential can
 * never reach a log even inside an error message from a library.
 *
 * @module
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Output formats. */
export type LogFormat = "text" | "json";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const secrets = new Set<string>();

/** Registers a secret (credential, webhook secret); from now on it is masked in all output. */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) secrets.add(secret);
}

/** Replaces every registered secret in `text` with `***`. */
export function redact(text: string): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("***");
  return out;
}

/** Structured fields attached to a log line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** A logger. */
export interface Logger {
  /** Debug detail, hidden by default. */
  debug(msg: string, fields?: LogFields): void;
  /** Normal events. */
  info(msg: string, fields?: LogFields): void;
  /** Something needs attention but replication continues. */
  warn(msg: string, fields?: LogFields): void;
  /** A failure. */
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

interface LogConfig {
  level: LogLevel;
  format: LogFormat;
  write: (line: string) => void;
}

const encoder = new TextEncoder();
const config: LogConfig = {
  level: "info",
  format: "text",
  write: (line) => {
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      // stderr closed: nothing sensible to do.
    }
  },
};

/** Sets the process-wide level, format and sink (the sink is for tests). */
export function configureLogging(options: Partial<LogConfig>): void {
  Object.assign(config, Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)));
}

function formatValue(v: unknown): string {
  const s = String(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

function emit(level: LogLevel, msg: string, base: LogFields, fields?: LogFields): void {
  if (LEVELS[level] < LEVELS[config.level]) return;
  const all = { ...base, ...fields };
  let line: string;
  if (config.format === "json") {
    line = JSON.stringify({ time: new Date().toISOString(), level, msg, ...all });
  } else {
    const kv = Object.entries(all).filter(([, v]) => v !== undefined).map(([k, v]) =>
      `${k}=${formatValue(v)}`
    );
    line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${
      kv.length ? " " + kv.join(" ") : ""
    }`;
  }
  config.write(redact(line));
}

function make(base: LogFields): Logger {
  return {
    debug: (m, f) => emit("debug", m, base, f),
    info: (m, f) => emit("info", m, base, f),
    warn: (m, f) => emit("warn", m, base, f),
    error: (m, f) => emit("error", m, base, f),
    child: (f) => make({ ...base, ...f }),
  };
}

/** The process-wide logger. */
export const log: Logger = make({});
