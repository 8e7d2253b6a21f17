/**
 * Verifies one database's backups in a replica, end to end:
 * - lists every object under the database's prefix (LTX files, v0.3 data, anything else);
 * - downloads and decodes every LTX file (file checksum, page index, trailer) and checks its header against its
 *   name and level (level 9 holds only snapshots);
 * - checks the SHA-256 stored as S3 metadata, where present;
 * - checks TXID continuity from each snapshot to the newest file across levels 0…8, reporting the exact
 *   missing ranges, and reports holes inside each level (informational when another level covers them);
 * - optionally restores into a temp file and runs `PRAGMA integrity_check` (`restore: true`);
 * - optionally fails when the newest backup is older than `maxAgeMs`.
 *
 * {@link verifyReplica} never throws for a replica problem: it returns a report whose `exitCode` follows the
 * CLI table (0 ok, 4 auth, 5 unreachable, 6 bucket missing, 7 corruption, 8 gap, 9 stale, 10 nothing found)
 * and emits `verify` (always), `verify_failed` and `corruption_detected` events on the optional bus, so
 * `watch` can run it on an interval and webhooks deliver the failures.
 *
 * @module
 */

import { CorruptionError, ExitCode, InterruptedError, messageOf, WalrustError } from "../errors.ts";
import { verifyLtx } from "../ltx/decoder.ts";
import { describeV3, type V3Description } from "../litestream/v3_restore.ts";
import type { EventBus } from "../observe/events.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { restoreDatabase } from "../restore/restore.ts";
import { SNAPSHOT_LEVEL } from "../restore/plan.ts";
import { SHA256_METADATA_KEY } from "../storage/digest.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { formatDuration } from "../util/duration.ts";
import { nodeCrypto } from "../util/node_crypto.ts";

/** One level of one database. */
export interface LevelSummary {
  /** Level (0 raw, 1–8 compacted, 9 snapshots). */
  level: number;
  /** Lowest MinTXID of the level's files. */
  minTXID: number;
  /** Highest MaxTXID of the level's files. */
  maxTXID: number;
  /** Number of files. */
  files: number;
  /** Total bytes. */
  bytes: number;
  /** Newest file's created-at time. */
  newest: Date;
}

/** Groups files by level (ascending), with range, count, bytes and newest time. */
export function summariseLevels(files: readonly LtxFileInfo[]): LevelSummary[] {
  const by = new Map<number, LevelSummary>();
  for (const f of files) {
    const s = by.get(f.level);
    if (!s) {
      by.set(f.level, {
        level: f.level,
        minTXID: f.minTXID,
        maxTXID: f.maxTXID,
        files: 1,
        bytes: f.size,
        newest: f.createdAt,
      });
      continue;
    }
    s.minTXID = Math.min(s.minTXID, f.minTXID);
    s.maxTXID = Math.max(s.maxTXID, f.maxTXID);
    s.files++;
    s.bytes += f.size;
    if (f.createdAt > s.newest) s.newest = f.createdAt;
  }
  return [...by.values()].sort((a, b) => a.level - b.level);
}

/** A TXID range, inclusive. */
export interface TxidRange {
  /** First TXID. */
  from: number;
  /** Last TXID. */
  to: number;
}

/** Kinds of problem, in decreasing severity for the exit code. */
export type ProblemKind = "unreachable" | "corruption" | "gap" | "stale" | "not_found";

/** One thing wrong with the backups. */
export interface VerifyProblem {
  /** What kind of problem. */
  kind: ProblemKind;
  /** One line naming the object or range and what is wrong. */
  message: string;
  /** The object concerned, when there is one. */
  object?: string;
  /** Missing TXIDs, for gaps. */
  range?: TxidRange;
}

/** A hole inside one level. */
export interface LevelGap extends TxidRange {
  /** Level with the hole. */
  level: number;
  /** Whether files of other levels cover every missing TXID (then restores are unaffected). */
  covered: boolean;
}

/** The result of {@link verifyReplica}. */
export interface VerifyReport {
  /** Database name. */
  db: string;
  /** Where its backups are. */
  replica: string;
  /** Whether every check passed. */
  ok: boolean;
  /** Exit code for the CLI (see the module doc). */
  exitCode: number;
  /** One-line summary. */
  message: string;
  /** Objects under the database's prefix. */
  objects: number;
  /** LTX files. */
  files: number;
  /** Bytes of all LTX files. */
  bytes: number;
  /** LTX files downloaded and decoded without error. */
  filesOk: number;
  /** LTX files whose stored SHA-256 was compared. */
  sha256Checked: number;
  /** Keys under the prefix that are neither LTX files nor v0.3 data (temp files, leases…), for information. */
  otherObjects: string[];
  /** Snapshots (level 9 files). */
  snapshots: number;
  /** Per level: TXID range, files, bytes, newest time. */
  levels: LevelSummary[];
  /** Newest TXID in any file, or null. */
  newestTxid: number | null;
  /** Newest file's created-at time, or null. */
  newestAt: Date | null;
  /** Missing TXID ranges that break a restore (from some snapshot to the newest file). */
  gaps: TxidRange[];
  /** Holes inside individual levels. */
  levelGaps: LevelGap[];
  /** Everything wrong, most severe first. */
  problems: VerifyProblem[];
  /** The test restore, when requested and successful. */
  restore:
    | { txid: number; timestamp: Date | null; pages: number; bytes: number; format: "ltx" | "v3" }
    | null;
  /** Litestream v0.3 data of this database, if any. */
  v3: V3Description | null;
  /** Wall time of the verification. */
  durationMs: number;
}

