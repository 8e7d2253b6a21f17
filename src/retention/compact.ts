/**
 * Level compaction, as Litestream v0.5 (reference digest §3.1): level N (1…8) periodically merges the files
 * of level N−1 that it does not hold yet into one `<min>-<max>.ltx` file. Defaults: L1 every 30 s, L2 every
 * 5 min, L3 every hour (`compactionIntervalsMs`); level 9 holds the snapshots, written by `watch`.
 *
 * Schedule (Litestream `Store.CompactDB`): compaction of level N is aligned to the wall clock —
 * `prev = now` truncated to the interval — and skipped when the newest file of level N was created after
 * `prev` (that slot is done) or when level N−1 has nothing new. The `compact` command passes `force` to skip
 * the clock check and merge whatever is new right now.
 *
 * Selection (Litestream `Compactor.Compact`): `seek` = the highest MaxTXID in level N, plus 1; the sources
 * are the level N−1 files with MinTXID ≥ seek, in filename order. Unlike Litestream, one output never spans a
 * gap between sources: the sources stop at the first missing TXID (the rest is merged on a later round, so a
 * gap in level N−1 becomes a gap between two level-N files instead of a compaction that fails forever), and
 * at most {@link MAX_SOURCES_PER_FILE} files go into one output so a long backlog never opens thousands of
 * downloads at once.
 *
 * Merge: the streaming k-way merge of `../ltx/compactor.ts` (newest page wins, pages past the last commit
 * dropped, every input's checksum verified). The output header's timestamp is the last input's, and so is the
 * file's created-at (mtime / `litestream-timestamp`), so a restore by time only uses a compacted file when
 * every transaction in it happened before the target time. The output is written, read back and compared
 * byte for byte before anyone can rely on it; sources are never deleted here (that is retention's job, in
 * `plan.ts`, once the output covers them).
 *
 * @module
 */

import { CorruptionError, NotFoundError, UsageError } from "../errors.ts";
import { compactLtx } from "../ltx/compactor.ts";
import { LtxDecoder, verifyLtx } from "../ltx/decoder.ts";
import type { ByteSink } from "../ltx/encoder.ts";
import { Crc64 } from "../ltx/checksum.ts";
import type { Hash } from "node:crypto";
import { writeAll } from "../util/fs.ts";
import { nodeCrypto } from "../util/node_crypto.ts";
import { formatLtxFilename } from "../ltx/types.ts";
import type { EventBus } from "../observe/events.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { type PlanFile, SNAPSHOT_LEVEL } from "../restore/plan.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { formatDuration } from "../util/duration.ts";

/** Most source files merged into one output. */
export const MAX_SOURCES_PER_FILE = 256;

/** Most outputs per level in one {@link runCompaction} call (a backlog is worked off over several calls). */
export const MAX_ROUNDS_PER_LEVEL = 64;

/** Sources up to this size are read whole rather than streamed. */
const SMALL_SOURCE_BYTES = 1 << 20;

/** One compaction level and its interval. */
export interface LevelSchedule {
  /** Destination level (1…8). */
  level: number;
  /** Interval, ms (> 0). */
  intervalMs: number;
}

/**
 * The levels for `compactionIntervalsMs` (`[30 s, 5 min, 1 h]` → L1, L2, L3). UsageError for more than 8
 * levels or a non-positive interval.
 */
export function compactionSchedule(intervalsMs: readonly number[]): LevelSchedule[] {
  if (intervalsMs.length > SNAPSHOT_LEVEL - 1) {
    throw new UsageError(
      `at most ${
        SNAPSHOT_LEVEL - 1
      } compaction levels are possible (level 9 holds snapshots), got ${intervalsMs.length}`,
    );
  }
  return intervalsMs.map((ms, i) => {
    if (!Number.isFinite(ms) || ms <= 0) {
      throw new UsageError(`compaction interval of level ${i + 1} must be > 0, got ${ms} ms`);
    }
    return { level: i + 1, intervalMs: ms };
  });
}

/** One planned compaction: which files of level `level − 1` become which file of `level`. */
export interface CompactionStep<F extends PlanFile> {
  /** Destination level. */
  level: number;
  /** Source files (level − 1), contiguous, in TXID order. */
  sources: F[];
  /** The output's MinTXID (the first source's). */
  minTXID: number;
  /** The output's MaxTXID (the last source's). */
  maxTXID: number;
  /** The output's expected created-at: the last source's. */
  createdAt: Date;
  /** Why, in one line. */
  reason: string;
}

