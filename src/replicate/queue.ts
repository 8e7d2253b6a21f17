/**
 * The local on-disk queue of one database: level-0 LTX files written by the replication loop and level-9
 * snapshots, waiting to be shipped by the uploader, plus the exclusive lock that makes one process the only
 * replicator of a database on this machine.
 *
 * ```
 * <db dir>/.<db file>-walrust/
 *     ltx/0/<min>-<max>.ltx    L0 files (one per sync), written atomically; deleted once uploaded, except the
 *                               newest, whose header is the replication position after a restart
 *     ltx/9/<min>-<max>.ltx    full snapshots waiting for upload
 *     lock                      flock()ed by the replicating process; holds its pid
 * ```
 *
 * Files are written through a temp file, fsync, rename and a directory fsync, so a crash (kill -9, power
 * loss) leaves either no file or the complete file, never a torn one. Temp files of dead processes are
 * removed by {@link LocalQueue.init}.
 *
 * ## Small files stay in memory first
 *
 * With `memory: true` (the `watch` loop), a file of up to {@link MEMORY_FILE_MAX} bytes is kept in memory
 * instead: the uploader ships it from there, usually within milliseconds, and it never touches the disk.
 * Creating, fsyncing, renaming and later deleting a file per sync per database was the largest CPU cost of
 * replicating many databases (bench/replication_compare.ts). Nothing committed depends on those bytes while
 * the replication loop holds its read lock: the frames they came from stay in the WAL. So memory files are
 * written to disk ({@link LocalQueue.persist}) whenever that stops being true or they pile up: before every
 * checkpoint (the loop releases the read lock), on stop, when an upload fails, and above
 * {@link MEMORY_QUEUE_MAX} bytes. A crash loses only memory files whose frames are still in the WAL or that
 * are already on the replica; the next start finds its position in the replica's newest L0 file instead.
 *
 * @module
 */

import { ConflictError, localIoError } from "../errors.ts";
import { formatLtxFilename, parseLtxFilename } from "../ltx/types.ts";
import { fsyncDir, tempPathFor, writeAll } from "../util/fs.ts";

/** Levels the local queue holds: 0 (one file per sync) and 9 (snapshots). */
export type QueueLevel = 0 | 9;

/** One file in the local queue. */
export interface QueuedFile {
  /** 0 or 9. */
  level: QueueLevel;
  /** First TXID covered. */
  minTXID: number;
  /** Last TXID covered. */
  maxTXID: number;
  /** Size in bytes. */
  size: number;
  /** Absolute path. */
  path: string;
  /** When its data was read from the WAL (header timestamp; file mtime for files found at start), ms. */
  timestamp: number;
  /** The content while the file is held in memory only (see the module doc); absent for files on disk. */
  bytes?: Uint8Array;
}

/** Where an encoder writes. */
export interface FileSink {
  /** Appends bytes. */
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly bytes: number;
}

/** Files up to this size are read with one synchronous call (see {@link FileWriteSink} on why). */
const SYNC_READ_MAX = 1024 * 1024;

/** Largest file {@link LocalQueue.write} keeps in memory with `memory: true`; a larger one goes to disk. */
export const MEMORY_FILE_MAX = 256 * 1024;

/** Above this many bytes of pending memory files, {@link LocalQueue.write} moves them to disk. */
export const MEMORY_QUEUE_MAX = 1024 * 1024;

/**
 * Writes straight through: the LTX encoder already hands over chunks of up to 1 MiB, so another buffer here
 * would only add an allocation per file (one per sync per database). Writes are synchronous: they land in
 * the page cache in microseconds, while each async file call of Deno is a round trip through its blocking
 * thread pool, which with many databases costs more CPU than the writes. Only fsync, which waits for the
 * disk, stays asynchronous.
 */
class FileWriteSink implements FileSink {
  readonly #tmp: string;
  readonly #memoryMax: number;
  /** The temp file, once the content went to disk. */
  file: Deno.FsFile | null = null;
  /** Chunks held while the content fits in memory (the encoder never reuses a chunk it handed over). */
  #chunks: Uint8Array[] = [];
  bytes = 0;

