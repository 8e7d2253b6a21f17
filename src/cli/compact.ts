/**
 * `walrust compact <name> -b <url> [--force] [--json] [--hourly N --daily N --weekly N --monthly N]`: level
 * compaction plus GFS retention of one database's replica, on demand. A dry run by default: it lists every
 * compaction and deletion it would make, one line per file with the reason, and totals; `--force` carries it
 * out. The rules are in `../retention/plan.ts` and `../retention/compact.ts`.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs, parseIntFlag } from "./command.ts";
import { REPLICA_HELP, REPLICA_OPTIONS, resolveDatabaseSettings } from "../config/cli.ts";
import type { RetentionSettings } from "../config/types.ts";
import { NotFoundError, UsageError } from "../errors.ts";
import { EventBus } from "../observe/events.ts";
import { SNAPSHOT_LEVEL } from "../restore/plan.ts";
import {
  compactionSchedule,
  type CompactionStep,
  runCompaction,
  simulateCompaction,
} from "../retention/compact.ts";
import { enforceRetention, listForRetention, type RetentionResult } from "../retention/maintenance.ts";
import { L0_RETENTION_MS } from "../retention/plan.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { openObjectStore } from "../storage/open.ts";
import { type LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { formatBytes, Progress } from "../util/progress.ts";

const OPTIONS = {
  ...REPLICA_OPTIONS,
  force: { type: "boolean" },
  json: { type: "boolean" },
  hourly: { type: "string" },
  daily: { type: "string" },
  weekly: { type: "string" },
  monthly: { type: "string" },
} as const;

const HELP = `Usage: walrust compact <name> -b <url> [--force] [--json]
                      [--hourly N] [--daily N] [--weekly N] [--monthly N]

Compacts the backup files of database <name> into coarser levels and deletes every file that no retained
restore point needs. Without --force it only prints the plan: one line per file (key and reason) and totals.
<name> is a database name or path; its settings come from walrust.toml when it is listed there.

Compaction: new level N-1 files are merged into one level-N file, for each level of [compaction] in
walrust.toml (default L1 30s, L2 5m, L3 1h). 'watch' does this on the wall-clock schedule; this command
merges whatever is new right away.

Retention keeps:
  - level-9 snapshots chosen by GFS rotation: the newest snapshot of each of the last N hours, days, ISO
    weeks and months (UTC, counted back from now; a period without a snapshot still counts), and always
    the newest snapshot;
  - every file needed to restore: the latest TXID, each kept snapshot, and every point in time from the
    oldest kept snapshot to now at the finest level still kept (every TXID of the last ${
  L0_RETENTION_MS / 60_000
} minutes and of
    what is not compacted yet, then each compacted file's boundary: 30s, 5m, then hourly by default);
  - the newest file of every level, and any file around a gap in the chain.
Everything else goes: snapshots GFS does not keep, files before the oldest kept snapshot, and files a
coarser level already holds. Deletion runs newest first, so a restore running meanwhile still finds a chain
(and re-plans if a file it planned disappears). Safe to run while 'walrust watch' replicates <name>.

Options:
      --force          carry out the plan (default: dry run, nothing changes)
      --json           print the plan or result as JSON on stdout
      --hourly <n>     hourly snapshots to keep (default 24, or [retention] hourly in walrust.toml)
      --daily <n>      daily snapshots to keep (default 7)
      --weekly <n>     weekly snapshots to keep (default 12)
      --monthly <n>    monthly snapshots to keep (default 12)

${REPLICA_HELP}

Exit codes: 0 ok, 2 usage, 4 credentials rejected, 5 replica unreachable, 7 corrupt file met while
compacting, 10 no backup of <name> in the replica.`;

/** A client that reports every byte it streams: compaction reads its sources through `openLtxFile`. */
class CountingClient extends ReplicaClient {
  readonly #onBytes: (n: number) => void;

  constructor(store: ObjectStore, dbName: string, onBytes: (n: number) => void) {
    super(store, dbName);
    this.#onBytes = onBytes;
  }

  /** Keys already counted by {@link readLtxFile} (an output is read back once after it is written). */
  readonly #counted = new Set<string>();

