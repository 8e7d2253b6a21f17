/**
 * `walrust list -b <url> [name] [--json]`: the databases in a replica and, per database and level, the TXID
 * range, file count, bytes and newest file time; Litestream v0.3 data (`generations/`) is summarised too.
 * Output order is deterministic: names sorted, levels ascending.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import { openReplicaStore } from "./restore.ts";
import { REPLICA_HELP, REPLICA_OPTIONS } from "../config/cli.ts";
import { NotFoundError, UsageError } from "../errors.ts";
import { describeV3, type V3Description } from "../litestream/v3_restore.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { listDatabases, ReplicaClient } from "../storage/replica_client.ts";
import { type LevelSummary, summariseLevels } from "../verify/verify.ts";
import { formatBytes } from "../util/progress.ts";

/** One database in a replica. */
export interface DatabaseSummary {
  /** Database name (`""` = the replica root itself). */
  name: string;
  /** Per level, ascending. */
  levels: LevelSummary[];
  /** Highest TXID in any level, or null without LTX files. */
  maxTXID: number | null;
  /** Newest file time across levels and v0.3 data, or null. */
  newest: Date | null;
  /** Litestream v0.3 data under `<name>/generations/`, or null. */
  v3: V3Description | null;
}

/** Summarises database `name` in `store` (one listing for LTX files, one for v0.3 data). */
export async function describeDatabase(store: ObjectStore, name: string): Promise<DatabaseSummary> {
  const client = new ReplicaClient(store, name);
  const levels = summariseLevels(await client.allLtxFiles());
  const v3desc = await describeV3(store, name);
  const v3 = v3desc.generations.length > 0 ? v3desc : null;
  const times = [...levels.map((l) => l.newest), ...(v3?.newest ? [v3.newest] : [])];
  return {
    name,
    levels,
    maxTXID: levels.length ? Math.max(...levels.map((l) => l.maxTXID)) : null,
    newest: times.length ? new Date(Math.max(...times.map((t) => t.getTime()))) : null,
    v3,
  };
}

function v3Json(v: V3Description | null): unknown {
  if (!v) return null;
  return {
    generations: v.generations.map((g) => ({
      id: g.id,
      snapshots: g.snapshots,
      walSegments: g.walSegments,
      maxIndex: g.maxIndex,
      bytes: g.bytes,
      firstAt: g.firstAt?.toISOString() ?? null,
      lastAt: g.lastAt?.toISOString() ?? null,
    })),
    snapshots: v.snapshotCount,
    walSegments: v.walSegmentCount,
    bytes: v.bytes,
    newest: v.newest?.toISOString() ?? null,
  };
}

/** The JSON form of a listing (stable field names for scripts). */
export function listJson(replica: string, dbs: DatabaseSummary[]): unknown {
  return {
    replica,
    databases: dbs.map((d) => ({
      name: d.name,
      maxTXID: d.maxTXID,
      newest: d.newest?.toISOString() ?? null,
      levels: d.levels.map((l) => ({
        level: l.level,
        minTXID: l.minTXID,
        maxTXID: l.maxTXID,
        files: l.files,
        bytes: l.bytes,
        newest: l.newest.toISOString(),
      })),
      v3: v3Json(d.v3),
    })),
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The text form of a listing: one block per database, one aligned row per level. */
export function listText(replica: string, dbs: DatabaseSummary[]): string {
  if (dbs.length === 0) return `no databases found in ${replica}\n`;
  const lines = [`databases in ${replica}:`];
  for (const d of dbs) {
    lines.push("");
    lines.push(d.name === "" ? "(replica root)" : d.name);
    if (d.levels.length > 0) {
      const rows = d.levels.map((l) => [
        `L${l.level}`,
        l.minTXID === l.maxTXID ? `${l.minTXID}` : `${l.minTXID}-${l.maxTXID}`,
        plural(l.files, "file"),
        formatBytes(l.bytes),
        l.newest.toISOString(),
      ]);
      const head = ["level", "TXIDs", "files", "size", "newest"];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      const fmt = (r: string[]) =>
        "  " +
        r.map((c, i) => (i === 2 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
          .trimEnd();
      lines.push(fmt(head));
      for (const r of rows) lines.push(fmt(r));
    }
    if (d.v3) {
      const v = d.v3;
      lines.push(
        `  Litestream v0.3: ${plural(v.generations.length, "generation")}, ${
          plural(v.snapshotCount, "snapshot")
        }, ` +
          `${plural(v.walSegmentCount, "WAL segment")}, ${formatBytes(v.bytes)}, newest ${
            v.newest?.toISOString() ?? "-"
          }`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

const HELP = `Usage: walrust list -b <url> [name] [--json]

Lists the databases in a replica and, for each database and level, the TXID range, the number of files,
their size and the newest file's time (level 9 = snapshots, 0 = raw syncs, 1–8 compacted). Litestream
v0.3 backups (generations/) are summarised too. With a name, lists only that database (exit 10 when it
has no backups).

Options:
      --json               print JSON on stdout

${REPLICA_HELP}`;

const OPTIONS = { ...REPLICA_OPTIONS, json: { type: "boolean" } } as const;

/** The `list` command. */
export const listCommand: Command = {
  name: "list",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("list", args, OPTIONS);
    if (positionals.length > 1) throw new UsageError("walrust list: give at most one database name");
    const store = await openReplicaStore(values, io);
    try {
      let names: string[];
      if (positionals.length === 1) {
        names = [positionals[0]];
      } else {
        names = await listDatabases(store);
      }
      const dbs: DatabaseSummary[] = [];
      for (const n of names) dbs.push(await describeDatabase(store, n));
      if (positionals.length === 0) {
        // A URL that points straight at one Litestream v0.3 replica has its data at the root.
        const root = await describeV3(store, "");
        if (root.generations.length > 0) {
          dbs.unshift({ name: "", levels: [], maxTXID: null, newest: root.newest, v3: root });
        }
      }
      if (positionals.length === 1 && dbs[0].levels.length === 0 && !dbs[0].v3) {
        throw new NotFoundError(`no backup of ${positionals[0]} found in ${store.displayUrl}`);
      }
      io.stdout(
        values.json
          ? JSON.stringify(listJson(store.displayUrl, dbs)) + "\n"
          : listText(store.displayUrl, dbs),
      );
      return 0;
    } finally {
      store.close();
    }
  },
};