  /** Writes to `tmp`, or to memory while the content stays within `memoryMax` bytes (0: disk only). */
  constructor(tmp: string, memoryMax: number) {
    this.#tmp = tmp;
    this.#memoryMax = memoryMax;
    if (memoryMax <= 0) this.#open();
  }

  #open(): void {
    this.file = Deno.openSync(this.#tmp, { write: true, createNew: true, mode: 0o644 });
    for (const c of this.#chunks) writeAllSync(this.file, c);
    this.#chunks = [];
  }

  write(chunk: Uint8Array): Promise<void> {
    try {
      if (!this.file && this.bytes + chunk.length > this.#memoryMax) this.#open();
      if (this.file) writeAllSync(this.file, chunk);
      else this.#chunks.push(chunk);
    } catch (err) {
      return Promise.reject(err);
    }
    this.bytes += chunk.length;
    return Promise.resolve();
  }

  /** The content, when it stayed in memory: one exact-size copy (a chunk may be a view of a larger buffer). */
  memoryContent(): Uint8Array | null {
    if (this.file) return null;
    const out = new Uint8Array(this.bytes);
    let off = 0;
    for (const c of this.#chunks) {
      out.set(c, off);
      off += c.length;
    }
    this.#chunks = [];
    return out;
  }
}

function writeAllSync(f: Deno.FsFile, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) off += f.writeSync(b.subarray(off));
}

function byTxid(a: QueuedFile, b: QueuedFile): number {
  return a.minTXID - b.minTXID || a.maxTXID - b.maxTXID;
}

/**
 * The queue directory of one database, with an in-memory index of its files (the replication loop adds,
 * the uploader removes; both run on the one JS thread, so the index needs no locking).
 */
export class LocalQueue {
  /** The queue directory (`<db dir>/.<db file>-walrust`). */
  readonly dir: string;
  #files: Record<QueueLevel, QueuedFile[]> = { 0: [], 9: [] };
  /** The running {@link persist}, so two never write the same file. */
  #persisting: Promise<void> = Promise.resolve();

  /** A queue rooted at `dir`; call {@link init} before use. */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** The directory of a level's files. */
  levelDir(level: QueueLevel): string {
    return `${this.dir}/ltx/${level}`;
  }

  /**
   * Creates the directories, removes temp files left by a crashed process and indexes the files on disk.
   * Call only while holding the {@link acquireQueueLock lock}, or a live writer's temp files could be removed.
   */
  async init(): Promise<void> {
    for (const level of [0, 9] as const) {
      const dir = this.levelDir(level);
      try {
        await Deno.mkdir(dir, { recursive: true });
      } catch (err) {
        throw localIoError(err, dir, "create queue directory");
      }
      const found: QueuedFile[] = [];
      for await (const e of Deno.readDir(dir)) {
        if (!e.isFile) continue;
        if (e.name.startsWith(".") && e.name.endsWith(".tmp")) {
          await Deno.remove(`${dir}/${e.name}`).catch(() => {});
          continue;
        }
        const r = parseLtxFilename(e.name);
        if (!r) continue;
        const path = `${dir}/${e.name}`;
        const st = await Deno.stat(path);
        const timestamp = st.mtime?.getTime() ?? Date.now();
        found.push({ level, minTXID: r.minTXID, maxTXID: r.maxTXID, size: st.size, path, timestamp });
      }
      this.#files[level] = found.sort(byTxid);
    }
  }

