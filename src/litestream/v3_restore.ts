/**
 * Restoring Litestream v0.3 replicas (`generations/…`, see `v3_layout.ts`), as Litestream v0.5's `RestoreV3`
 * does, but without SQLite for the WAL: the snapshot is LZ4-decoded block by block into a temp file beside the
 * output, then each WAL index is streamed through `wal_apply.ts`.
 *
 * Algorithm (v0.5 `replica.go` `RestoreV3`):
 * 1. Snapshots of **all** generations, sorted by CreatedAt; take the newest (or the newest with
 *    `CreatedAt ≤ timestamp`). None: {@link NotFoundError}.
 * 2. That generation's WAL segments with `index ≥ snapshot.index` (and `CreatedAt ≤ timestamp`), by (index,
 *    offset). Indexes must run `snapshot.index, +1, …` without a hole, each starting at offset 0, and each
 *    segment must start exactly where the previous one ended (decoded length). Otherwise {@link GapError} naming
 *    the missing WAL index or segment.
 * 3. Everything goes to `.<output>.<pid>-<rand>.tmp`; the temp file is fsynced, checked with
 *    `PRAGMA integrity_check` (node:sqlite) *before* it is renamed over the output, and removed on any failure:
 *    a failed restore never leaves an output file.
 *
 * The output is byte-for-byte what Litestream's own restore produces (its checkpoint writes the same pages and
 * truncates to the same size): page 1 keeps the snapshot's/WAL's journal mode, i.e. WAL mode (bytes 18–19 =
 * 2,2), so the restored database opens in WAL mode as the original did.
 *
 * Where the data is: `walrust restore <name> -b <url>` looks for v0.3 data of `<name>` at
 * `<prefix>/<name>/generations/` (mirroring walrust's own `<prefix>/<name>/` layout), and else at
 * `<prefix>/generations/` (a URL pointing straight at a Litestream replica root). {@link findV3Root} returns
 * the root to pass here; the restore command calls it when the LTX layout has no files for that name.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import {
  ConflictError,
  CorruptionError,
  DatabaseError,
  GapError,
  localIoError,
  messageOf,
  NotFoundError,
} from "../errors.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { parseDbHeader } from "../sqlite/db_header.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { dirOf, exists, fsyncDir, tempPathFor, writeAll } from "../util/fs.ts";
import { decodeLz4Frames } from "./lz4_frame.ts";
import {
  hasV3Data,
  listV3Generations,
  normalizeV3Root,
  type V3Generation,
  type V3Snapshot,
  type V3WalSegment,
} from "./v3_layout.ts";
import { applyWal } from "./wal_apply.ts";

/** One WAL index to apply, with its segments in offset order. */
export interface V3IndexPlan {
  /** WAL index. */
  index: number;
  /** Its segments, offsets strictly increasing, the first at 0. */
  segments: V3WalSegment[];
}