  /** Small sources are read whole (compactStep): counted once per file. */
  override async readLtxFile(
    level: number,
    minTXID: number,
    maxTXID: number,
    opts?: { preferRecent?: boolean },
  ): Promise<Uint8Array> {
    const bytes = await super.readLtxFile(level, minTXID, maxTXID, opts);
    const key = this.ltxKey(level, minTXID, maxTXID);
    if (!this.#counted.has(key)) {
      this.#counted.add(key);
      this.#onBytes(bytes.byteLength);
    }
    return bytes;
  }

  override async openLtxFile(
    level: number,
    minTXID: number,
    maxTXID: number,
  ): Promise<ReadableStream<Uint8Array>> {
    const onBytes = this.#onBytes;
    return (await super.openLtxFile(level, minTXID, maxTXID)).pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctl) {
          onBytes(chunk.byteLength);
          ctl.enqueue(chunk);
        },
      }),
    );
  }
}

interface CompactionLine {
  level: number;
  key: string;
  minTXID: number;
  maxTXID: number;
  sources: string[];
  reason: string;
}

function fileJson(f: LtxFileInfo, reason: string) {
  return { key: f.key, level: f.level, minTXID: f.minTXID, maxTXID: f.maxTXID, size: f.size, reason };
}

function stepLine(client: ReplicaClient, s: CompactionStep<LtxFileInfo>): CompactionLine {
  return {
    level: s.level,
    key: client.ltxKey(s.level, s.minTXID, s.maxTXID),
    minTXID: s.minTXID,
    maxTXID: s.maxTXID,
    sources: s.sources.map((f) => f.key),
    reason: s.reason,
  };
}

function render(
  io: CliIO,
  json: boolean,
  head: { db: string; replica: string; dryRun: boolean; now: number; policy: RetentionSettings },
  compactions: CompactionLine[],
  r: RetentionResult,
): void {
  const plan = r.plan;
  const all = [...plan.keep, ...plan.delete].map((d) => d.file).filter((f) => f.level <= SNAPSHOT_LEVEL);
  const total = all.reduce((n, f) => n + f.size, 0);
  const keepBytes = plan.keep.reduce((n, d) => n + d.file.size, 0);
  const snapshotsKept = plan.gfs.keep.length;
  if (json) {
    io.stdout(
      JSON.stringify({
        db: head.db,
        replica: head.replica,
        dryRun: head.dryRun,
        now: new Date(head.now).toISOString(),
        retention: head.policy,
        compactions,
        deletions: plan.delete.map((d) => fileJson(d.file, d.reason)),
        snapshots: [
          ...plan.keep.map((d) => ({ ...d, kept: true })),
          ...plan.delete.map((d) => ({ ...d, kept: false })),
        ]
          .filter((d) => d.file.level === SNAPSHOT_LEVEL)
          .sort((a, b) => a.file.maxTXID - b.file.maxTXID)
          .map((d) => ({
            key: d.file.key,
            maxTXID: d.file.maxTXID,
            createdAt: d.file.createdAt.toISOString(),
            kept: d.kept,
            reason: d.reason,
          })),
        restorePoints: {
          count: plan.restorePoints.length,
          snapshots: snapshotsKept,
          latestTXID: plan.latestTXID,
          pitrFromTXID: plan.floorTXID,
        },
        unrestorable: plan.unrestorable,
        totals: {
          files: all.length,
          bytes: total,
          compactions: compactions.length,
          compactedSources: compactions.reduce((n, c) => n + c.sources.length, 0),
          deleteFiles: plan.delete.length,
          deleteBytes: plan.deleteBytes,
          keepFiles: plan.keep.length,
          keepBytes,
          deleted: r.deleted,
          deletedBytes: r.bytes,
          sweptLeftovers: r.swept,
        },
      }) + "\n",
    );
    return;
  }
  const lines: string[] = [];
  const when = new Date(head.now).toISOString();
  lines.push(
    head.dryRun
      ? `Plan for ${head.db} in ${head.replica} (dry run at ${when}):`
      : `Compaction and retention of ${head.db} in ${head.replica} at ${when}:`,
  );
  const verb = (dry: string, done: string) => (head.dryRun ? dry : done).padEnd(10);
  for (const c of compactions) lines.push(`${verb("compact", "compacted")}${c.key}  ${c.reason}`);
  for (const d of plan.delete) lines.push(`${verb("delete", "deleted")}${d.file.key}  ${d.reason}`);
  for (const d of plan.keep) {
    if (d.file.level === SNAPSHOT_LEVEL) lines.push(`${"keep".padEnd(10)}${d.file.key}  ${d.reason}`);
  }
  for (const u of plan.unrestorable) {
    lines.push(`warning: TXID ${u.txid} cannot be restored from this replica: ${u.message}`);
  }
  const p = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  lines.push(
    `Totals: ${p(compactions.length, "compaction")} (${
      p(compactions.reduce((n, c) => n + c.sources.length, 0), "file")
    } merged); ${head.dryRun ? "delete" : "deleted"} ${plan.delete.length} of ${p(all.length, "file")} (${
      formatBytes(plan.deleteBytes)
    }), keep ${p(plan.keep.length, "file")} (${formatBytes(keepBytes)}).`,
  );
  lines.push(
    `Restore points: ${p(plan.restorePoints.length, "point")}: latest TXID ${plan.latestTXID}, ${
      p(snapshotsKept, "snapshot")
    }, point-in-time from TXID ${plan.floorTXID === 0 ? 1 : plan.floorTXID}.`,
  );
  if (r.swept > 0) {
    lines.push(`Removed ${p(r.swept, "leftover file")} of interrupted writes (older than an hour).`);
  }
  if (head.dryRun) lines.push("Dry run: nothing was changed; run again with --force to apply.");
  io.stdout(lines.join("\n") + "\n");
}

