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
}

/** Where an encoder writes. */
export interface FileSink {
  /** Appends bytes. */
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly bytes: number;
}

/**
 * Writes straight through: the LTX encoder already hands over chunks of 64 KiB…1 MiB, so another buffer here
 * would only add a 1 MiB allocation per file (one per sync per database).
 */
class FileWriteSink implements FileSink {
  #f: Deno.FsFile;
  bytes = 0;

  constructor(f: Deno.FsFile) {
    this.#f = f;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await writeAll(this.#f, chunk);
    this.bytes += chunk.length;
  }
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
   */
  async write(
    level: QueueLevel,
    minTXID: number,
    maxTXID: number,
    timestamp: number,
    build: (sink: FileSink) => Promise<void>,
  ): Promise<QueuedFile> {
    const path = `${this.levelDir(level)}/${formatLtxFilename(minTXID, maxTXID)}`;
    const tmp = tempPathFor(path);
    let f: Deno.FsFile | undefined;
    let size = 0;
    try {
      f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
      const sink = new FileWriteSink(f);
      await build(sink);
      size = sink.bytes;
      await f.sync();
      f.close();
      f = undefined;
      await Deno.rename(tmp, path);
    } catch (err) {
      try {
        f?.close();
      } catch { /* already closed */ }
      await Deno.remove(tmp).catch(() => {});
      throw localIoError(err, path, "write");
    }
    await fsyncDir(this.levelDir(level));
    const file: QueuedFile = { level, minTXID, maxTXID, size, path, timestamp };
    const list = this.#files[level].filter((x) => !(x.minTXID === minTXID && x.maxTXID === maxTXID));
    list.push(file);
    this.#files[level] = list.sort(byTxid);
    return file;
  }

  /** Reads a queued file whole (for upload). */
  async read(file: QueuedFile): Promise<Uint8Array> {
    try {
      return await Deno.readFile(file.path);
    } catch (err) {
      throw localIoError(err, file.path, "read");
    }
  }

  /** Deletes a file from disk and the index; a file already gone is not an error. */
  async remove(file: QueuedFile): Promise<void> {
    try {
      await Deno.remove(file.path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw localIoError(err, file.path, "delete");
    }
    this.#files[file.level] = this.#files[file.level].filter((x) => x.path !== file.path);
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
