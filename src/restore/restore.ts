/**
 * Streaming restore: plan (`plan.ts`), then a k-way merge of the planned LTX files streamed from the replica
 * straight into a temp file beside the output (each page written once), fsync (on an I/O thread while
 * `PRAGMA integrity_check` runs), rename, directory fsync. Nothing is visible under the output name until every byte was verified:
 * - every LTX file's checksum (the decoder verifies it as the merge finishes each input), its header against its
 *   name, and the contiguity of the chain;
 * - the SHA-256 stored as S3 metadata, when present (the S3 store checks it as the body streams);
 * - the merged database with SQLite's own `PRAGMA integrity_check` (unless disabled).
 * Whatever fails — download, corruption, disk full, a signal — the temp file and SQLite's side files are
 * removed and an existing output is untouched.
 *
 * The merge uses `compactToDatabase` (the same merge as `compactLtx` + `decodeDatabaseTo`, without encoding
 * the merged file only to decode it again). Very long plans (thousands of L0 files when compaction is off) are
 * first merged in batches into local temp LTX files, so at most `maxOpenFiles` downloads are open at once.
 *
 * A replica with no LTX files for the name falls back to Litestream v0.3 data (`generations/`) when present,
 * as Litestream v0.5 does; so does a latest restore whose v0.3 data is newer than its LTX data.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import {
  ConflictError,
  CorruptionError,
  InterruptedError,
  LocalIoError,
  localIoError,
  messageOf,
  NotFoundError,
  UsageError,
} from "../errors.ts";
import { compactLtx, compactToDatabase } from "../ltx/compactor.ts";
import { decodeDatabaseTo, LtxDecoder } from "../ltx/decoder.ts";
import { formatLtxFilename, type LtxHeader } from "../ltx/types.ts";
import { describeV3, findV3Root, restoreV3 } from "../litestream/v3_restore.ts";
import { log as rootLog, type Logger } from "../observe/log.ts";
import { recordedDigests, recordedSha256 } from "../storage/file.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { dirOf, exists, fsyncDir, readFileChunks, tempPathFor, writeAll } from "../util/fs.ts";
import { decodeSnapshotFast, decodeSnapshotParallel, PARALLEL_MIN_BYTES } from "./parallel.ts";
import { FastPathDeclined, releaseChunk, type ReleasingSink } from "./segment.ts";
import { calcRestorePlan } from "./plan.ts";
import { nodeCrypto } from "../util/node_crypto.ts";

/** Options of {@link restoreDatabase}. */
export interface RestoreOptions {
  /** Output database path. Its directory is created when missing. */
  output: string;
  /** Restore exactly this TXID (inclusive). */
  txid?: number;
  /** Restore the state as of this time (files created strictly before it). */
  timestamp?: Date;
  /** Replace an existing output; its `-wal`, `-shm` and `-journal` are removed (after the restore succeeded). */
  force?: boolean;
  /** Do nothing (status `skipped`) when the output already exists. */
  ifDbNotExists?: boolean;
  /** Do nothing (status `no_backup`) when the replica holds no backup of the database at all. */
  ifReplicaExists?: boolean;
  /** Run `PRAGMA integrity_check` on the result before it is renamed into place (default true). */
  integrityCheck?: boolean;
  /** Called as replica bytes are downloaded: (done, total). */
  onProgress?: (bytes: number, total: number) => void;
  /** Aborting stops the restore with {@link InterruptedError} and removes everything written. */
  signal?: AbortSignal;
  /** Most LTX downloads open at once (default 64); longer plans are merged in batches first. */
  maxOpenFiles?: number;
  /** Logger (default: the process logger). */
  logger?: Logger;
  /**
   * Smallest single local snapshot decoded by two threads (default `PARALLEL_MIN_BYTES`, 48 MiB); for tests
   * and benchmarks.
   */
  parallelMinBytes?: number;
}

