/**
 * The uploader of one database: ships the files of the local queue to the replica, L0 files strictly in TXID
 * order (each must start right after the last one shipped), then snapshots whose TXID is covered. It runs as
 * its own async loop, so a slow or unreachable replica never blocks the WAL reading loop: the queue grows on
 * disk and drains in order when the replica is back.
 *
 * Failures: the store underneath retries transient errors (full-jitter backoff, circuit breaker); what
 * still fails here is retried by this loop with its own backoff (1 s doubling to 30 s). Authentication and
 * missing-bucket errors are logged once per change of message and retried slowly (60 s): the queue is kept,
 * and replication resumes by itself once the credentials or the bucket are fixed.
 *
 * Before a file is shipped it is decoded and verified (`verifyLtx`): a file damaged on the local disk is never
 * uploaded. A damaged file, or a gap in the queue, is handed to the replication loop (`onProblem`), which
 * rebuilds the queue from the last shipped TXID with a full L0 file; the uploader waits for that.
 *
 * @module
 */

import { AuthError, BucketNotFoundError, errorClassOf, localIoError, messageOf } from "../errors.ts";
import { Crc64 } from "../ltx/checksum.ts";
import { verifyLtx } from "../ltx/decoder.ts";
import type { LtxHeader } from "../ltx/types.ts";
import type { EventBus } from "../observe/events.ts";
import type { Logger } from "../observe/log.ts";
import type { ReplicaClient } from "../storage/replica_client.ts";
import { readFileChunks } from "../util/fs.ts";
import { nodeCrypto } from "../util/node_crypto.ts";
import type { LocalQueue, QueuedFile } from "./queue.ts";

/** Throws when the header's TXIDs are not the ones in the queued file's name. */
function checkNamedRange(header: LtxHeader, f: QueuedFile): void {
  if (header.minTXID !== f.minTXID || header.maxTXID !== f.maxTXID) {
    throw new Error(`header says TXIDs ${header.minTXID}-${header.maxTXID}, the file name says otherwise`);
  }
}

/**
 * Queue files on disk larger than this are verified and uploaded as streams ({@link Uploader}'s
 * `#shipStreamed`); smaller ones are read whole (one read, then a link or a single PUT).
 */
export const STREAMED_SHIP_BYTES = 8 << 20;

/** Tuning of the upload loop (defaults in parentheses). */
export interface UploaderOptions {
  /** How often an idle uploader looks at the queue even without a notification, ms (1000). */
  idleMs: number;
  /** First retry delay after a failed pass, ms (1000). */
  minBackoffMs: number;
  /** Largest retry delay after failed passes, ms (30 000). */
  maxBackoffMs: number;
  /** Retry delay after an authentication or missing-bucket error, ms (60 000). */
  authBackoffMs: number;
  /** Tries the store makes per request (for `upload_failed.attempts`). */
  attempts: number;
}

/** Defaults of {@link UploaderOptions}. */
export const UPLOADER_DEFAULTS: UploaderOptions = {
  idleMs: 1000,
  minBackoffMs: 1000,
  maxBackoffMs: 30_000,
  authBackoffMs: 60_000,
  attempts: 5,
};

/** What the uploader cannot fix alone: a gap in the queue or a damaged local file. */
export type UploadProblem = { kind: "gap"; expected: number; found: QueuedFile } | {
  kind: "corrupt";
  file: QueuedFile;
  error: string;
};

/** Wiring of an {@link Uploader}. */
export interface UploaderDeps {
  /** The local queue (shared with the replication loop). */
  queue: LocalQueue;
  /** Where files go. */
  client: ReplicaClient;
  /** Event bus. */
  bus: EventBus;
  /** Database name (events, logs). */
  db: string;
  /** Logger of this database. */
  log: Logger;
  /** Called before each pass that has something to ship (e.g. re-checks the lease); may throw. */
  beforeUpload?: () => Promise<void>;
  /** Called when the queue needs rebuilding; the uploader pauses until {@link Uploader.resume}. */
  onProblem?: (p: UploadProblem) => void;
}

/** The upload loop of one database. */
export class Uploader {
  /** Highest TXID known to be on the replica (L0 chain contiguous up to here). */
  replicatedTxid = 0;
  /** Last successful upload (ms since epoch). */
  lastUploadAt: number | null = null;
  /** Last failure (cleared by a success). */
  lastError: { message: string; errorClass: ReturnType<typeof errorClassOf>; at: number } | null = null;

  readonly #d: UploaderDeps;
  readonly #o: UploaderOptions;
  #running = false;
  #paused = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #backoffMs = 0;
  #lastLogged = "";
  #consecutiveFailures = 0;

  /** An uploader; call {@link start} to run the loop, or {@link pass} for one-shot use. */
  constructor(deps: UploaderDeps, opts: Partial<UploaderOptions> = {}) {
    this.#d = deps;
    this.#o = { ...UPLOADER_DEFAULTS, ...opts };
  }