/** Why a level was not compacted. */
export interface CompactionSkip {
  /** Destination level. */
  level: number;
  /** `too_early`: this interval's slot is done; `nothing_new`: no new source files. */
  skipped: "too_early" | "nothing_new";
  /** One line. */
  reason: string;
}

/** Options of {@link planLevelCompaction}. */
export interface PlanCompactionOptions {
  /** The level's interval, ms. */
  intervalMs: number;
  /** Current time, ms since the epoch. */
  now: number;
  /** Ignore the wall-clock alignment (the `compact` command). */
  force?: boolean;
  /** Most sources in one output (default {@link MAX_SOURCES_PER_FILE}). */
  maxSources?: number;
}

function txids(min: number, max: number): string {
  return min === max ? `TXID ${min}` : `TXIDs ${min}–${max}`;
}

/** The start of the wall-clock slot holding `now` (Go's `time.Truncate(interval)`, from the epoch). */
export function slotStart(now: number, intervalMs: number): number {
  return now - (((now % intervalMs) + intervalMs) % intervalMs);
}

/** The file of `files` with the greatest MaxTXID (Litestream `MaxLTXFileInfo`), or undefined. */
function maxFile<F extends PlanFile>(files: readonly F[]): F | undefined {
  let best: F | undefined;
  for (const f of files) if (!best || f.maxTXID > best.maxTXID) best = f;
  return best;
}

/**
 * Decides the next compaction into `level` from the listings of level − 1 (`src`) and `level` (`dst`): the
 * step, or why there is none (see the module doc). Pure.
 */
export function planLevelCompaction<F extends PlanFile>(
  level: number,
  src: readonly F[],
  dst: readonly PlanFile[],
  opts: PlanCompactionOptions,
): CompactionStep<F> | CompactionSkip {
  const dstMax = maxFile(dst);
  if (!opts.force && dstMax) {
    const prev = slotStart(opts.now, opts.intervalMs);
    if (dstMax.createdAt.getTime() > prev) {
      return {
        level,
        skipped: "too_early",
        reason: `level ${level} already holds data up to ${dstMax.createdAt.toISOString()}, after this ${
          formatDuration(opts.intervalMs)
        } slot began (${new Date(prev).toISOString()})`,
      };
    }
  }
  const seek = (dstMax?.maxTXID ?? 0) + 1;
  const candidates = src.filter((f) => f.minTXID >= seek).sort((a, b) =>
    a.minTXID - b.minTXID || a.maxTXID - b.maxTXID
  );
  const limit = Math.max(1, opts.maxSources ?? MAX_SOURCES_PER_FILE);
  const sources: F[] = [];
  for (const f of candidates) {
    const prev = sources[sources.length - 1];
    if (prev) {
      if (f.minTXID > prev.maxTXID + 1) break; // a gap: merge up to it now, the rest on a later round
      if (f.maxTXID <= prev.maxTXID) continue; // contained in the previous file: adds nothing
    }
    sources.push(f);
    if (sources.length >= limit) break;
  }
  if (sources.length === 0) {
    return {
      level,
      skipped: "nothing_new",
      reason: dstMax
        ? `level ${level - 1} has nothing after TXID ${dstMax.maxTXID}`
        : `level ${level - 1} has no files`,
    };
  }
  const first = sources[0];
  const last = sources[sources.length - 1];
  return {
    level,
    sources,
    minTXID: first.minTXID,
    maxTXID: last.maxTXID,
    createdAt: last.createdAt,
    reason: `merge ${sources.length} level-${level - 1} file${sources.length === 1 ? "" : "s"} (${
      txids(first.minTXID, last.maxTXID)
    }) ${
      dstMax ? `written after level ${level} reached TXID ${dstMax.maxTXID}` : `into empty level ${level}`
    }`,
  };
}

/**
 * Simulates {@link runCompaction} on a listing, for dry runs: every level in order, each output added to the
 * listing (via `makeFile`, size = the sum of its sources as an upper bound) so the next level and the
 * retention plan see it. Returns the steps and the resulting listing.
 */
export function simulateCompaction<F extends PlanFile & { size: number }>(
  files: readonly F[],
  schedule: readonly LevelSchedule[],
  opts: { now: number; force?: boolean; maxSources?: number; maxRounds?: number },
  makeFile: (level: number, minTXID: number, maxTXID: number, createdAt: Date, size: number) => F,
): { steps: CompactionStep<F>[]; files: F[] } {
  const all = [...files];
  const steps: CompactionStep<F>[] = [];
  for (const { level, intervalMs } of schedule) {
    for (let round = 0; round < (opts.maxRounds ?? MAX_ROUNDS_PER_LEVEL); round++) {
      const step = planLevelCompaction(
        level,
        all.filter((f) => f.level === level - 1),
        all.filter((f) => f.level === level),
        { ...opts, intervalMs },
      );
      if ("skipped" in step) break;
      steps.push(step);
      const size = step.sources.reduce((n, f) => n + f.size, 0);
      all.push(makeFile(level, step.minTXID, step.maxTXID, step.createdAt, size));
    }
  }
  return { steps, files: all };
}