/** What {@link restoreDatabase} did. */
export interface RestoreResult {
  /** `restored`; `skipped` (`ifDbNotExists`, output exists); `no_backup` (`ifReplicaExists`, none found). */
  status: "restored" | "skipped" | "no_backup";
  /** `ltx` (Litestream v0.5 layout) or `v3` (Litestream v0.3 `generations/`). */
  format: "ltx" | "v3";
  /** TXID the output is at (0 for v0.3 data, which has no TXIDs). */
  txid: number;
  /** Database pages written. */
  pages: number;
  /** Page size. */
  pageSize: number;
  /** Output size in bytes. */
  bytes: number;
  /** When the restored state was captured: the newest file's header timestamp (v0.3: its object time). */
  timestamp: Date | null;
  /** The files used, in merge order (empty for v0.3 and when skipped). */
  plan: LtxFileInfo[];
  /** Replica bytes downloaded. */
  bytesRead: number;
  /** Whether `PRAGMA integrity_check` ran (and said ok). */
  integrityChecked: boolean;
}

const DEFAULT_MAX_OPEN = 64;

/** The database's name for messages. */
function dbLabel(client: ReplicaClient): string {
  return client.dbName === "" ? client.displayUrl : client.dbName;
}

/** Reads a stream ahead of its consumer, up to `limit` buffered bytes, so waits overlap with decoding. */
class ReadAhead {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #limit: number;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #stopped = false;
  #failure: { err: unknown } | null = null;
  #wakeConsumer: (() => void) | null = null;
  #wakeProducer: (() => void) | null = null;
  readonly #pump: Promise<void>;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, limit: number) {
    this.#reader = reader;
    this.#limit = limit;
    this.#pump = this.#run();
  }

  #signalConsumer(): void {
    const w = this.#wakeConsumer;
    this.#wakeConsumer = null;
    w?.();
  }

  #signalProducer(): void {
    const w = this.#wakeProducer;
    this.#wakeProducer = null;
    w?.();
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stopped) {
        if (this.#queued >= this.#limit) {
          await new Promise<void>((r) => (this.#wakeProducer = r));
          continue;
        }
        const r = await this.#reader.read();
        if (r.done) break;
        this.#queue.push(r.value);
        this.#queued += r.value.byteLength;
        this.#signalConsumer();
      }
    } catch (err) {
      this.#failure = { err };
    } finally {
      this.#ended = true;
      this.#signalConsumer();
    }
  }

  /** The next chunk in order, or null at the end; rethrows the stream's error after the chunks before it. */
  async next(): Promise<Uint8Array | null> {
    while (true) {
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#queued -= chunk.byteLength;
        this.#signalProducer();
        return chunk;
      }
      if (this.#failure) throw this.#failure.err;
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#wakeConsumer = r));
    }
  }

  /** Stops reading and cancels the stream. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#signalProducer();
    await this.#reader.cancel().catch(() => {});
    await this.#pump;
  }
}

/**
 * A planned file was listed but is gone when opened: retention (`src/retention/`) deleted it in between
 * because a compacted file now holds its TXIDs. {@link restoreDatabase} lists and plans again.
 */
class PlannedFileGoneError extends NotFoundError {}

/** How many times a restore re-plans after planned files vanished (each time means retention ran). */
const MAX_REPLANS = 3;

/** Cancels one open download (a stream reader or a local file); registered while the download is open. */
type Canceller = () => void;

/**
 * Size of each read of a local replica file. A few large reads instead of a byte stream's 64 KiB chunks:
 * each chunk costs a promise, the stream machinery and a frame that straddles two chunks (copied), and a
 * 256 MB snapshot is 4,000 of them.
 */
const LOCAL_READ = 2 << 20;

/**
 * Streams one replica object, counting bytes and honouring the abort signal. The download starts on the
 * first read and reads ahead while the consumer decodes. Its canceller is registered in `open` so that a
 * failed restore can cancel every open download (a decoder that is never read again would otherwise keep its
 * connection or file handle).
 *
 * A store with local files (`localPath`: the directory backend, also through `RetryingObjectStore`) is read
 * directly with large reads ({@link localDownload}); every other store through `openLtxFile`'s stream.
 */
