/**
 * `walrust replicate <url of one database> --local replica.db`: a read replica — a local SQLite file that
 * follows one database's backups, updated in place while applications read it (see
 * `../readreplica/follower.ts` and docs/read-replica.md).
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import { REPLICA_HELP, REPLICA_OPTIONS } from "../config/cli.ts";
import { UsageError } from "../errors.ts";
import { log } from "../observe/log.ts";
import { ReplicaFollower } from "../readreplica/follower.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { parseReplicaUrl } from "../storage/url.ts";
import { baseOf, dirOf } from "../util/fs.ts";
import { parseDuration } from "../util/duration.ts";
import { openReplicaStore, withSignals } from "./restore.ts";

const HELP = `Usage: walrust replicate <url of one database> --local <path> [options]
       walrust replicate -b <replica url> --name <name> --local <path> [options]

Keeps a local read replica of one database: bootstraps it from the latest backup (atomic, integrity-checked),
then polls the backup and applies each new LTX file to the replica in place — the work is proportional to
the pages a file changes, not to the database size. Applications read the replica with ordinary SQLite
while it is updated and always see the state before or after a whole file, never a mix (docs/read-replica.md).
Progress is kept in <path>-walrust-replica.json, so a restart continues where it stopped. A gap in the backup
(we were stopped longer than its retention) or a replaced backup history rebuilds the replica automatically.

The URL names the database: its last path segment is the database name under the replica root, e.g.
s3://bucket/prefix/app, /backups/app or file:///backups/app.

Options:
  -l, --local <path>     the replica database to create and keep up to date (required)
      --name <name>      the database name, with -b <replica root url> instead of a URL argument
      --interval <d>     poll interval (default 1s; 500ms, 5s, 1m …)
      --once             bring the replica up to date once and exit

Readers: open the replica read-only with a busy timeout (e.g. sqlite3 'file:replica.db?mode=ro' with
.timeout 5000, or PRAGMA busy_timeout), since a reader waits while a file is applied. Never write to it.

${REPLICA_HELP}

Stop with SIGTERM or Ctrl-C (exit 0; the replica is always left consistent).
Exit codes: 0 ok/stopped, 2 usage, 5 replica unreachable, 7 corrupt backup, 8 gap at the first bootstrap,
10 no backup of the database, 11 another 'walrust replicate' updates the same file, 12 local I/O error.`;

const OPTIONS = {
  ...REPLICA_OPTIONS,
  local: { type: "string", short: "l" },
  name: { type: "string" },
  interval: { type: "string" },
  once: { type: "boolean" },
} as const;

/**
 * Splits the URL of one database into the replica root and the database name (its last path segment):
 * `s3://bucket/prefix/app` → `s3://bucket/prefix` + `app`; `/backups/app` → `/backups` + `app`. UsageError when
 * the URL has no database segment (e.g. `s3://bucket`).
 */
export function splitDatabaseUrl(url: string): { root: string; name: string } {
  const u = parseReplicaUrl(url);
  if (u.kind === "s3") {
    const parts = u.prefix.split("/").filter((p) => p !== "");
    if (parts.length === 0) {
      throw new UsageError(
        `walrust replicate: '${url}' names a bucket, not a database; give s3://${u.bucket}/<prefix>/<name> ` +
          `or -b s3://${u.bucket} --name <name>`,
      );
    }
    const name = parts.pop()!;
    return { root: `s3://${u.bucket}${parts.length ? "/" + parts.join("/") : ""}`, name };
  }
  const path = u.path ?? "";
  const name = baseOf(path);
  if (name === "" || name === "." || name === ".." || path === "/") {
    throw new UsageError(
      `walrust replicate: '${url}' names a directory, not a database; give <dir>/<name> or -b <dir> --name <name>`,
    );
  }
  return { root: dirOf(path), name };
}

/** The `replicate` command. */
export const replicateCommand: Command = {
  name: "replicate",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("replicate", args, OPTIONS);
    const local = values.local;
    if (!local) throw new UsageError("walrust replicate: --local <path> (the replica database) is required");
    if (positionals.length > 1) {
      throw new UsageError("walrust replicate: give one database URL (see 'walrust replicate --help')");
    }
    let root: string | undefined;
    let name: string;
    if (positionals.length === 1) {
      if (values.bucket !== undefined || values.name !== undefined) {
        throw new UsageError(
          "walrust replicate: give either a database URL or -b <url> --name <name>, not both",
        );
      }
      ({ root, name } = splitDatabaseUrl(positionals[0]));
    } else {
      if (values.name === undefined) {
        throw new UsageError(
          "walrust replicate: give the database's URL (s3://bucket/prefix/app) or -b <url> --name <name>",
        );
      }
      name = values.name;
    }
    let intervalMs = 1000;
    if (values.interval !== undefined) {
      const ms = parseDuration(values.interval);
      if (ms === null || ms <= 0) {
        throw new UsageError(`--interval: expected a duration such as 1s or 500ms, got '${values.interval}'`);
      }
      intervalMs = ms;
    }
    const store = await openReplicaStore(root !== undefined ? { ...values, bucket: root } : values, io);
    try {
      const client = new ReplicaClient(store, name);
      return await withSignals(async (signal) => {
        const follower = await ReplicaFollower.open(client, { path: local, intervalMs, signal });
        try {
          if (values.once) {
            const r = await follower.step();
            io.stdout(`replica ${local} of ${client.displayUrl} at TXID ${r.txid} (${r.kind})\n`);
            return 0;
          }
          log.info("following", { source: client.displayUrl, replica: local, intervalMs });
          await follower.run();
          log.info("stopped", { replica: local, txid: follower.txid });
          return 0;
        } finally {
          follower.close();
        }
      });
    } finally {
      store.close();
    }
  },
};