/** What one compaction did. */
export interface CompactionResult {
  /** Destination level. */
  level: number;
  /** The files merged. */
  sources: LtxFileInfo[];
  /** The file written. */
  output: LtxFileInfo;
  /** Why (from the step). */
  reason: string;
  /** Wall time, seconds. */
  seconds: number;
}

/** Options of {@link compactStep} and {@link runCompaction}. */
export interface CompactOptions {
  /** Bus for `compaction` events. */
  bus?: EventBus;
  /** Database name for events and logs (default: the client's). */
  db?: string;
  /** Logger (default: the process logger). */
  logger?: Logger;
  /** Outputs above this many bytes are merged into a temp file (default {@link SPILL_BYTES}). */
  spillBytes?: number;
  /** Directory of those temp files (default: the system's temp directory). */
  spillDir?: string;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Outputs larger than this are moved from memory to a temp file while they are merged, and uploaded and
 * checked from there ({@link SpillSink}): an hour of a busy large database merged into level 3 must not need
 * its size in memory (twice: the output and its read-back).
 */
export const SPILL_BYTES = 8 << 20;

/**
 * The merge's output: chunks in memory up to `limit` bytes, then everything in a temp file in `dir` (the
 * system's temp directory by default), hashed (SHA-256, CRC-64) as it is written, fsynced at the end (a
 * directory replica may link it).
 */
class SpillSink implements ByteSink {
  readonly #limit: number;
  readonly #dir: string | undefined;
  #chunks: Uint8Array[] = [];
  #file: Deno.FsFile | null = null;
  #sha: Hash | null = null;
  readonly #crc = new Crc64();
  /** The temp file, once the output spilled. */
  path: string | null = null;
  /** Bytes written so far. */
  size = 0;