async function* download(
  client: ReplicaClient,
  f: LtxFileInfo,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
  open: Set<Canceller>,
  readAhead: number,
  digestFailures: CorruptionError[],
): AsyncGenerator<Uint8Array> {
  if (signal?.aborted) throw new InterruptedError("restore interrupted");
  const localPath = client.store.localPath;
  if (localPath !== undefined) {
    // Buffers of half the read-ahead budget: three rotate, so a long plan's many open files stay bounded.
    const bufSize = Math.min(LOCAL_READ, Math.max(64 << 10, readAhead >> 1), f.size + 1);
    yield* localDownload(
      client,
      f,
      localPath.call(client.store, f.key),
      bufSize,
      onBytes,
      signal,
      open,
      digestFailures,
    );
    return;
  }
  let stream: ReadableStream<Uint8Array>;
  try {
    stream = await client.openLtxFile(f.level, f.minTXID, f.maxTXID);
  } catch (err) {
    throw err instanceof NotFoundError ? new PlannedFileGoneError(err.message, { cause: err }) : err;
  }
  const reader = stream.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  open.add(cancel);
  const ahead = new ReadAhead(reader, readAhead);
  try {
    while (true) {
      const chunk = await ahead.next();
      if (signal?.aborted) throw new InterruptedError("restore interrupted");
      if (chunk === null) return;
      onBytes(chunk.byteLength);
      yield chunk;
    }
  } finally {
    open.delete(cancel);
    await ahead.stop();
  }
}

/**
 * Reads a local replica file in {@link LOCAL_READ} chunks, one read always in flight while the consumer
 * decodes the previous chunk. Three buffers rotate: the decoder is done with a chunk once it asks for the
 * next one (it copies what it keeps), so the buffer read two chunks ago is free again. Errors are those of
 * the directory backend: a missing file is "not found" (retention deleted it: plan again), anything else a
 * local I/O error naming the path.
 */
async function* localDownload(
  client: ReplicaClient,
  f: LtxFileInfo,
  path: string,
  bufSize: number,
  onBytes: (n: number) => void,
  signal: AbortSignal | undefined,
  open: Set<Canceller>,
  digestFailures: CorruptionError[],
): AsyncGenerator<Uint8Array> {
  // The digest recorded when the file was written (directory replicas: see src/storage/file.ts), read
  // before the open and again at the end: only a digest seen both times belongs to the bytes read.
  const expected = recordedSha256(path);
  const hash = expected ? (await nodeCrypto()).createHash("sha256") : null;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (
      err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory ||
      err instanceof Deno.errors.IsADirectory
    ) {
      throw new PlannedFileGoneError(`object ${f.key} not found in ${client.store.displayUrl}`, {
        cause: err,
      });
    }
    throw localIoError(err, path, "read");
  }
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      file.close();
    } catch { /* already closed */ }
  };
  open.add(close);
  const size = Math.max(1, bufSize);
  const bufs = [new Uint8Array(size), new Uint8Array(size), new Uint8Array(size)];
  let turn = 0;
  // The result of a read, never a rejected promise: a read abandoned by a failed restore must not surface
  // as an unhandled rejection.
  const readInto = (buf: Uint8Array): Promise<{ n: number | null } | { err: unknown }> =>
    file.read(buf).then((n) => ({ n }), (err) => ({ err }));
  // The digest recorded when the file was written (directory replicas: see src/storage/file.ts) catches
  // changes that decode to the same pages, which no LTX rule can see. A mismatch is recorded rather than
  // thrown: the decoder's own (more specific) error wins when it has one, and the restore fails on the
  // recorded one after decoding otherwise (see `restoreDatabase`).
  let pending = readInto(bufs[0]);
  try {
    while (true) {
      const r = await pending;
      if (signal?.aborted || closed) throw new InterruptedError("restore interrupted");
      if ("err" in r) throw localIoError(r.err, path, "read");
      if (r.n === null) {
        const actual = hash?.digest("hex");
        // Only when the digest is still the one read at the start (see src/storage/file.ts: a replacement
        // during the read is not damage).
        if (actual !== undefined && actual !== expected && recordedSha256(path) === expected) {
          digestFailures.push(
            new CorruptionError(
              `sha256 ${actual} of the file differs from its recorded sha256 ${expected}: the file changed ` +
                `after it was written (disk damage or an edit)`,
              { object: f.key },
            ),
          );
        }
        return;
      }
      const chunk = bufs[turn].subarray(0, r.n);
      turn = (turn + 1) % bufs.length;
      pending = readInto(bufs[turn]);
      hash?.update(chunk);
      onBytes(r.n);
      yield chunk;
    }
  } finally {
    open.delete(close);
    await pending.catch(() => {});
    close();
  }
}

/** A ByteSink that writes behind: writes run in order while the caller prepares the next chunks. */
interface FileSink extends ReleasingSink {
  /** Waits for every queued write (and early sync); throws the first error. */
  flush(): Promise<void>;
}

