/**
 * `walrust restore <name> -o <path> -b <url>`: the latest state, a TXID, or the state as of a time, written
 * atomically to a new file (see `../restore/restore.ts`). Also holds the small helpers `list` and `verify`
 * share: opening the replica store and parsing TXID arguments.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import { REPLICA_HELP, REPLICA_OPTIONS, resolveReplica } from "../config/cli.ts";
import { DEFAULTS } from "../config/types.ts";
import { InterruptedError, UsageError } from "../errors.ts";
import { formatTxid } from "../ltx/types.ts";
import { restoreDatabase, type RestoreResult } from "../restore/restore.ts";
import { openObjectStore } from "../storage/open.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { parseRfc3339, ReplicaClient } from "../storage/replica_client.ts";
import { Progress } from "../util/progress.ts";

/**
 * Parses a TXID as users give it: 16 hex digits (as in LTX file names and Litestream's `-txid`), or a
 * decimal number. UsageError naming `flag` otherwise.
 */
export function parseTxidArg(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let n: number;
  if (/^[0-9a-fA-F]{16}$/.test(v)) n = Number.parseInt(v, 16);
  else if (/^0x[0-9a-fA-F]{1,16}$/.test(v)) n = Number.parseInt(v.slice(2), 16);
  else if (/^\d{1,16}$/.test(v)) n = Number(v);
  else {
    throw new UsageError(
      `--${flag}: expected a TXID as a decimal number or 16 hex digits (e.g. 42 or 000000000000002a), got '${value}'`,
    );
  }
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--${flag}: TXID must be between 1 and 2^53-1, got '${value}'`);
  }
  return n;
}

/** Parses an RFC 3339 time flag (`2025-01-02T15:04:05Z`, offsets and fractions allowed). */
export function parseTimeArg(flag: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const d = parseRfc3339(value);
  if (!d) {
    throw new UsageError(`--${flag}: expected an RFC 3339 time such as 2025-01-02T15:04:05Z, got '${value}'`);
  }
  return d;
}

/** Opens the replica store from `-b`/env/config, with the default retry policy. Caller closes it. */
export async function openReplicaStore(values: Record<string, unknown>, io: CliIO): Promise<ObjectStore> {
  const settings = await resolveReplica(values, io);
  return openObjectStore(settings, { retry: { ...DEFAULTS.retry } });
}

/**
 * Runs `fn` with an AbortSignal that fires on SIGINT/SIGTERM, so long commands clean up (temp files) and
 * exit 130 instead of dying half-way.
 */
export async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = () => ac.abort(new InterruptedError());
  const installed: Deno.Signal[] = [];
  for (const s of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(s, onSignal);
      installed.push(s);
    } catch { /* not supported here (e.g. Windows SIGTERM) */ }
  }
  try {
    return await fn(ac.signal);
  } finally {
    for (const s of installed) Deno.removeSignalListener(s, onSignal);
  }
}

/** Text form of a restore result, one line. */
export function formatRestoreResult(name: string, output: string, r: RestoreResult): string {
  const when = r.timestamp ? ` (${r.timestamp.toISOString()})` : "";
  if (r.format === "v3") return `restored ${name} to ${output} from a Litestream v0.3 backup${when}`;
  return `restored ${name} to ${output} at TXID ${r.txid}${when}`;
}

const HELP = `Usage: walrust restore <name> -o <path> -b <url> [options]

Restores database <name> from its backups into a new file: the latest state, exactly a TXID, or the
state as of a time. The file appears only once it is complete and verified (LTX checksums, SHA-256
metadata when present, PRAGMA integrity_check); on any failure no output file is left behind.
Litestream v0.3 backups (generations/) are restored when the name has no LTX backups.

Options:
  -o, --output <path>       where to write the database (required)
      --txid <n>            restore exactly this TXID: decimal, or 16 hex digits as in file names
      --timestamp <time>    restore the state as of an RFC 3339 time (e.g. 2025-01-02T15:04:05Z)
      --force               overwrite an existing output (its -wal, -shm and -journal are removed)
      --if-db-not-exists    exit 0 without doing anything when the output already exists
      --if-replica-exists   exit 0 without doing anything when there is no backup of <name>
      --no-integrity-check  skip PRAGMA integrity_check of the restored file
      --json                print a JSON summary on stdout

${REPLICA_HELP}

Progress (bytes, rate, ETA) is shown on a terminal only.
Exit codes: 0 ok, 5 replica unreachable, 7 corrupt backup, 8 gap in the backup chain, 10 nothing to
restore (no backup, or the TXID/time is not covered), 11 output exists, 12 local I/O error.`;

const OPTIONS = {
  ...REPLICA_OPTIONS,
  output: { type: "string", short: "o" },
  txid: { type: "string" },
  timestamp: { type: "string" },
  force: { type: "boolean" },
  "if-db-not-exists": { type: "boolean" },
  "if-replica-exists": { type: "boolean" },
  "no-integrity-check": { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** The `restore` command. */
export const restoreCommand: Command = {
  name: "restore",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("restore", args, OPTIONS);
    if (positionals.length !== 1) {
      throw new UsageError("walrust restore: give exactly one database name (see 'walrust restore --help')");
    }
    const name = positionals[0];
    const output = values.output;
    if (!output) throw new UsageError("walrust restore: -o/--output <path> is required");
    const txid = parseTxidArg("txid", values.txid);
    const timestamp = parseTimeArg("timestamp", values.timestamp);
    if (txid !== undefined && timestamp !== undefined) {
      throw new UsageError("walrust restore: --txid and --timestamp cannot be used together");
    }
    const store = await openReplicaStore(values, io);
    const progress = new Progress(io, { label: `restoring ${name}` });
    const started = performance.now();
    try {
      const client = new ReplicaClient(store, name);
      const r = await withSignals((signal) =>
        restoreDatabase(client, {
          output,
          txid,
          timestamp,
          force: values.force === true,
          ifDbNotExists: values["if-db-not-exists"] === true,
          ifReplicaExists: values["if-replica-exists"] === true,
          integrityCheck: values["no-integrity-check"] !== true,
          onProgress: (done, total) => progress.update(done, total),
          signal,
        })
      );
      progress.finish();
      if (values.json) {
        io.stdout(
          JSON.stringify({
            db: name,
            replica: client.displayUrl,
            output,
            status: r.status,
            format: r.format,
            txid: r.status === "restored" && r.format === "ltx" ? r.txid : null,
            txidHex: r.status === "restored" && r.format === "ltx" ? formatTxid(r.txid) : null,
            timestamp: r.timestamp?.toISOString() ?? null,
            pages: r.pages,
            pageSize: r.pageSize,
            bytes: r.bytes,
            files: r.plan.map((f) => ({
              level: f.level,
              minTXID: f.minTXID,
              maxTXID: f.maxTXID,
              size: f.size,
              key: f.key,
            })),
            bytesRead: r.bytesRead,
            integrityCheck: r.integrityChecked ? "ok" : "skipped",
            durationMs: Math.round(performance.now() - started),
          }) + "\n",
        );
      } else if (r.status === "skipped") {
        io.stderr(`${output} already exists; nothing restored (--if-db-not-exists)\n`);
      } else if (r.status === "no_backup") {
        io.stderr(`no backup of ${name} in ${client.displayUrl}; nothing restored (--if-replica-exists)\n`);
      } else {
        io.stdout(formatRestoreResult(name, output, r) + "\n");
      }
      return 0;
    } finally {
      progress.finish();
      store.close();
    }
  },
};