/** What a v0.3 restore will read. */
export interface V3RestorePlan {
  /** The snapshot to start from. */
  snapshot: V3Snapshot;
  /** WAL indexes `snapshot.index, snapshot.index + 1, …` to apply, in order. */
  indexes: V3IndexPlan[];
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function byCreatedAt(a: V3Snapshot, b: V3Snapshot): number {
  return a.createdAt.getTime() - b.createdAt.getTime() ||
    (a.generation < b.generation ? -1 : a.generation > b.generation ? 1 : 0) || a.index - b.index;
}

/**
 * Chooses the snapshot and WAL segments for a restore (pure; see the module doc). Throws
 * {@link NotFoundError} when no snapshot qualifies and {@link GapError} (with WAL indexes as the range) when
 * an index or a segment offset 0 is missing. Contiguity of later segments needs their decoded sizes and is
 * checked while restoring.
 */
export function planV3Restore(generations: V3Generation[], timestamp?: Date): V3RestorePlan {
  const ts = timestamp?.getTime();
  const snapshots = generations.flatMap((g) => g.snapshots).sort(byCreatedAt);
  if (snapshots.length === 0) throw new NotFoundError("no Litestream v0.3 snapshot found");
  let snapshot: V3Snapshot | undefined;
  if (ts === undefined) snapshot = snapshots[snapshots.length - 1];
  else {
    for (let i = snapshots.length - 1; i >= 0; i--) {
      if (snapshots[i].createdAt.getTime() <= ts) {
        snapshot = snapshots[i];
        break;
      }
    }
  }
  if (!snapshot) {
    throw new NotFoundError(
      `no Litestream v0.3 snapshot at or before ${timestamp!.toISOString()} (the oldest is from ${
        snapshots[0].createdAt.toISOString()
      })`,
    );
  }
  const gen = generations.find((g) => g.id === snapshot!.generation)!;
  const segments = gen.segments
    .filter((s) => s.index >= snapshot!.index && (ts === undefined || s.createdAt.getTime() <= ts))
    .sort((a, b) => a.index - b.index || a.offset - b.offset);
  const indexes: V3IndexPlan[] = [];
  for (const seg of segments) {
    const last = indexes[indexes.length - 1];
    if (last && last.index === seg.index) {
      const prev = last.segments[last.segments.length - 1];
      if (prev.offset === seg.offset) {
        throw new CorruptionError(
          `two WAL segments for the same position ${gen.id}/${
            hex8(seg.index)
          }:${seg.offset}: ${prev.key} and ${seg.key}`,
        );
      }
      last.segments.push(seg);
      continue;
    }
    const expected = last ? last.index + 1 : snapshot.index;
    if (seg.index !== expected) {
      throw new GapError(
        `missing WAL index ${gen.id}/${hex8(expected)}: the replica jumps from ${
          last ? `index ${hex8(last.index)}` : `snapshot ${hex8(snapshot.index)}`
        } to index ${hex8(seg.index)}; restore an earlier point in time or take a new snapshot`,
        expected,
        seg.index - 1,
      );
    }
    if (seg.offset !== 0) {
      throw new GapError(
        `missing WAL segment ${gen.id}/${
          hex8(seg.index)
        } at offset 0 (the first segment found starts at ${seg.offset}: ${seg.key})`,
        seg.index,
        seg.index,
      );
    }
    indexes.push({ index: seg.index, segments: [seg] });
  }
  return { snapshot, indexes };
}

/** Options of {@link restoreV3}. */
export interface V3RestoreOptions {
  /** Output database path. Must not exist (nor its `-wal`) unless `force`. Its directory is created. */
  output: string;
  /** Point in time: the newest state whose objects were written at or before it. */
  timestamp?: Date;
  /** Replace an existing output (its `-wal`, `-shm` and `-journal` are removed, after the restore succeeded). */
  force?: boolean;
  /** Run `PRAGMA integrity_check` on the result before it is renamed into place (default true). */
  integrityCheck?: boolean;
  /** Called as compressed bytes are read: (done, total). */
  onProgress?: (bytes: number, total: number) => void;
  /** Memory bound for one WAL transaction before it spills to a temp file (tests). */
  maxTxnBytes?: number;
  /** Logger (default: the process logger). */
  logger?: Logger;
}

/** What {@link restoreV3} restored. */
export interface V3RestoreResult {
  /** Generation restored from. */
  generation: string;
  /** Index of the snapshot used. */
  snapshotIndex: number;
  /** Last WAL index applied (the snapshot's index if there was no WAL). */
  walIndex: number;
  /** WAL segments applied. */
  segments: number;
  /** Database pages in the output. */
  pages: number;
  /** Page size. */
  pageSize: number;
  /** Output size in bytes. */
  bytes: number;
  /** Compressed bytes read from the replica. */
  bytesRead: number;
  /** CreatedAt of the newest object used: the point in time the output represents. */
  restoredAt: Date;
}

/** Read size when the object stream is a byte stream (local files): far fewer, larger reads than 64 KiB. */
const BYOB_READ_SIZE = 1 << 20;

/** Streams `key`, reporting compressed bytes as they arrive. Cancels the stream if the consumer stops early. */
async function* objectChunks(
  store: ObjectStore,
  key: string,
  onBytes: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  const stream = await store.getStream(key);
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch { /* not a byte stream (e.g. an HTTP body): read its own chunks */ }
  if (!byob) {
    for await (const chunk of stream) {
      onBytes(chunk.length);
      yield chunk;
    }
    return;
  }
  let done = false;
  try {
    while (!done) {
      const r = await byob.read(new Uint8Array(BYOB_READ_SIZE));
      done = r.done;
      if (r.value && r.value.length > 0) {
        onBytes(r.value.length);
        yield r.value;
      }
    }
  } finally {
    if (!done) await byob.cancel().catch(() => {});
    byob.releaseLock();
  }
}

/** How many small WAL segments are fetched ahead of the one being applied. */
const PREFETCH_COUNT = 8;
/** Segments up to this size are fetched whole (ahead of time); larger ones are streamed when reached. */
const PREFETCH_MAX_BYTES = 1 << 20;

/**
 * Fetches small WAL segments ahead of use, so that object-store latency overlaps (a v0.3 replica on S3 often
 * holds thousands of segments of a few KB: one per sync). At most {@link PREFETCH_COUNT} segments of at most
 * {@link PREFETCH_MAX_BYTES} each are held; larger segments are streamed when their turn comes.
 */
class SegmentFetcher {
  readonly #store: ObjectStore;
  readonly #segs: V3WalSegment[];
  readonly #onBytes: (n: number) => void;
  readonly #pending = new Map<number, Promise<Uint8Array>>();
  #next = 0;