  /** Whether the loop is paused waiting for the queue to be rebuilt. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Files and bytes not yet on the replica, and when the oldest pending L0 was read (ms, or null). */
  pending(): { files: number; bytes: number; oldest: number | null } {
    return this.#d.queue.pending(this.replicatedTxid);
  }

  /** Starts the loop. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Wakes the loop (a new file was queued). Does not cut a failure backoff short. */
  notify(): void {
    if (this.#backoffMs === 0) this.#wake?.();
  }

  /** Resumes after the replication loop rebuilt the queue. */
  resume(): void {
    this.#paused = false;
    this.#backoffMs = 0;
    this.#wake?.();
  }

  /**
   * Waits until nothing is pending or `timeoutMs` passed; a failure backoff in progress is cut short so the
   * last files get a try. Returns whether the queue is empty.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    this.#backoffMs = 0;
    this.#wake?.();
    while (this.pending().files > 0 && Date.now() < deadline && this.#running && !this.#paused) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
      if (this.#backoffMs > 0 && this.#consecutiveFailures > 0) {
        this.#backoffMs = 0;
        this.#wake?.();
      }
    }
    return this.pending().files === 0;
  }

  /** Stops the loop; an upload in flight is abandoned (it is repeated, idempotently, on the next start). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#wake?.();
    // Do not wait for an in-flight request to a hung server: give it a moment, then let it go.
    await Promise.race([this.#loop, new Promise((r) => setTimeout(r, 200))]);
  }

  async #run(): Promise<void> {
    while (this.#running) {
      let delay = this.#o.idleMs;
      if (!this.#paused) {
        try {
          await this.pass();
          this.#backoffMs = 0;
          this.#consecutiveFailures = 0;
        } catch (err) {
          delay = this.#failed(err);
          // Files held in memory wait on disk from now on: the outage may outlast this process.
          await this.#d.queue.persist(this.replicatedTxid).catch((e) =>
            this.#d.log.warn("cannot write queued files to disk", { error: messageOf(e) })
          );
        }
      }
      if (!this.#running) break;
      if (this.#backoffMs === 0 && !this.#paused && this.pending().files > 0 && this.#canProgress()) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, delay);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = null;
    }
  }

  /** Whether a pass right now could ship something (the next L0 is there, or a covered snapshot). */
  #canProgress(): boolean {
    const next = this.#d.queue.files(0).find((f) => f.maxTXID > this.replicatedTxid);
    if (next && next.minTXID === this.replicatedTxid + 1) return true;
    return this.#d.queue.files(9).some((f) => f.maxTXID <= this.replicatedTxid);
  }