/**
 * Most bytes queued behind the write in flight before `write` waits. A queue rather than one chunk in
 * flight: a write's completion is only seen when the decoding thread returns to the event loop, so with a
 * single chunk in flight the decoder stalls on every chunk whose write the (shared, busy) I/O thread has not
 * finished yet.
 */
const WRITE_QUEUE_BYTES = 16 << 20;

/**
 * Bytes written between two early `fdatasync` calls on the output. They only start the disk writing while
 * pages are still being decoded (the final `fsync` stays the durability point): without them the whole
 * database is still in the page cache when the restore ends and the final sync waits for all of it.
 */
const EARLY_SYNC_BYTES = 32 << 20;

/**
 * A {@link FileSink} on an open file, mapping I/O failures to typed errors naming `path`. Chunks are never
 * reused by their producers before the sink hands them to `releaseChunk` (the ByteSink contract, and the
 * release lets a segment decoder lend its memory), so they can be written after `write` returned; they are
 * written one at a time, in order. With `earlySync`, an `fdatasync` starts in the background after every
 * {@link EARLY_SYNC_BYTES} (one at a time).
 */
function fileSink(f: Deno.FsFile, path: string, earlySync = false): FileSink {
  let tail: Promise<void> = Promise.resolve();
  let queued = 0;
  let syncing: Promise<void> | null = null;
  let unsynced = 0;
  let failure: unknown = null;
  const check = () => {
    if (failure !== null) throw failure;
  };
  return {
    releasesChunks: true,
    async write(chunk: Uint8Array): Promise<void> {
      check();
      if (queued > WRITE_QUEUE_BYTES) {
        await tail;
        check();
      }
      const n = chunk.byteLength;
      queued += n;
      // Every rejection is captured here, so a failure between two calls is never an unhandled rejection;
      // after a failure the queued writes are skipped.
      tail = tail.then(async () => {
        try {
          if (failure === null) await writeAll(f, chunk);
        } finally {
          releaseChunk(chunk); // written (or failed): the decoder that lent it may reuse the memory
        }
      }).catch((err) => {
        failure ??= localIoError(err, path, "write");
      }).finally(() => {
        queued -= n;
        unsynced += n;
        if (earlySync && unsynced >= EARLY_SYNC_BYTES && syncing === null && failure === null) {
          unsynced = 0;
          syncing = f.syncData().catch((err) => {
            failure ??= localIoError(err, path, "sync");
          }).finally(() => {
            syncing = null;
          });
        }
      });
    },
    async flush(): Promise<void> {
      await tail;
      if (syncing) await syncing;
      check();
    },
  };
}

/** Checks the header read from an object against the TXID range in its name. */
function checkHeaderMatchesName(h: LtxHeader, f: LtxFileInfo): void {
  if (h.minTXID !== f.minTXID || h.maxTXID !== f.maxTXID) {
    throw new CorruptionError(
      `header says TXIDs ${h.minTXID}–${h.maxTXID} but the name says ${f.minTXID}–${f.maxTXID}`,
      { object: f.key, offset: 16 },
    );
  }
}

/**
 * Runs `PRAGMA integrity_check` on `path`; CorruptionError naming `what` unless it answers `ok`. SQLite's
 * `-wal`/`-shm` for `path` are removed by the caller.
 */
export function checkIntegrity(path: string, what: string): void {
  let db: DatabaseSync | undefined;
  let rows: string[];
  try {
    db = new DatabaseSync(path);
    rows = (db.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[]).map((r) =>
      String(Object.values(r)[0])
    );
  } catch (err) {
    throw new CorruptionError(`restored database cannot be opened by SQLite: ${messageOf(err)}`, {
      object: what,
      cause: err,
    });
  } finally {
    try {
      db?.close();
    } catch { /* already closed */ }
  }
  if (!(rows.length === 1 && rows[0] === "ok")) {
    throw new CorruptionError(
      `restored database fails PRAGMA integrity_check: ${rows.slice(0, 3).join("; ")}`,
      {
        object: what,
      },
    );
  }
}

async function removeQuietly(path: string): Promise<void> {
  await Deno.remove(path).catch(() => {});
}