/** Options of {@link verifyReplica}. */
export interface VerifyOptions {
  /** Also restore into a temp file and run `PRAGMA integrity_check`. */
  restore?: boolean;
  /** Fail (exit 9) when the newest backup is older than this many ms. */
  maxAgeMs?: number;
  /** Bus for `verify`, `verify_failed` and `corruption_detected` events. */
  bus?: EventBus;
  /** Clock (ms since epoch; tests). */
  now?: () => number;
  /** Download progress: (bytes done, bytes total). */
  onProgress?: (bytes: number, total: number) => void;
  /** Files downloaded at once (default 4). */
  concurrency?: number;
  /** Directory for the test restore (default: a fresh system temp directory). */
  tempDir?: string;
  /** Stops early (the report then says unreachable/interrupted through the thrown error). */
  signal?: AbortSignal;
  /** Logger (default: the process logger). */
  logger?: Logger;
}

/**
 * TXIDs in `[from, to]` not covered by any of `files`' ranges, as sorted disjoint ranges.
 */
export function missingRanges(
  files: readonly { minTXID: number; maxTXID: number }[],
  from: number,
  to: number,
): TxidRange[] {
  const out: TxidRange[] = [];
  if (from > to) return out;
  const sorted = [...files].sort((a, b) => a.minTXID - b.minTXID || a.maxTXID - b.maxTXID);
  let next = from; // first TXID not yet known to be covered
  for (const f of sorted) {
    if (next > to) break;
    if (f.maxTXID < next) continue;
    if (f.minTXID > next) {
      out.push({ from: next, to: Math.min(f.minTXID - 1, to) });
    }
    next = Math.max(next, f.maxTXID + 1);
  }
  if (next <= to) out.push({ from: next, to });
  return out;
}

function rangeText(r: TxidRange): string {
  return r.from === r.to ? `TXID ${r.from}` : `TXIDs ${r.from}–${r.to}`;
}

/**
 * Continuity of the chain: for each snapshot (or, without any, from TXID 1), the TXIDs up to the newest file
 * that no file of levels 0…8 covers. Returns the distinct ranges, each with the oldest snapshot it breaks.
 */
export function chainGaps(files: readonly LtxFileInfo[]): { range: TxidRange; after: string }[] {
  if (files.length === 0) return [];
  const newest = Math.max(...files.map((f) => f.maxTXID));
  const snapshots = files.filter((f) => f.level === SNAPSHOT_LEVEL).sort((a, b) => a.maxTXID - b.maxTXID);
  const incr = files.filter((f) => f.level !== SNAPSHOT_LEVEL);
  const starts = snapshots.length > 0
    ? snapshots.map((s) => ({ from: s.maxTXID + 1, label: `snapshot 1-${s.maxTXID}` }))
    : [{ from: 1, label: "TXID 1 (there is no snapshot)" }];
  const seen = new Map<string, { range: TxidRange; after: string }>();
  for (const s of starts) {
    for (const r of missingRanges(incr, s.from, newest)) {
      const k = `${r.from}-${r.to}`;
      if (!seen.has(k)) seen.set(k, { range: r, after: s.label });
    }
  }
  return [...seen.values()].sort((a, b) => a.range.from - b.range.from);
}

/** Holes inside each level 0…8, and whether other levels cover them. */
export function levelGaps(files: readonly LtxFileInfo[]): LevelGap[] {
  const out: LevelGap[] = [];
  const levels = [...new Set(files.map((f) => f.level))].filter((l) => l !== SNAPSHOT_LEVEL).sort((a, b) =>
    a - b
  );
  for (const level of levels) {
    const own = files.filter((f) => f.level === level);
    const lo = Math.min(...own.map((f) => f.minTXID));
    const hi = Math.max(...own.map((f) => f.maxTXID));
    const others = files.filter((f) => f.level !== level);
    for (const r of missingRanges(own, lo, hi)) {
      out.push({ level, ...r, covered: missingRanges(others, r.from, r.to).length === 0 });
    }
  }
  return out;
}