  constructor(store: ObjectStore, segs: V3WalSegment[], onBytes: (n: number) => void) {
    this.#store = store;
    this.#segs = segs;
    this.#onBytes = onBytes;
  }

  /** Starts fetches from segment `from` on, up to the window. */
  pump(from = 0): void {
    if (this.#next < from) this.#next = from;
    while (this.#next < this.#segs.length && this.#pending.size < PREFETCH_COUNT) {
      const seg = this.#segs[this.#next];
      if (seg.size > PREFETCH_MAX_BYTES) break; // streamed when reached; prefetching resumes after it
      const p = this.#store.get(seg.key).then((b) => {
        this.#onBytes(b.length);
        return b;
      });
      p.catch(() => {}); // the error is rethrown to whoever takes this segment
      this.#pending.set(this.#next++, p);
    }
  }

  /** The bytes (or a stream) of segment `i`, which must be taken in order. */
  async take(i: number): Promise<AsyncIterable<Uint8Array> | Uint8Array> {
    const p = this.#pending.get(i);
    if (p) {
      try {
        return await p;
      } finally {
        // Only now does it leave the window, so at most PREFETCH_COUNT fetches are ever in flight.
        this.#pending.delete(i);
        this.pump(i + 1);
      }
    }
    this.pump(i + 1);
    return objectChunks(this.#store, this.#segs[i].key, this.#onBytes);
  }

  /** Forgets outstanding fetches (their results or errors are dropped). */
  dispose(): void {
    this.#pending.clear();
    this.#next = this.#segs.length;
  }
}

/**
 * Restores a v0.3 replica rooted at `root` in `store` (see the module doc). Returns what was restored;
 * throws NotFoundError / GapError / CorruptionError / ConflictError / LocalIoError, leaving no output.
 */
export async function restoreV3(
  store: ObjectStore,
  root: string,
  opts: V3RestoreOptions,
): Promise<V3RestoreResult> {
  const logger = (opts.logger ?? rootLog).child({ replica: store.displayUrl });
  const output = opts.output;
  if (!opts.force) {
    for (const p of [output, `${output}-wal`]) {
      if (await exists(p)) {
        throw new ConflictError(`restore output ${p} already exists; remove it or pass --force to overwrite`);
      }
    }
  }
  const generations = await listV3Generations(store, normalizeV3Root(root));
  const plan = planV3Restore(generations, opts.timestamp);
  const { snapshot } = plan;
  const allSegments = plan.indexes.flatMap((i) => i.segments);
  const total = snapshot.size + allSegments.reduce((n, s) => n + s.size, 0);
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  logger.info("restoring Litestream v0.3 replica", {
    generation: snapshot.generation,
    snapshot: hex8(snapshot.index),
    wal_indexes: plan.indexes.length,
    segments: allSegments.length,
  });

  try {
    await Deno.mkdir(dirOf(output), { recursive: true });
  } catch (err) {
    throw localIoError(err, dirOf(output), "create directory");
  }
  const tmp = tempPathFor(output);
  const spool = `${tmp}.txn`;
  let f: Deno.FsFile | undefined;
  const fetcher = new SegmentFetcher(store, allSegments, progress);
  try {
    try {
      f = await Deno.open(tmp, { read: true, write: true, createNew: true, mode: 0o644 });
    } catch (err) {
      throw localIoError(err, tmp, "create");
    }

    fetcher.pump(); // WAL segments download while the snapshot streams

    // 1. Snapshot: LZ4 frames → temp file, block by block.
    let size = 0;
    const first = new Uint8Array(100);
    let firstLen = 0;
    // The write of one block overlaps the decoding of the next (file writes run off the JS thread).
    let writing: Promise<unknown> = Promise.resolve();
    let writeError: unknown = null;
    const file = f;
    const snapshotChunks = decodeLz4Frames(objectChunks(store, snapshot.key, progress), snapshot.key, {
      reuseBuffers: true, // chunk k is written while k+1 is decoded: exactly what two buffers allow
    });
    for await (const chunk of snapshotChunks) {
      if (firstLen < 100) {
        const take = Math.min(100 - firstLen, chunk.length);
        first.set(chunk.subarray(0, take), firstLen);
        firstLen += take;
      }
      await writing;
      if (writeError !== null) throw localIoError(writeError, tmp, "write");
      writing = writeAll(file, chunk).catch((err) => (writeError = err ?? new Error("write failed")));
      size += chunk.length;
    }
    await writing;
    if (writeError !== null) throw localIoError(writeError, tmp, "write");
    let pageSize: number;
    try {
      pageSize = parseDbHeader(first.subarray(0, firstLen), snapshot.key).pageSize;
    } catch (err) {
      if (err instanceof DatabaseError) {
        throw new CorruptionError(`snapshot does not hold a SQLite database: ${err.message}`, {
          object: snapshot.key,
          cause: err,
        });
      }
      throw err;
    }
    if (size % pageSize !== 0) {
      throw new CorruptionError(`snapshot is ${size} bytes, not a multiple of its page size ${pageSize}`, {
        object: snapshot.key,
      });
    }

    // 2. WAL indexes, in order.
    let walIndex = snapshot.index;
    let restoredAt = snapshot.createdAt;
    let segNo = 0; // position in allSegments
    for (const idx of plan.indexes) {
      const segs = idx.segments;
      const name = `WAL index ${snapshot.generation}/${hex8(idx.index)}`;
      // Decoded offsets of each segment, filled as they stream, so errors name the right object.
      const starts: number[] = [];
      const locate = (off: number) => {
        for (let i = starts.length - 1; i >= 0; i--) if (off >= starts[i]) return segs[i].key;
        return segs[0].key;
      };
      const walBytes = async function* (): AsyncGenerator<Uint8Array> {
        let at = 0;
        for (const seg of segs) {
          if (at < seg.offset) {
            throw new GapError(
              `missing WAL segment ${snapshot.generation}/${
                hex8(idx.index)
              } at offset ${at}: the next segment starts at ${seg.offset} (${seg.key})`,
              idx.index,
              idx.index,
            );
          }
          if (at > seg.offset) {
            throw new CorruptionError(
              `WAL segment starts at offset ${seg.offset} but the previous segments already cover ${at} bytes`,
              { object: seg.key },
            );
          }
          starts.push(at);
          // applyWal reads each chunk to its end before asking for the next: reused buffers are safe.
          const chunks = decodeLz4Frames(await fetcher.take(segNo++), seg.key, { reuseBuffers: true });
          for await (const chunk of chunks) {
            at += chunk.length;
            yield chunk;
          }
        }
      };
      let r;
      try {
        r = await applyWal(f, walBytes(), {
          name,
          pageSize,
          spoolPath: spool,
          maxTxnBytes: opts.maxTxnBytes,
          locate,
        });
      } catch (err) {
        throw localIoError(err, tmp, "write");
      }
      if (r.ignoredFrames > 0 || r.ignoredBytes > 0) {
        logger.warn("ignored the uncommitted tail of a WAL index", {
          index: hex8(idx.index),
          frames: r.ignoredFrames,
          bytes: r.ignoredBytes,
        });
      }
      walIndex = idx.index;
      for (const s of segs) if (s.createdAt > restoredAt) restoredAt = s.createdAt;
    }

    try {
      await f.sync();
    } catch (err) {
      throw localIoError(err, tmp, "sync");
    }
    const bytes = (await f.stat()).size;
    f.close();
    f = undefined;
    if (bytes === 0 || bytes % pageSize !== 0) {
      throw new CorruptionError(
        `restored database is ${bytes} bytes, not a whole number of ${pageSize}-byte pages`,
        {
          object: snapshot.key,
        },
      );
    }

    // 3. Check before the file becomes visible under its name.
    if (opts.integrityCheck ?? true) integrityCheck(tmp, snapshot);

    if (opts.force) {
      for (const side of ["-wal", "-shm", "-journal"]) {
        await Deno.remove(output + side).catch((err) => {
          if (!(err instanceof Deno.errors.NotFound)) throw localIoError(err, output + side, "remove");
        });
      }
    } else if (await exists(output)) {
      throw new ConflictError(`restore output ${output} appeared while restoring; not overwriting it`);
    }
    try {
      await Deno.rename(tmp, output);
    } catch (err) {
      throw localIoError(err, output, "rename");
    }
    await fsyncDir(dirOf(output));
    const result: V3RestoreResult = {
      generation: snapshot.generation,
      snapshotIndex: snapshot.index,
      walIndex,
      segments: allSegments.length,
      pages: bytes / pageSize,
      pageSize,
      bytes,
      bytesRead: done,
      restoredAt,
    };
    logger.info("restored Litestream v0.3 replica", {
      output,
      generation: result.generation,
      wal_index: hex8(walIndex),
      pages: result.pages,
      restored_at: restoredAt.toISOString(),
    });
    return result;
  } finally {
    fetcher.dispose();
    try {
      f?.close();
    } catch { /* already closed */ }
    for (const p of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`, spool]) {
      await Deno.remove(p).catch(() => {});
    }
  }
}

/** `PRAGMA integrity_check` on the finished temp file; CorruptionError unless it says `ok`. */
function integrityCheck(path: string, snapshot: V3Snapshot): void {
  let db: DatabaseSync | undefined;
  let problems: string[];
  try {
    db = new DatabaseSync(path);
    const rows = db.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[];
    problems = rows.map((r) => String(Object.values(r)[0]));
  } catch (err) {
    throw new CorruptionError(`restored database cannot be opened by SQLite: ${messageOf(err)}`, {
      object: snapshot.key,
      cause: err,
    });
  } finally {
    db?.close();
  }
  if (!(problems.length === 1 && problems[0] === "ok")) {
    throw new CorruptionError(
      `restored database fails PRAGMA integrity_check: ${problems.slice(0, 3).join("; ")}`,
      { object: `generation ${snapshot.generation}` },
    );
  }
}

/** A summary of a v0.3 replica, for `walrust list`. */
export interface V3Description {
  /** The root examined (`""` = the store root). */
  root: string;
  /** Per generation, sorted by id. */
  generations: {
    /** Generation id. */
    id: string;
    /** Snapshot objects. */
    snapshots: number;
    /** WAL segment objects. */
    walSegments: number;
    /** Highest WAL index, or null without segments. */
    maxIndex: number | null;
    /** Compressed bytes of all its objects. */
    bytes: number;
    /** Oldest object time. */
    firstAt: Date | null;
    /** Newest object time. */
    lastAt: Date | null;
  }[];
  /** Snapshots in all generations. */
  snapshotCount: number;
  /** WAL segments in all generations. */
  walSegmentCount: number;
  /** Newest object time in the replica, or null if it is empty. */
  newest: Date | null;
  /** Compressed bytes of all objects. */
  bytes: number;
}

/** Describes the v0.3 replica at `root` (one listing). */
export async function describeV3(store: ObjectStore, root: string): Promise<V3Description> {
  const r = normalizeV3Root(root);
  const gens = await listV3Generations(store, r);
  let newest: Date | null = null;
  const generations = gens.map((g) => {
    const objs = [...g.snapshots, ...g.segments];
    let firstAt: Date | null = null, lastAt: Date | null = null;
    for (const o of objs) {
      if (!firstAt || o.createdAt < firstAt) firstAt = o.createdAt;
      if (!lastAt || o.createdAt > lastAt) lastAt = o.createdAt;
    }
    if (lastAt && (!newest || lastAt > newest)) newest = lastAt;
    return {
      id: g.id,
      snapshots: g.snapshots.length,
      walSegments: g.segments.length,
      maxIndex: g.segments.length ? g.segments[g.segments.length - 1].index : null,
      bytes: objs.reduce((n, o) => n + o.size, 0),
      firstAt,
      lastAt,
    };
  });
  return {
    root: r,
    generations,
    snapshotCount: generations.reduce((n, g) => n + g.snapshots, 0),
    walSegmentCount: generations.reduce((n, g) => n + g.walSegments, 0),
    newest,
    bytes: generations.reduce((n, g) => n + g.bytes, 0),
  };
}

/**
 * Where the v0.3 data of database `name` is in `store`: `<name>` when `<name>/generations/` holds v0.3
 * objects, else `""` when the store root itself is a Litestream replica root (`generations/`), else null.
 */
export async function findV3Root(store: ObjectStore, name: string): Promise<string | null> {
  const own = normalizeV3Root(name);
  if (own !== "" && await hasV3Data(store, own)) return own;
  if (await hasV3Data(store, "")) return "";
  return null;
}