  /** The files of a level, in TXID order (a copy). */
  files(level: QueueLevel): QueuedFile[] {
    return [...this.#files[level]];
  }

  /** The L0 file with the highest TXID, or null. */
  newestL0(): QueuedFile | null {
    const l0 = this.#files[0];
    return l0.length ? l0[l0.length - 1] : null;
  }

  /**
   * What still has to ship: L0 files above `uploadedTxid` and every L9 file, with the timestamp of the oldest
   * L0 among them (null when none).
   */
  pending(uploadedTxid: number): { files: number; bytes: number; oldest: number | null } {
    let files = 0;
    let bytes = 0;
    let oldest: number | null = null;
    for (const f of this.#files[0]) {
      if (f.maxTXID > uploadedTxid) {
        files++;
        bytes += f.size;
        if (oldest === null || f.timestamp < oldest) oldest = f.timestamp;
      }
    }
    for (const f of this.#files[9]) {
      files++;
      bytes += f.size;
    }
    return { files, bytes, oldest };
  }

  /**
   * Writes the file `<min>-<max>.ltx` of `level` atomically: `build` streams the content into a sink backed by
   * a temp file; then fsync, rename, directory fsync. If `build` throws, the temp file is removed and nothing
   * becomes visible. Returns the new file (already in the index).
   *
   * This is `writeFileAtomic` (src/util/fs.ts) in streaming form: an encoder produces the bytes page by page,
   * and a snapshot of a large database must not be held in memory.
   *
   * With `memory`, a file of at most {@link MEMORY_FILE_MAX} bytes is held in memory instead (see the module
   * doc); when the pending memory files then exceed {@link MEMORY_QUEUE_MAX} bytes above `uploadedTxid`,
   * they are all moved to disk.
   */
  async write(
    level: QueueLevel,
    minTXID: number,
    maxTXID: number,
    timestamp: number,
    build: (sink: FileSink) => Promise<void>,
    opts: { memory?: boolean; uploadedTxid?: number } = {},
  ): Promise<QueuedFile> {
    const path = `${this.levelDir(level)}/${formatLtxFilename(minTXID, maxTXID)}`;
    const tmp = tempPathFor(path);
    let sink: FileWriteSink | undefined;
    let bytes: Uint8Array | null = null;
    try {
      sink = new FileWriteSink(tmp, opts.memory ? MEMORY_FILE_MAX : 0);
      await build(sink);
      bytes = sink.memoryContent();
      if (sink.file) {
        await sink.file.sync();
        sink.file.close();
        sink.file = null;
        Deno.renameSync(tmp, path);
      }
    } catch (err) {
      try {
        sink?.file?.close();
      } catch { /* already closed */ }
      await Deno.remove(tmp).catch(() => {});
      throw localIoError(err, path, "write");
    }
    const size = sink.bytes;
    if (!bytes) await fsyncDir(this.levelDir(level));
    const file: QueuedFile = { level, minTXID, maxTXID, size, path, timestamp };
    if (bytes) file.bytes = bytes;
    this.#replace(file);
    if (bytes && this.memoryBytes(opts.uploadedTxid ?? 0) > MEMORY_QUEUE_MAX) {
      await this.persist(opts.uploadedTxid ?? 0);
    }
    return file;
  }

  /** Puts `file` into the index in place of one with the same level and TXIDs. */
  #replace(file: QueuedFile): void {
    const { level, minTXID, maxTXID } = file;
    const list = this.#files[level].filter((x) => !(x.minTXID === minTXID && x.maxTXID === maxTXID));
    list.push(file);
    this.#files[level] = list.sort(byTxid);
  }