const SEVERITY: ProblemKind[] = ["unreachable", "corruption", "gap", "stale", "not_found"];
const EXIT: Record<Exclude<ProblemKind, "unreachable">, number> = {
  corruption: ExitCode.CORRUPTION,
  gap: ExitCode.GAP,
  stale: ExitCode.STALE,
  not_found: ExitCode.NOT_FOUND,
};

/** Maps an error met while verifying to a problem kind (null: not a replica problem, rethrow). */
function kindOf(err: unknown): ProblemKind | null {
  if (!(err instanceof WalrustError)) return null;
  switch (err.errorClass) {
    case "corruption":
      return "corruption";
    case "gap":
      return "gap";
    case "not_found":
      return "not_found";
    case "connection":
    case "auth":
    case "bucket_not_found":
      return "unreachable";
    default:
      return null;
  }
}

/** Runs `fn` over `items`, `limit` at a time; after the first failure no new item starts, then it rethrows. */
async function mapLimit<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker),
  );
  for (const r of results) if (r.status === "rejected") throw r.reason;
}

/** Verifies the backups of `client`'s database (see the module doc). */
export async function verifyReplica(client: ReplicaClient, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now();
  const now = opts.now ?? Date.now;
  const db = client.dbName === "" ? client.displayUrl : client.dbName;
  const logger = (opts.logger ?? rootLog).child({ db });
  const problems: VerifyProblem[] = [];
  let unreachableCode: number | null = null;
  const report: VerifyReport = {
    db,
    replica: client.displayUrl,
    ok: false,
    exitCode: 0,
    message: "",
    objects: 0,
    files: 0,
    bytes: 0,
    filesOk: 0,
    sha256Checked: 0,
    otherObjects: [],
    snapshots: 0,
    levels: [],
    newestTxid: null,
    newestAt: null,
    gaps: [],
    levelGaps: [],
    problems,
    restore: null,
    v3: null,
    durationMs: 0,
  };

  try {
    // 1. Every object under the prefix, and the LTX files among them.
    const prefix = client.dbName === "" ? "" : `${client.dbName}/`;
    const files = await client.allLtxFiles();
    const ltxKeys = new Set(files.map((f) => f.key));
    const v3Prefix = `${prefix}generations/`;
    for await (const o of client.store.list(prefix)) {
      report.objects++;
      if (!ltxKeys.has(o.key) && !o.key.startsWith(v3Prefix)) report.otherObjects.push(o.key);
    }
    const v3 = await describeV3(client.store, client.dbName);
    report.v3 = v3.generations.length > 0 ? v3 : null;
    report.files = files.length;
    report.bytes = files.reduce((n, f) => n + f.size, 0);
    report.snapshots = files.filter((f) => f.level === SNAPSHOT_LEVEL).length;
    report.levels = summariseLevels(files);
    if (files.length > 0) {
      report.newestTxid = Math.max(...files.map((f) => f.maxTXID));
      report.newestAt = new Date(Math.max(...files.map((f) => f.createdAt.getTime())));
    } else if (report.v3?.newest) {
      report.newestAt = report.v3.newest;
    }
    if (files.length === 0 && !report.v3) {
      problems.push({ kind: "not_found", message: `no backup of ${db} found in ${client.displayUrl}` });
    }

    // 2. Every LTX file: download, decode, checksum, header vs name, SHA-256 metadata.
    let done = 0;
    const total = report.bytes;
    await mapLimit(files, opts.concurrency ?? 4, async (f) => {
      try {
        await checkFile(
          client,
          f,
          (n) => {
            done += n;
            opts.onProgress?.(done, total);
          },
          opts.signal,
          () => report.sha256Checked++,
        );
        report.filesOk++;
      } catch (err) {
        const kind = kindOf(err);
        if (kind === null) throw err;
        if (kind === "unreachable") throw err;
        problems.push({ kind, message: messageOf(err), object: f.key });
        if (kind === "corruption") {
          opts.bus?.emit({ type: "corruption_detected", db, object: f.key, error: messageOf(err) });
        }
      }
    });

    // 3. Continuity.
    for (const g of chainGaps(files)) {
      report.gaps.push(g.range);
      problems.push({
        kind: "gap",
        message: `${
          rangeText(g.range)
        } missing from the backup chain (after ${g.after}, up to TXID ${report.newestTxid})`,
        range: g.range,
      });
    }
    report.levelGaps = levelGaps(files);

    // 4. Age.
    if (opts.maxAgeMs !== undefined && report.newestAt) {
      const age = now() - report.newestAt.getTime();
      if (age > opts.maxAgeMs) {
        problems.push({
          kind: "stale",
          message: `newest backup is ${
            formatDuration(age)
          } old (${report.newestAt.toISOString()}), more than ${formatDuration(opts.maxAgeMs)}`,
        });
      }
    }

    // 5. A real restore (only worth it when the files themselves are sound and complete).
    if (opts.restore && problems.every((p) => p.kind === "stale")) {
      const dir = opts.tempDir ?? await Deno.makeTempDir({ prefix: "walrust-verify-" });
      const output = `${dir}/verify-${crypto.randomUUID()}.db`;
      try {
        const r = await restoreDatabase(client, {
          output,
          integrityCheck: true,
          signal: opts.signal,
          logger,
        });
        report.restore = {
          txid: r.txid,
          timestamp: r.timestamp,
          pages: r.pages,
          bytes: r.bytes,
          format: r.format,
        };
      } catch (err) {
        const kind = kindOf(err);
        if (kind === null || kind === "unreachable") throw err;
        problems.push({ kind, message: `test restore failed: ${messageOf(err)}` });
      } finally {
        for (const p of [output, `${output}-wal`, `${output}-shm`]) await Deno.remove(p).catch(() => {});
        if (!opts.tempDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
  } catch (err) {
    const kind = kindOf(err);
    if (kind !== "unreachable") throw err;
    unreachableCode = (err as WalrustError).exitCode;
    problems.unshift({ kind, message: messageOf(err) });
  }

  // Deterministic order whatever the download concurrency: severity, then object, then range.
  problems.sort((a, b) =>
    SEVERITY.indexOf(a.kind) - SEVERITY.indexOf(b.kind) ||
    (a.object ?? "").localeCompare(b.object ?? "") ||
    (a.range?.from ?? 0) - (b.range?.from ?? 0)
  );
  const worst = problems[0];
  report.ok = worst === undefined;
  report.exitCode = worst === undefined
    ? ExitCode.OK
    : worst.kind === "unreachable"
    ? unreachableCode ?? ExitCode.CONNECTION
    : EXIT[worst.kind];
  report.message = worst === undefined
    ? `${db}: ${report.files} files verified${
      report.newestTxid !== null ? `, TXID 1–${report.newestTxid} restorable` : ""
    }${report.restore ? `, test restore reached TXID ${report.restore.txid}` : ""}`
    : `${db}: ${worst.message}${
      problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})` : ""
    }`;
  report.durationMs = Math.round(performance.now() - started);

  opts.bus?.emit({
    type: "verify",
    db,
    ok: report.ok,
    exitCode: report.exitCode,
    message: report.message,
    ...(report.newestTxid !== null ? { txid: report.newestTxid } : {}),
  });
  if (!report.ok) {
    opts.bus?.emit({ type: "verify_failed", db, exitCode: report.exitCode, message: report.message });
    logger.warn("verify failed", { exit_code: report.exitCode, problem: report.message });
  } else {
    logger.info("verify ok", { files: report.files, txid: report.newestTxid ?? undefined });
  }
  return report;
}

/** Downloads and decodes one LTX file, checking name, level, checksum and SHA-256 metadata. */
async function checkFile(
  client: ReplicaClient,
  f: LtxFileInfo,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
  onSha: () => void,
): Promise<void> {
  const head = client.store.kind === "s3" ? await client.store.head(f.key) : null;
  const expectedSha = head?.metadata[SHA256_METADATA_KEY];
  const hash = expectedSha ? (await nodeCrypto()).createHash("sha256") : null;
  let size = 0;
  const stream = await client.openLtxFile(f.level, f.minTXID, f.maxTXID);
  const tap = async function* (): AsyncGenerator<Uint8Array> {
    for await (const chunk of stream) {
      if (signal?.aborted) throw new InterruptedError("verify interrupted");
      size += chunk.byteLength;
      hash?.update(chunk);
      onBytes(chunk.byteLength);
      yield chunk;
    }
  };
  const { header } = await verifyLtx(tap(), f.key);
  if (header.minTXID !== f.minTXID || header.maxTXID !== f.maxTXID) {
    throw new CorruptionError(
      `header says TXIDs ${header.minTXID}–${header.maxTXID} but the name says ${f.minTXID}–${f.maxTXID}`,
      { object: f.key, offset: 16 },
    );
  }
  if (f.level === SNAPSHOT_LEVEL && header.minTXID !== 1) {
    throw new CorruptionError(
      `level ${SNAPSHOT_LEVEL} holds a file that is not a snapshot (min TXID ${header.minTXID})`,
      {
        object: f.key,
      },
    );
  }
  if (size !== f.size) {
    throw new CorruptionError(`downloaded ${size} bytes but the listing says ${f.size}`, { object: f.key });
  }
  if (hash && expectedSha) {
    const actual = hash.digest("hex");
    if (actual !== expectedSha.toLowerCase()) {
      throw new CorruptionError(`sha256 ${actual} differs from the stored sha256 ${expectedSha}`, {
        object: f.key,
      });
    }
    onSha();
  }
}
