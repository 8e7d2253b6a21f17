/**
 * `walrust verify <name> -b <url> [--restore] [--max-age <d>] [--json]`: checks every backup object of a
 * database (see `../verify/verify.ts`) and exits with the code of the most severe problem: 0 ok, 4 auth,
 * 5 unreachable, 6 bucket missing, 7 corruption, 8 gap, 9 stale, 10 nothing found.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import { openReplicaStore, withSignals } from "./restore.ts";
import { loadCliConfig, REPLICA_HELP, REPLICA_OPTIONS } from "../config/cli.ts";
import { resolveProcess } from "../config/resolve.ts";
import { EventBus } from "../observe/events.ts";
import { startWebhooks } from "../observe/webhooks.ts";
import { UsageError } from "../errors.ts";
import type { Logger } from "../observe/log.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { formatDuration, parseDuration } from "../util/duration.ts";
import { formatBytes, Progress } from "../util/progress.ts";
import { verifyReplica, type VerifyReport } from "../verify/verify.ts";

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The text form of a report. */
export function verifyText(r: VerifyReport, now: number = Date.now()): string {
  const lines = [`verify ${r.db} in ${r.replica}`];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(12)} ${v}`);
  row(
    "objects",
    `${r.objects} (${plural(r.files, "LTX file")}, ${formatBytes(r.bytes)}${
      r.otherObjects.length ? `; ${r.otherObjects.length} other` : ""
    })`,
  );
  if (r.levels.length > 0) {
    row(
      "levels",
      r.levels.map((l) =>
        `L${l.level} ${l.minTXID === l.maxTXID ? l.minTXID : `${l.minTXID}-${l.maxTXID}`} (${
          plural(l.files, "file")
        })`
      ).join(", "),
    );
  }
  if (r.files > 0) {
    row(
      "LTX files",
      `${r.filesOk}/${r.files} decoded with valid checksums; ${
        r.sha256Checked > 0 ? `${r.sha256Checked} sha256 metadata matched` : "no sha256 metadata"
      }`,
    );
  }
  if (r.v3) {
    row(
      "v0.3 data",
      `${plural(r.v3.generations.length, "generation")}, ${plural(r.v3.snapshotCount, "snapshot")}, ${
        plural(r.v3.walSegmentCount, "WAL segment")
      } (not checked without --restore)`,
    );
  }
  if (r.newestTxid !== null) {
    row(
      "continuity",
      r.gaps.length === 0
        ? `ok: TXIDs up to ${r.newestTxid} restorable from ${
          r.snapshots > 0 ? `every snapshot (${r.snapshots})` : "TXID 1"
        }`
        : `${plural(r.gaps.length, "gap")}: ${
          r.gaps.map((g) => (g.from === g.to ? `${g.from}` : `${g.from}–${g.to}`)).join(", ")
        }`,
    );
  }
  for (const g of r.levelGaps) {
    row(
      "level hole",
      `L${g.level}: ${g.from === g.to ? `TXID ${g.from}` : `TXIDs ${g.from}–${g.to}`}${
        g.covered ? " (covered by other levels)" : " (not covered)"
      }`,
    );
  }
  if (r.newestAt) {
    row(
      "newest",
      `${r.newestTxid !== null ? `TXID ${r.newestTxid} at ` : ""}${r.newestAt.toISOString()} (${
        formatDuration(Math.max(0, now - r.newestAt.getTime()))
      } ago)`,
    );
  }
  if (r.restore) {
    row(
      "restore",
      `${r.restore.format === "ltx" ? `TXID ${r.restore.txid}` : "Litestream v0.3 data"}${
        r.restore.timestamp ? ` (${r.restore.timestamp.toISOString()})` : ""
      }, ${plural(r.restore.pages, "page")}, integrity_check ok`,
    );
  }
  if (r.problems.length > 0) {
    lines.push("  problems:");
    for (const p of r.problems) lines.push(`    ${p.kind.padEnd(11)} ${p.message}`);
  }
  lines.push(r.ok ? "ok" : `FAILED (exit ${r.exitCode})`);
  return lines.join("\n") + "\n";
}

/** The JSON form of a report (dates as RFC 3339 strings). */
export function verifyJson(r: VerifyReport): unknown {
  return {
    ...r,
    levels: r.levels.map((l) => ({ ...l, newest: l.newest.toISOString() })),
    newestAt: r.newestAt?.toISOString() ?? null,
    restore: r.restore ? { ...r.restore, timestamp: r.restore.timestamp?.toISOString() ?? null } : null,
    v3: r.v3
      ? {
        generations: r.v3.generations.length,
        snapshots: r.v3.snapshotCount,
        walSegments: r.v3.walSegmentCount,
        bytes: r.v3.bytes,
        newest: r.v3.newest?.toISOString() ?? null,
      }
      : null,
  };
}

const HELP = `Usage: walrust verify <name> -b <url> [--restore] [--max-age <duration>] [--json]

