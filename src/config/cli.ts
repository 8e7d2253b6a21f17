/**
 * What commands use to turn their parsed flags into settings: the shared flag definitions and the
 * resolvers that merge defaults < `walrust.toml` < environment < flags (see ./resolve.ts).
 *
 * @module
 */

import type { ParseArgsConfig } from "node:util";
import type { CliIO } from "../cli/command.ts";
import { UsageError } from "../errors.ts";
import { log } from "../observe/log.ts";
import { type ConfigLocation, findConfigPath, loadConfigFile } from "./load.ts";
import {
  resolveDatabases,
  type ResolvedDatabase,
  type ResolveInput,
  resolveProcess,
  resolveReplicaSettings,
  resolveStandalone,
  stemOf,
} from "./resolve.ts";
import type { DatabaseSettings, ReplicaSettings, WatchSettings } from "./types.ts";

/** parseArgs options for the replica destination: `-b/--bucket <url>`, `--endpoint`, `--region`, `--force-path-style`. */
export const REPLICA_OPTIONS = {
  bucket: { type: "string", short: "b" },
  endpoint: { type: "string" },
  region: { type: "string" },
  "force-path-style": { type: "boolean" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

/** parseArgs options of `watch`: {@link REPLICA_OPTIONS} plus the replication tuning flags. */
export const WATCH_OPTIONS = {
  ...REPLICA_OPTIONS,
  "sync-interval": { type: "string" },
  "snapshot-interval": { type: "string" },
  "checkpoint-interval": { type: "string" },
  "min-checkpoint-pages": { type: "string" },
  "truncate-pages": { type: "string" },
  "queue-max-bytes": { type: "string" },
  "validation-interval": { type: "string" },
  "metrics-addr": { type: "string" },
  "no-metrics": { type: "boolean" },
  "shutdown-timeout": { type: "string" },
  exec: { type: "string" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

/** Help text for {@link REPLICA_OPTIONS}, for commands' `--help`. */
export const REPLICA_HELP = `Replica options (flags > environment > walrust.toml [replica]):
  -b, --bucket <url>       s3://bucket/prefix, file:///dir or a directory (env WALRUST_REPLICA_URL)
      --endpoint <url>     S3-compatible endpoint (env AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)
      --region <region>    region (env AWS_REGION, AWS_DEFAULT_REGION; default us-east-1; auto for R2/Tigris)
      --force-path-style   path-style S3 addressing (default on when an endpoint is set)
  Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or [replica] in walrust.toml.`;

/** Help text for the tuning part of {@link WATCH_OPTIONS}. */
export const WATCH_HELP = `Replication options (flags > walrust.toml [sync] > defaults):
      --sync-interval <d>         read new WAL frames this often (default 1s; sub-second allowed)
      --snapshot-interval <d>     full snapshot this often (default 24h)
      --checkpoint-interval <d>   PASSIVE checkpoint at least this often with activity (default 1m)
      --min-checkpoint-pages <n>  PASSIVE checkpoint after this many shipped WAL pages (default 1000)
      --truncate-pages <n>        emergency TRUNCATE checkpoint at this many WAL pages (default 121359; 0 = off)
      --queue-max-bytes <n>       local queue limit, e.g. 1GiB (default 1 GiB)
      --validation-interval <d>   run verify this often (default 0 = off)
      --metrics-addr <host:port>  /metrics, /health and dashboard (default 127.0.0.1:16767)
      --no-metrics                no metrics server
      --shutdown-timeout <d>      flush the queue for at most this long on shutdown (default 10s)
      --exec <command>            run a command and stop when it exits
  Durations: 500ms, 1s, 5m, 1h30m or a number of seconds.`;

/** The inputs of resolution for a command: the config file (if any), the flags and the environment. */
export interface CliConfig extends ResolveInput {
  /** Where the config file was found, or null. */
  location: ConfigLocation | null;
}

/** Finds and loads the config file for a command (`--config`, `./walrust.toml`, `WALRUST_CONFIG`). */
export async function loadCliConfig(values: Record<string, unknown>, io: CliIO): Promise<CliConfig> {
  const explicit = typeof values.config === "string" ? values.config : undefined;
  const env = (name: string) => io.env(name);
  const location = await findConfigPath(explicit, env);
  const config = location ? await loadConfigFile(location.path, env) : null;
  return { config, flags: values, env, location };
}

const NO_REPLICA = "no replica given: pass -b/--bucket <url> (s3://bucket/prefix or a directory), " +
  "set WALRUST_REPLICA_URL, or set [replica] url in walrust.toml";

/**
 * The replica destination: flags > environment (`AWS_*`, `WALRUST_REPLICA_URL`) > `[replica]`/`[s3]` in
 * walrust.toml. When the file has no global `[replica]` but all its `[[databases]]` use one and the same
 * replica, that one is used. UsageError when no replica is given anywhere.
 */
export async function resolveReplica(values: Record<string, unknown>, io: CliIO): Promise<ReplicaSettings> {
  const input = await loadCliConfig(values, io);
  const r = resolveReplicaSettings(input);
  if (r.settings) return r.settings;
  const perDb = input.config?.databases.filter((d) => d.replica?.url) ?? [];
  const urls = new Set(perDb.map((d) => d.replica!.url!.value));
  if (urls.size === 1) {
    const one = resolveReplicaSettings(input, perDb[0].replica);
    if (one.settings) return one.settings;
  }
  throw new UsageError(NO_REPLICA);
}

function warnAll(warnings: string[]): void {
  for (const w of warnings) log.warn(w);
}

function requireReplica(d: ResolvedDatabase): DatabaseSettings {
  if (!d.replica.settings) {
    throw new UsageError(
      `no replica for database ${d.settings.path}: ${NO_REPLICA.slice("no replica given: ".length)}`,
    );
  }
  return d.settings;
}

/**
 * Settings of `watch`: databases from the command line, or `[[databases]]` (globs expanded) from the config;
 * names unique per replica. A missing database file is a DatabaseError (exit 3); a glob that matches
 * nothing is a warning (logged), so the result may hold no databases when every entry is such a glob.
 */
export async function resolveWatchSettings(
  dbPaths: string[],
  values: Record<string, unknown>,
  io: CliIO,
): Promise<WatchSettings> {
  const input = await loadCliConfig(values, io);
  if (dbPaths.length === 0 && (!input.config || input.config.databases.length === 0)) {
    throw new UsageError(
      input.config
        ? `walrust watch: ${input.config.file} has no [[databases]]; add one or give database paths`
        : "walrust watch: give database paths (walrust watch app.db -b s3://bucket/prefix) or a walrust.toml " +
          "with [[databases]] (see docs/config.md)",
    );
  }
  const { databases, warnings } = await resolveDatabases(input, dbPaths, "error");
  warnAll(warnings);
  const proc = resolveProcess(input);
  return {
    databases: databases.map(requireReplica),
    metricsAddr: proc.metricsAddr,
    webhooks: proc.webhooks,
    shutdownTimeoutMs: proc.shutdownTimeoutMs,
  };
}

function looksLikePath(s: string): boolean {
  return s.includes("/") || /\.(db|sqlite3?|db3)$/i.test(s);
}

/**
 * A database by name (from the config) or path, with config defaults: for snapshot, verify and compact.
 * Lookup order: a `[[databases]]` name, a `[[databases]]` path (same file), then a path on disk (name = file
 * stem), else a bare name (path = the name; commands that need the file report it missing).
 */
export async function resolveDatabaseSettings(
  nameOrPath: string,
  values: Record<string, unknown>,
  io: CliIO,
): Promise<DatabaseSettings> {
  const input = await loadCliConfig(values, io);
  if (input.config) {
    const { databases } = await resolveDatabases(input, [], "skip");
    const byName = databases.find((d) => d.settings.name === nameOrPath);
    if (byName) return requireReplica(byName);
    if (await fileExists(nameOrPath)) {
      const { databases: byPath } = await resolveDatabases(input, [nameOrPath], "skip");
      if (byPath.length === 1) return requireReplica(byPath[0]);
    }
  }
  const isPath = (await fileExists(nameOrPath)) || looksLikePath(nameOrPath);
  return requireReplica(resolveStandalone(input, nameOrPath, isPath ? stemOf(nameOrPath) : nameOrPath));
}

async function fileExists(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}