  /** Bytes of memory files not yet uploaded (L0 above `uploadedTxid`, every L9). */
  memoryBytes(uploadedTxid: number): number {
    let n = 0;
    for (const f of this.#files[0]) if (f.bytes && f.maxTXID > uploadedTxid) n += f.size;
    for (const f of this.#files[9]) if (f.bytes) n += f.size;
    return n;
  }

  /**
   * Moves memory files to disk (temp file, fsync, rename, one directory fsync per level): every L9 and every
   * L0 above `uploadedTxid` (0 = all of them, including the newest, the position for the next start). The
   * memory copy is dropped, so the uploader reads (and verifies) the disk copy from then on. Calls are
   * serialised; a file removed meanwhile (shipped) is not left on disk.
   */
  persist(uploadedTxid = 0): Promise<void> {
    const run = this.#persisting.then(() => this.#persist(uploadedTxid));
    this.#persisting = run.catch(() => {});
    return run;
  }

  async #persist(uploadedTxid: number): Promise<void> {
    for (const level of [0, 9] as const) {
      const todo = this.#files[level].filter((f) => f.bytes && (level === 9 || f.maxTXID > uploadedTxid));
      if (todo.length === 0) continue;
      for (const f of todo) {
        const tmp = tempPathFor(f.path);
        let out: Deno.FsFile | undefined;
        try {
          out = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o644 });
          writeAllSync(out, f.bytes!);
          await out.sync();
          out.close();
          out = undefined;
          // From here to the index update nothing awaits: the uploader cannot remove the entry in between.
          if (this.#files[level].includes(f)) {
            Deno.renameSync(tmp, f.path);
            const { bytes: _, ...onDisk } = f;
            this.#replace(onDisk);
          } else {
            Deno.removeSync(tmp);
          }
        } catch (err) {
          try {
            out?.close();
          } catch { /* already closed */ }
          await Deno.remove(tmp).catch(() => {});
          throw localIoError(err, f.path, "write");
        }
      }
      await fsyncDir(this.levelDir(level));
    }
  }

  /** Reads a queued file whole (for upload). */
  async read(file: QueuedFile): Promise<Uint8Array> {
    if (file.bytes) return file.bytes;
    try {
      // Small files (every incremental L0) in one synchronous call; snapshots off the event loop.
      return file.size <= SYNC_READ_MAX ? Deno.readFileSync(file.path) : await Deno.readFile(file.path);
    } catch (err) {
      throw localIoError(err, file.path, "read");
    }
  }

  /** Deletes a file from disk (unless it is held in memory) and the index; a file already gone is not an error. */
  remove(file: QueuedFile): Promise<void> {
    const current = this.#files[file.level].find((x) => x.path === file.path);
    if (!current?.bytes) {
      try {
        Deno.removeSync(file.path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) {
          return Promise.reject(localIoError(err, file.path, "delete"));
        }
      }
    }
    this.#files[file.level] = this.#files[file.level].filter((x) => x.path !== file.path);
    return Promise.resolve();
  }
}

/** The lock of a queue directory, held for the life of the replicating process. */
export interface QueueLock {
  /** Path of the lock file. */
  readonly path: string;
  /** Releases the lock (closing the file releases the flock). Idempotent. */
  release(): void;
}

/**
 * Takes the exclusive lock of the queue directory (`flock` on `<dir>/lock`, non-blocking) and writes this
 * process's pid into it. If another process holds it, throws {@link ConflictError} naming that process:
 * `<what> is being replicated by process N<hint>`.
 *
 * flock is used, not fcntl: flock locks belong to the open file, so they neither disturb nor are disturbed by
 * the POSIX locks SQLite holds in this same process, and the kernel drops them when the process dies (kill -9).
 */
export async function acquireQueueLock(dir: string, what: string, hint = ""): Promise<QueueLock> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (err) {
    throw localIoError(err, dir, "create queue directory");
  }
  const path = `${dir}/lock`;
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true, write: true, create: true });
  } catch (err) {
    throw localIoError(err, path, "open lock file");
  }
  let locked = false;
  try {
    locked = await f.tryLock(true);
  } catch (err) {
    f.close();
    throw localIoError(err, path, "lock");
  }
  if (!locked) {
    f.close();
    let holder = "another process";
    try {
      const pid = (await Deno.readTextFile(path)).trim();
      if (/^\d+$/.test(pid)) holder = `process ${pid}`;
    } catch { /* unreadable: keep the generic name */ }
    throw new ConflictError(`${what} is being replicated by ${holder} (lock ${path})${hint}`);
  }
  try {
    await f.truncate(0);
    await writeAll(f, new TextEncoder().encode(`${Deno.pid}\n`));
  } catch {
    // The lock itself is what matters; a pid that could not be written only makes the message vaguer.
  }
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      try {
        f.close();
      } catch { /* already closed */ }
    },
  };
}