Checks every backup object of database <name>: lists all objects, downloads and decodes every LTX file
(file checksum, page index), checks each header against its file name, checks sha256 metadata where
present, and checks TXID continuity from each snapshot to the newest file (reporting the exact missing
TXIDs). Holes inside one level that other levels cover are shown but do not fail.

Options:
      --restore            also restore into a temp file and run PRAGMA integrity_check
      --max-age <d>        fail (exit 9) when the newest backup is older, e.g. 15m, 2h, 1d
      --json               print the report as JSON on stdout (for CI)

${REPLICA_HELP}

Webhooks configured in walrust.toml ([[webhooks]]) receive verify_failed and corruption_detected.

Exit codes: 0 ok, 4 credentials rejected, 5 replica unreachable, 6 bucket not found, 7 corruption,
8 gap, 9 stale (--max-age), 10 nothing found.`;

const OPTIONS = {
  ...REPLICA_OPTIONS,
  restore: { type: "boolean" },
  "max-age": { type: "string" },
  json: { type: "boolean" },
} as const;

/** The report is the command's output; log lines would only repeat it on stderr. */
const SILENT: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => SILENT,
};

/** The `verify` command. */
export const verifyCommand: Command = {
  name: "verify",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("verify", args, OPTIONS);
    if (positionals.length !== 1) {
      throw new UsageError("walrust verify: give exactly one database name (see 'walrust verify --help')");
    }
    let maxAgeMs: number | undefined;
    if (values["max-age"] !== undefined) {
      const ms = parseDuration(values["max-age"]);
      if (ms === null || ms <= 0) {
        throw new UsageError(`--max-age: expected a duration like 15m, 2h or 1d, got '${values["max-age"]}'`);
      }
      maxAgeMs = ms;
    }
    const store = await openReplicaStore(values, io);
    const progress = new Progress(io, { label: `verifying ${positionals[0]}` });
    // [[webhooks]] in walrust.toml get verify_failed / corruption_detected from a standalone run too (a CI job).
    const hooks = resolveProcess(await loadCliConfig(values, io)).webhooks;
    const bus = new EventBus();
    const webhooks = hooks.length > 0 ? startWebhooks(bus, hooks) : null;
    try {
      const client = new ReplicaClient(store, positionals[0]);
      const report = await withSignals((signal) =>
        verifyReplica(client, {
          restore: values.restore === true,
          maxAgeMs,
          signal,
          bus,
          logger: SILENT,
          onProgress: (done, total) => progress.update(done, total),
        })
      );
      progress.finish();
      io.stdout(values.json ? JSON.stringify(verifyJson(report)) + "\n" : verifyText(report));
      if (!report.ok && !values.json) io.stderr(`walrust: ${report.message}\n`);
      return report.exitCode;
    } finally {
      progress.finish();
      store.close();
      await webhooks?.close();
    }
  },
};