/** The `compact` command. */
export const compactCommand: Command = {
  name: "compact",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("compact", args, OPTIONS);
    if (positionals.length !== 1) {
      throw new UsageError("walrust compact: give exactly one database name (see 'walrust compact --help')");
    }
    const settings = await resolveDatabaseSettings(positionals[0], values, io);
    const policy: RetentionSettings = {
      hourly: parseIntFlag("hourly", values.hourly) ?? settings.retention.hourly,
      daily: parseIntFlag("daily", values.daily) ?? settings.retention.daily,
      weekly: parseIntFlag("weekly", values.weekly) ?? settings.retention.weekly,
      monthly: parseIntFlag("monthly", values.monthly) ?? settings.retention.monthly,
    };
    const schedule = compactionSchedule(settings.compactionIntervalsMs);
    const dryRun = values.force !== true;
    const bus = new EventBus();
    const store = openObjectStore(settings.replica, { retry: settings.retry, bus, db: settings.name });
    try {
      const client = new ReplicaClient(store, settings.name);
      const now = Date.now();
      const listed = await listForRetention(client);
      if (listed.length === 0) {
        throw new NotFoundError(
          `no backup of ${settings.name} found in ${client.displayUrl}; check the name with 'walrust list -b <url>'`,
        );
      }
      const head = { db: settings.name, replica: client.displayUrl, dryRun, now, policy };
      let compactions: CompactionLine[];
      let result: RetentionResult;
      if (dryRun) {
        const sim = simulateCompaction(
          listed,
          schedule,
          { now, force: true },
          (level, min, max, createdAt, size) => ({
            level,
            minTXID: min,
            maxTXID: max,
            createdAt,
            size,
            key: client.ltxKey(level, min, max),
          }),
        );
        compactions = sim.steps.map((s) => stepLine(client, s));
        result = await enforceRetention(client, { retention: policy, now, dryRun: true, files: sim.files });
      } else {
        // Progress (terminal only): bytes of the files being merged, against what the plan says it will read.
        const progress = new Progress(io, { label: `compacting ${settings.name}` });
        let merging = client;
        if (progress.active) {
          const plan = simulateCompaction(
            listed,
            schedule,
            { now, force: true },
            (level, min, max, createdAt, size) => ({ level, minTXID: min, maxTXID: max, createdAt, size }),
          );
          const total = plan.steps.reduce((n, st) => n + st.sources.reduce((m, f) => m + f.size, 0), 0);
          let read = 0;
          merging = new CountingClient(store, settings.name, (n) => progress.update(read += n, total));
        }
        let done;
        try {
          done = await runCompaction(merging, schedule, { now, force: true, db: settings.name });
        } finally {
          progress.finish();
        }
        compactions = done.map((c) => ({
          level: c.level,
          key: c.output.key,
          minTXID: c.output.minTXID,
          maxTXID: c.output.maxTXID,
          sources: c.sources.map((f) => f.key),
          reason: c.reason,
        }));
        result = await enforceRetention(client, { retention: policy, now, db: settings.name });
      }
      render(io, values.json === true, head, compactions, result);
      return 0;
    } finally {
      store.close();
    }
  },
};