  #failed(err: unknown): number {
    const message = messageOf(err);
    const errorClass = errorClassOf(err);
    this.lastError = { message, errorClass, at: Date.now() };
    this.#consecutiveFailures++;
    const { bus, db, log } = this.#d;
    const slow = err instanceof AuthError || err instanceof BucketNotFoundError;
    if (err instanceof AuthError) {
      if (message !== this.#lastLogged) {
        log.error("replica rejected the credentials; files stay queued until this is fixed", {
          error: message,
        });
        bus.emit({ type: "auth_failure", db, error: message });
      }
    } else if (message !== this.#lastLogged) {
      log.warn("upload failed; files stay queued and will be retried", { error: message, class: errorClass });
    }
    this.#lastLogged = message;
    bus.emit({
      type: "upload_failed",
      db,
      error: message,
      errorClass,
      attempts: slow ? 1 : this.#o.attempts,
    });
    this.#backoffMs = slow ? this.#o.authBackoffMs : Math.min(
      this.#o.maxBackoffMs,
      this.#o.minBackoffMs * 2 ** Math.min(this.#consecutiveFailures - 1, 20),
    );
    return this.#backoffMs;
  }

  /**
   * One pass: ships every L0 file that continues the chain, then every snapshot the chain covers, deleting
   * local files no longer needed. Throws the first failure (files stay queued). Returns files shipped.
   */
  async pass(): Promise<number> {
    const { queue } = this.#d;
    let shipped = 0;
    await this.#cleanup();
    const l0 = queue.files(0).filter((f) => f.maxTXID > this.replicatedTxid);
    const l9 = () => queue.files(9).filter((f) => f.maxTXID <= this.replicatedTxid);
    if (l0.length === 0 && l9().length === 0) return 0;
    await this.#d.beforeUpload?.();
    for (const f of l0) {
      if (!this.#running && this.#loop !== null) break;
      if (this.#paused) return shipped;
      if (f.minTXID !== this.replicatedTxid + 1) {
        this.#problem({ kind: "gap", expected: this.replicatedTxid + 1, found: f });
        return shipped;
      }
      if (!(await this.#ship(f))) return shipped;
      this.replicatedTxid = f.maxTXID;
      shipped++;
      await this.#cleanup();
    }
    for (const f of l9()) {
      if (!(await this.#ship(f))) return shipped;
      await queue.remove(f);
      shipped++;
    }
    return shipped;
  }

  /**
   * Uploads one file after verifying it; false when the file is damaged (reported, uploader paused). A file
   * held in memory (never on disk) is shipped as encoded: there is no disk copy that could be damaged.
   */
  async #ship(f: QueuedFile): Promise<boolean> {
    if (!f.bytes && f.size > STREAMED_SHIP_BYTES) return await this.#shipStreamed(f);
    const { queue, client } = this.#d;
    const bytes = await queue.read(f);
    let timestamp = f.timestamp;
    if (!f.bytes) {
      try {
        const { header } = await verifyLtx(bytes, f.path);
        checkNamedRange(header, f);
        timestamp = header.timestamp;
      } catch (err) {
        this.#problem({ kind: "corrupt", file: f, error: messageOf(err) });
        return false;
      }
    }
    const t0 = performance.now();
    // A queue file on disk is durable and never changes: a directory replica may link it instead of copying.
    await client.writeLtxFile(f.level, f.minTXID, f.maxTXID, bytes, {
      timestamp,
      sourcePath: f.bytes ? undefined : f.path,
    });
    this.#shipped(f, bytes.length, timestamp, t0);
    return true;
  }

  /**
   * {@link #ship} for a large file on disk (a snapshot, a full copy): one streaming pass verifies it and
   * computes its digests, then the store uploads it from the file (a link or a copy in a directory replica,
   * a multipart upload on S3). Memory use does not grow with the file: reading a 224 MB snapshot whole to
   * ship it took ~500 MB of resident memory. The file cannot change in between (queue files are immutable).
   */
  async #shipStreamed(f: QueuedFile): Promise<boolean> {
    const { client } = this.#d;
    const { createHash } = await nodeCrypto();
    const sha = createHash("sha256");
    const crc = new Crc64();
    let size = 0;
    let readFailure: unknown = null;
    const tap = async function* (): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of readFileChunks(f.path)) {
          sha.update(chunk);
          crc.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      } catch (err) {
        readFailure = err;
        throw err;
      }
    };
    let timestamp: number;
    const chunks = tap();
    try {
      const { header } = await verifyLtx(chunks, f.path);
      checkNamedRange(header, f);
      if (size !== f.size) throw new Error(`${size} bytes read up to its trailer, the file has ${f.size}`);
      timestamp = header.timestamp;
    } catch (err) {
      if (readFailure !== null) throw localIoError(readFailure, f.path, "read");
      this.#problem({ kind: "corrupt", file: f, error: messageOf(err) });
      return false;
    } finally {
      await chunks.return(undefined); // closes the file, whatever the decoder left unread
    }
    const t0 = performance.now();
    await client.writeLtxFileFromPath(f.level, f.minTXID, f.maxTXID, f.path, {
      timestamp,
      size,
      sha256: sha.digest("hex"),
      crc64: crc.digest(),
    });
    this.#shipped(f, size, timestamp, t0);
    return true;
  }

  /** Bookkeeping and the `upload` event after a file reached the replica (`t0`: when its upload began). */
  #shipped(f: QueuedFile, bytes: number, timestamp: number, t0: number): void {
    const { bus, db } = this.#d;
    const seconds = (performance.now() - t0) / 1000;
    this.lastUploadAt = Date.now();
    this.lastError = null;
    this.#lastLogged = "";
    bus.emit({
      type: "upload",
      db,
      level: f.level,
      minTXID: f.minTXID,
      maxTXID: f.maxTXID,
      bytes,
      seconds,
      readAt: timestamp,
    });
  }

  #problem(p: UploadProblem): void {
    this.#paused = true;
    const what = p.kind === "gap"
      ? `queue has a gap: expected TXID ${p.expected}, found ${p.found.path}`
      : `queued file ${p.file.path} is damaged (${p.error})`;
    this.#d.log.error(`${what}; rebuilding the queue from TXID ${this.replicatedTxid} with a full snapshot`);
    this.#d.bus.emit({ type: "error", db: this.#d.db, errorClass: "corruption", message: what });
    if (p.kind === "corrupt") {
      this.#d.bus.emit({ type: "corruption_detected", db: this.#d.db, object: p.file.path, error: p.error });
    }
    this.#d.onProblem?.(p);
  }

  /**
   * Deletes shipped L0 files, keeping the newest L0 (its header is the replication position after a
   * restart). Local L0 files are not kept for compaction: compaction reads the replica's copies.
   */
  async #cleanup(): Promise<void> {
    const { queue } = this.#d;
    const newest = queue.newestL0();
    for (const f of queue.files(0)) {
      if (f.maxTXID > this.replicatedTxid) break;
      if (newest && f.path === newest.path) continue;
      await queue.remove(f);
    }
  }
}