  constructor(limit: number, dir?: string) {
    this.#limit = limit;
    this.#dir = dir;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.size += chunk.byteLength;
    if (this.#file) return await this.#append(chunk);
    this.#chunks.push(chunk);
    if (this.size <= this.#limit) return;
    this.path = await Deno.makeTempFile({ dir: this.#dir, prefix: ".walrust-compact-", suffix: ".tmp" });
    // A directory replica may link this very file: give it the mode of every other replica file.
    await Deno.chmod(this.path, 0o644);
    this.#file = await Deno.open(this.path, { write: true });
    this.#sha = (await nodeCrypto()).createHash("sha256");
    const held = this.#chunks;
    this.#chunks = [];
    for (const c of held) await this.#append(c);
  }

  async #append(chunk: Uint8Array): Promise<void> {
    this.#sha!.update(chunk);
    this.#crc.update(chunk);
    await writeAll(this.#file!, chunk);
  }

  /** The output: its bytes when it stayed in memory, else the (fsynced, closed) file and its digests. */
  async finish(): Promise<{ bytes: Uint8Array } | { path: string; sha256: string; crc64: bigint }> {
    if (!this.#file) return { bytes: concat(this.#chunks, this.size) };
    await this.#file.sync();
    this.#file.close();
    this.#file = null;
    return { path: this.path!, sha256: this.#sha!.digest("hex"), crc64: this.#crc.digest() };
  }

  /** Removes the temp file, if any. */
  async discard(): Promise<void> {
    try {
      this.#file?.close();
    } catch { /* already closed */ }
    this.#file = null;
    if (this.path) await Deno.remove(this.path).catch(() => {});
  }
}

/**
 * Reads the object back as a stream and checks it against the local file byte for byte and as an LTX file
 * (CorruptionError naming `key` on a difference); memory does not grow with the file.
 */
async function checkReadBack(
  client: ReplicaClient,
  step: CompactionStep<LtxFileInfo>,
  path: string,
  key: string,
) {
  const local = await Deno.open(path, { read: true });
  const reader = (await client.openLtxFile(step.level, step.minTXID, step.maxTXID)).getReader();
  let offset = 0;
  const compared = async function* (): AsyncGenerator<Uint8Array> {
    while (true) {
      const r = await reader.read();
      if (r.done) break;
      const want = new Uint8Array(r.value.byteLength);
      let got = 0;
      while (got < want.length) {
        const n = await local.read(want.subarray(got));
        if (n === null) break;
        got += n;
      }
      if (got !== want.length || !sameBytes(want, r.value)) {
        throw new CorruptionError(`read back different bytes than were written (near byte ${offset})`, {
          object: key,
        });
      }
      offset += got;
      yield r.value;
    }
  };
  try {
    const chunks = compared();
    await verifyLtx(chunks, key);
    for await (const _ of chunks) { /* the rest after the trailer is compared too */ }
    if (offset !== (await local.stat()).size) {
      throw new CorruptionError(`read back ${offset} bytes, ${(await local.stat()).size} were written`, {
        object: key,
      });
    }
  } finally {
    local.close();
    await reader.cancel().catch(() => {});
  }
}

/**
 * Performs one step: streams the sources through the merge (into memory, or into a temp file above
 * {@link SPILL_BYTES}), writes the output, reads it back and compares it byte for byte (a mismatch or a
 * corrupt read deletes the output again and throws CorruptionError). A source that vanished (another
 * process's retention) surfaces as NotFoundError; nothing is written then.
 */
export async function compactStep(
  client: ReplicaClient,
  step: CompactionStep<LtxFileInfo>,
  opts: CompactOptions = {},
): Promise<CompactionResult> {
  const started = performance.now();
  const readers = new Set<ReadableStreamDefaultReader<Uint8Array>>();
  async function* chunksOf(f: LtxFileInfo): AsyncGenerator<Uint8Array> {
    // Small files (every L0 file, typically) in one read: a stream per file costs more than its bytes. An L0
    // file this process uploaded moments ago comes from memory (the merge verifies it like any input).
    if (f.size <= SMALL_SOURCE_BYTES) {
      yield await client.readLtxFile(f.level, f.minTXID, f.maxTXID, { preferRecent: true });
      return;
    }
    const reader = (await client.openLtxFile(f.level, f.minTXID, f.maxTXID)).getReader();
    readers.add(reader);
    try {
      while (true) {
        const r = await reader.read();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      readers.delete(reader);
      await reader.cancel().catch(() => {});
    }
  }
  const sink = new SpillSink(opts.spillBytes ?? SPILL_BYTES, opts.spillDir);
  try {
    return await mergeAndWrite(client, step, opts, sink, chunksOf, readers, started);
  } finally {
    await sink.discard();
  }
}

/** {@link compactStep} once its sink exists: merge, write, read back (the caller discards the sink). */
async function mergeAndWrite(
  client: ReplicaClient,
  step: CompactionStep<LtxFileInfo>,
  opts: CompactOptions,
  sink: SpillSink,
  chunksOf: (f: LtxFileInfo) => AsyncGenerator<Uint8Array>,
  readers: Set<ReadableStreamDefaultReader<Uint8Array>>,
  started: number,
): Promise<CompactionResult> {
  let merged: Awaited<ReturnType<SpillSink["finish"]>>;
  let timestamp: number;
  try {
    const { header } = await compactLtx(step.sources.map((f) => new LtxDecoder(chunksOf(f), f.key)), sink);
    if (header.minTXID !== step.minTXID || header.maxTXID !== step.maxTXID) {
      throw new CorruptionError(
        `merged headers say ${txids(header.minTXID, header.maxTXID)} but the file names say ${
          txids(step.minTXID, step.maxTXID)
        }`,
        { object: step.sources.map((f) => f.key).join(", ") },
      );
    }
    merged = await sink.finish();
    timestamp = header.timestamp;
  } finally {
    // A failed merge leaves downloads half-read: release their connections and file handles.
    for (const r of readers) await r.cancel().catch(() => {});
  }

  const output = "bytes" in merged
    ? await client.writeLtxFile(step.level, step.minTXID, step.maxTXID, merged.bytes, { timestamp })
    : await client.writeLtxFileFromPath(step.level, step.minTXID, step.maxTXID, merged.path, {
      timestamp,
      size: sink.size,
      sha256: merged.sha256,
      crc64: merged.crc64,
    });
  const vanished = (err: unknown): unknown =>
    err instanceof NotFoundError
      ? new NotFoundError(`${output.key} vanished right after it was written; compaction will retry`, {
        cause: err,
      })
      : err; // transient: the file stays (it was written whole); the next round checks again
  try {
    if ("bytes" in merged) {
      const back = await client.readLtxFile(step.level, step.minTXID, step.maxTXID).catch((err) => {
        throw vanished(err);
      });
      if (!sameBytes(back, merged.bytes)) {
        throw new CorruptionError("read back different bytes than were written", { object: output.key });
      }
      await verifyLtx(back, output.key);
    } else {
      await checkReadBack(client, step, merged.path, output.key).catch((err) => {
        throw err instanceof CorruptionError ? err : vanished(err);
      });
    }
  } catch (err) {
    // Nobody may build on a bad compacted file: remove it (its sources are still there).
    if (err instanceof CorruptionError) await client.deleteLtxFiles([output]).catch(() => {});
    throw err;
  }
  const seconds = (performance.now() - started) / 1000;
  const db = opts.db ?? client.dbName;
  opts.bus?.emit({
    type: "compaction",
    db,
    level: step.level,
    minTXID: step.minTXID,
    maxTXID: step.maxTXID,
    files: step.sources.length,
    seconds,
  });
  (opts.logger ?? rootLog).info("compacted", {
    db,
    level: step.level,
    file: formatLtxFilename(step.minTXID, step.maxTXID),
    sources: step.sources.length,
    bytes: sink.size,
  });
  return { level: step.level, sources: step.sources, output, reason: step.reason, seconds };
}

/** Options of {@link runCompaction}. */
export interface RunCompactionOptions extends CompactOptions {
  /** Current time, ms since the epoch. */
  now: number;
  /** Ignore the wall-clock alignment (the `compact` command). */
  force?: boolean;
  /** Most outputs per level in this call (default {@link MAX_ROUNDS_PER_LEVEL}). */
  maxRounds?: number;
  /** Most sources per output (default {@link MAX_SOURCES_PER_FILE}). */
  maxSources?: number;
  /** What earlier calls learnt, read and updated (see {@link runCompaction}). */
  state?: CompactionState;
  /**
   * When the schedule started (ms since the epoch; `watch` passes its start). Without `force`, a level is
   * evaluated only in slots that begin at or after it: as with Litestream's per-level timers, which first
   * fire at the next interval boundary, a fresh process compacts L1 at the next 30 s boundary, L2 at the next
   * 5 min one, and so on, instead of all levels at its first tick.
   */
  since?: number;
}

/** What a scheduler remembers between {@link runCompaction} calls so that idle ticks cost no requests. */
export interface CompactionState {
  /** The newest file known per level. */
  newest: Map<number, PlanFile>;
  /** Per level, the slot (see {@link slotStart}) already evaluated successfully. */
  checkedSlot: Map<number, number>;
}

/** An empty {@link CompactionState}. */
export function newCompactionState(): CompactionState {
  return { newest: new Map(), checkedSlot: new Map() };
}

/**
 * Compacts every level of `schedule` that is due, lowest first (so a level sees what the one below it just
 * produced), repeating a level while it has a backlog. Returns what was written.
 *
 * With `state` (kept by the caller between calls), each level is evaluated at most once per wall-clock slot,
 * as Litestream's per-level ticker, and a level whose newest file is already past the slot start is skipped
 * without listing; the source level is listed only when the destination is due. So a tick where nothing is
 * due costs no requests, and an idle database costs two listings per level per interval.
 */
export async function runCompaction(
  client: ReplicaClient,
  schedule: readonly LevelSchedule[],
  opts: RunCompactionOptions,
): Promise<CompactionResult[]> {
  const results: CompactionResult[] = [];
  const state = opts.state;
  for (const { level, intervalMs } of schedule) {
    const slot = slotStart(opts.now, intervalMs);
    if (!opts.force && opts.since !== undefined && slot < opts.since) continue; // first boundary not reached
    if (!opts.force && state) {
      if (state.checkedSlot.get(level) === slot) continue;
      const known = state.newest.get(level);
      if (known && known.createdAt.getTime() > slot) {
        state.checkedSlot.set(level, slot);
        continue;
      }
    }
    // Evaluated once per slot even when it fails: a persistent failure is retried (and reported) once per
    // interval, not on every tick.
    if (!opts.force) state?.checkedSlot.set(level, slot);
    let dstMax: PlanFile | undefined = maxFile(await client.ltxFiles(level));
    if (dstMax) state?.newest.set(level, dstMax);
    for (let round = 0; round < (opts.maxRounds ?? MAX_ROUNDS_PER_LEVEL); round++) {
      if (!opts.force && dstMax && dstMax.createdAt.getTime() > slot) break;
      const src = await client.ltxFiles(level - 1);
      const step = planLevelCompaction(level, src, dstMax ? [dstMax] : [], {
        intervalMs,
        now: opts.now,
        force: opts.force,
        maxSources: opts.maxSources,
      });
      if ("skipped" in step) break;
      const r = await compactStep(client, step, opts);
      results.push(r);
      dstMax = r.output;
      state?.newest.set(level, r.output);
    }
  }
  return results;
}