/**
 * Restores the database of `client` to `opts.output`: latest, at `opts.txid`, or as of `opts.timestamp`.
 * Throws ConflictError (output exists), NotFoundError (nothing to restore), GapError (missing TXIDs),
 * CorruptionError (bad object or result), LocalIoError, ConnectionError/AuthError, InterruptedError; in every
 * failure case no output file is created or changed.
 */
export async function restoreDatabase(client: ReplicaClient, opts: RestoreOptions): Promise<RestoreResult> {
  for (let attempt = 1;; attempt++) {
    try {
      return await restoreOnce(client, opts);
    } catch (err) {
      if (!(err instanceof PlannedFileGoneError) || attempt >= MAX_REPLANS) throw err;
      (opts.logger ?? rootLog).info("a planned file was deleted meanwhile (retention); planning again", {
        db: dbLabel(client),
        error: err.message,
      });
    }
  }
}

/** One attempt of {@link restoreDatabase}: list, plan, merge. */
async function restoreOnce(client: ReplicaClient, opts: RestoreOptions): Promise<RestoreResult> {
  const { output, txid, timestamp, signal } = opts;
  const name = dbLabel(client);
  const logger = (opts.logger ?? rootLog).child({ db: name });
  const integrity = opts.integrityCheck ?? true;
  if (txid !== undefined && timestamp !== undefined) {
    throw new UsageError("give either a TXID or a timestamp to restore, not both");
  }
  if (txid !== undefined && (!Number.isSafeInteger(txid) || txid < 1)) {
    throw new UsageError(`TXID must be a positive integer, got ${txid}`);
  }

  const nothing = (status: "skipped" | "no_backup"): RestoreResult => ({
    status,
    format: "ltx",
    txid: 0,
    pages: 0,
    pageSize: 0,
    bytes: 0,
    timestamp: null,
    plan: [],
    bytesRead: 0,
    integrityChecked: false,
  });
  if (await exists(output)) {
    if (opts.ifDbNotExists) return nothing("skipped");
    if (!opts.force) {
      throw new ConflictError(
        `restore output ${output} already exists; remove it or pass --force to overwrite`,
      );
    }
  } else if (!opts.force && await exists(`${output}-wal`)) {
    // SQLite would apply a stray WAL to the restored file on first open.
    throw new ConflictError(
      `${output}-wal exists (left from an older database); remove it or pass --force to overwrite`,
    );
  }

  const files = await client.allLtxFiles({ accurateTimestamps: timestamp !== undefined });
  const v3 = await chooseV3(client, files, opts);
  if (v3 !== null) {
    logger.info("no newer LTX data: restoring Litestream v0.3 data", { root: v3 === "" ? "(root)" : v3 });
    const r = await restoreV3(client.store, v3, {
      output,
      timestamp,
      force: opts.force,
      integrityCheck: integrity,
      onProgress: opts.onProgress,
      logger,
    });
    return {
      status: "restored",
      format: "v3",
      txid: 0,
      pages: r.pages,
      pageSize: r.pageSize,
      bytes: r.bytes,
      timestamp: r.restoredAt,
      plan: [],
      bytesRead: r.bytesRead,
      integrityChecked: integrity,
    };
  }

  if (files.length === 0) {
    if (opts.ifReplicaExists) return nothing("no_backup");
    throw new NotFoundError(
      `no backup of ${name} found in ${client.displayUrl}; check the name with 'walrust list -b <url>'`,
    );
  }
  const plan = calcRestorePlan(files, { txid, timestamp }, name);
  const total = plan.reduce((n, f) => n + f.size, 0);
  let done = 0;
  const onBytes = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  logger.debug("restoring", {
    files: plan.length,
    bytes: total,
    txid: plan[plan.length - 1].maxTXID,
    output,
  });

  try {
    await Deno.mkdir(dirOf(output), { recursive: true });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new LocalIoError(
        `create directory ${dirOf(output)}: a file is in the way (not a directory); fix the output path`,
        { cause: err },
      );
    }
    throw localIoError(err, dirOf(output), "create directory");
  }
  const tmp = tempPathFor(output);
  const scratch: string[] = [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`];
  let out: Deno.FsFile | undefined;
  const open = new Set<Canceller>();
  const cancelAll = () => {
    for (const cancel of open) cancel();
  };
  // A signal cancels the downloads at once, even one stalled in the middle of a read.
  signal?.addEventListener("abort", cancelAll, { once: true });
  try {
    // Read-ahead per download: generous for a few files, bounded in total for many.
    const readAhead = Math.min(4 << 20, Math.max(256 << 10, Math.floor((32 << 20) / plan.length)));
    // Local files whose bytes differ from their recorded digest (see localDownload).
    const digestFailures: CorruptionError[] = [];
    const decoderFor = (f: LtxFileInfo) =>
      new LtxDecoder(download(client, f, onBytes, signal, open, readAhead, digestFailures), f.key);
    const withHeaderCheck = async (pairs: [LtxDecoder, LtxFileInfo][]) => {
      // Reading the headers first opens every download at once and checks names before any page is merged.
      const hs = await Promise.all(pairs.map(([d]) => d.readHeader()));
      hs.forEach((h, i) => checkHeaderMatchesName(h, pairs[i][1]));
      return pairs.map(([d]) => d);
    };

    // Batches: keep the first file (the snapshot or TXID-1 file) and merge the rest in groups if needed.
    const maxOpen = Math.max(2, opts.maxOpenFiles ?? DEFAULT_MAX_OPEN);
    let rest: LtxFileInfo[] = plan.slice(1);
    const merged: { path: string; name: string }[] = [];
    if (plan.length > maxOpen) {
      let batchNo = 0;
      while (rest.length > 0) {
        const group = rest.slice(0, maxOpen);
        rest = rest.slice(maxOpen);
        const path = `${tmp}.batch${batchNo++}`;
        scratch.push(path);
        const decs = await withHeaderCheck(group.map((f) => [decoderFor(f), f]));
        const bf = await Deno.open(path, { write: true, createNew: true, mode: 0o600 }).catch((err) => {
          throw localIoError(err, path, "create");
        });
        try {
          const sink = fileSink(bf, path);
          await compactLtx(decs, sink);
          await sink.flush();
        } finally {
          bf.close();
        }
        merged.push({
          path,
          name: `${formatLtxFilename(group[0].minTXID, group[group.length - 1].maxTXID)} (merged)`,
        });
      }
    }

    const createOutput = async (): Promise<Deno.FsFile> => {
      try {
        return await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
      } catch (err) {
        throw localIoError(err, tmp, "create");
      }
    };
    out = await createOutput();
    let sink = fileSink(out, tmp, !integrity);
    /** Discards what a fast path wrote: a new, empty output file and sink. */
    const restart = async (): Promise<void> => {
      digestFailures.length = 0;
      await sink.flush().catch(() => {});
      out?.close();
      out = undefined;
      await Deno.remove(tmp).catch(() => {});
      out = await createOutput();
      sink = fileSink(out, tmp, !integrity);
      done = 0;
    };
    let header: LtxHeader | null = null;
    const single = merged.length === 0 && plan.length === 1 && plan[0].minTXID === 1 ? plan[0] : null;
    const localPath = client.store.localPath;
    if (
      single && localPath && single.size >= (opts.parallelMinBytes ?? PARALLEL_MIN_BYTES) && !signal?.aborted
    ) {
      // Two threads for a large local snapshot. Purely an optimisation: whatever goes wrong except an
      // abort (a rule broken, a worker that cannot start, a read error), the paths below decide instead.
      try {
        header = await decodeSnapshotParallel({
          ltxPath: localPath.call(client.store, single.key),
          name: single.key,
          outPath: tmp,
          checkHeader: (h) => checkHeaderMatchesName(h, single),
          crc64: recordedDigests(localPath.call(client.store, single.key))?.crc64,
          sink,
          signal,
          onBytes,
          onSegments: (mine, theirs, worker) =>
            logger.debug("parallel snapshot decode", { mine, theirs, ...(worker ? { worker } : {}) }),
        });
        await sink.flush();
      } catch (err) {
        if (signal?.aborted) throw new InterruptedError("restore interrupted");
        logger.debug("parallel snapshot decode declined", { error: messageOf(err) });
        header = null;
        await restart();
      }
    }
    if (header === null && single) {
      try {
        header = await decodeSnapshotFast(
          download(client, single, onBytes, signal, open, readAhead, digestFailures),
          single.key,
          (h) => checkHeaderMatchesName(h, single),
          sink,
        );
        await sink.flush();
      } catch (err) {
        if (!(err instanceof FastPathDeclined || err instanceof CorruptionError) || signal?.aborted) {
          throw err;
        }
        // Start over with the full decoder, which reports the problem (or, should the fast path ever be
        // stricter than it, restores the file after all).
        logger.debug("fast snapshot decode declined; using the full decoder", { error: messageOf(err) });
        await restart();
      }
    }
    if (header === null) {
      let inputs: LtxDecoder[];
      if (merged.length > 0) {
        const [first] = await withHeaderCheck([[decoderFor(plan[0]), plan[0]]]);
        inputs = [first, ...merged.map((m) => new LtxDecoder(readFileChunks(m.path), m.name))];
      } else {
        inputs = await withHeaderCheck(plan.map((f) => [decoderFor(f), f]));
      }
      header = inputs.length === 1
        ? await decodeDatabaseTo(inputs[0], sink)
        : await compactToDatabase(inputs, sink);
      await sink.flush();
    }
    // Every file decoded cleanly; one whose bytes differ from their recorded digest still fails the restore.
    if (digestFailures.length > 0) throw digestFailures[0];
    const bytes = (await out.stat()).size;
    if (bytes !== header.commit * header.pageSize) {
      throw new CorruptionError(
        `restored database is ${bytes} bytes, expected ${header.commit} pages of ${header.pageSize}`,
        { object: plan[plan.length - 1].key },
      );
    }
    // The fsync runs on an I/O thread while SQLite checks the file on this one: the check reads the page
    // cache and needs nothing on disk yet, and the rename below waits for both. (The sink made no early
    // syncs for the same reason: the check hides the whole fsync.) The file stays open until SQLite has
    // closed it, so closing ours cannot drop SQLite's POSIX locks.
    const synced: Promise<unknown> = out.sync().then(() => null, (err) => err ?? "sync failed");
    let checkFailure: unknown = null;
    if (integrity && !signal?.aborted) {
      try {
        checkIntegrity(tmp, `${name} restored at TXID ${header.maxTXID}`);
      } catch (err) {
        checkFailure = err;
      }
    }
    const syncFailure = await synced;
    out.close();
    out = undefined;
    if (checkFailure !== null) throw checkFailure;
    if (syncFailure !== null) throw localIoError(syncFailure, tmp, "sync");
    if (signal?.aborted) throw new InterruptedError("restore interrupted");

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
    const result: RestoreResult = {
      status: "restored",
      format: "ltx",
      txid: header.maxTXID,
      pages: header.commit,
      pageSize: header.pageSize,
      bytes,
      timestamp: new Date(header.timestamp),
      plan,
      bytesRead: done,
      integrityChecked: integrity,
    };
    logger.debug("restored", { output, txid: result.txid, pages: result.pages, bytes });
    return result;
  } catch (err) {
    // A cancelled download looks like a truncated file: report the interruption instead.
    if (signal?.aborted && !(err instanceof InterruptedError)) {
      throw new InterruptedError("restore interrupted");
    }
    throw err;
  } finally {
    signal?.removeEventListener("abort", cancelAll);
    try {
      out?.close();
    } catch { /* already closed */ }
    cancelAll();
    for (const p of scratch) await removeQuietly(p);
  }
}

/**
 * Whether to restore Litestream v0.3 data instead of LTX files, and from which root: when there are no LTX
 * files at all, or for a latest restore whose v0.3 objects are newer than the newest LTX file (Litestream's
 * `shouldUseV3Restore`). Never for a TXID target (v0.3 has no TXIDs).
 */
async function chooseV3(
  client: ReplicaClient,
  files: LtxFileInfo[],
  opts: RestoreOptions,
): Promise<string | null> {
  if (opts.txid !== undefined) return null;
  const root = await findV3Root(client.store, client.dbName);
  if (root === null) return null;
  if (files.length === 0) return root;
  if (opts.timestamp !== undefined) {
    // Prefer LTX data whenever it has a restore point before the time.
    try {
      calcRestorePlan(files, { timestamp: opts.timestamp });
      return null;
    } catch (err) {
      return err instanceof NotFoundError ? root : null;
    }
  }
  const desc = await describeV3(client.store, root);
  const newestLtx = Math.max(...files.map((f) => f.createdAt.getTime()));
  return desc.newest !== null && desc.newest.getTime() > newestLtx ? root : null;
}
