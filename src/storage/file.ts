/**
 * {@link ObjectStore} over a local directory (Litestream's `file` replica type).
 *
 * Keys map to paths below the root. Every key is validated before a path is built (only
 * `[A-Za-z0-9._-]` segments separated by single `/`, no `.`/`..` segments, nothing absolute), and listings
 * skip names that would not be valid keys and never follow symlinks, so nothing outside the root is ever
 * touched. Writes are atomic (temp file, fsync, rename, directory fsync); `ifNoneMatch: "*"` is exclusive
 * (hard link of the complete temp file, which fails if the name exists). `ifMatch` compares a synthetic
 * ETag (mtime, size, inode) just before the rename: good enough for one host, not a cross-host guarantee.
 *
 * A missing root reads as empty. On write the root is created if its parent exists; a missing parent is a
 * {@link BucketNotFoundError} (a mistyped path should not silently create a tree somewhere).
 *
 * Digests: a put with `sha256` metadata (what S3 keeps as `x-amz-meta-sha256`) also writes a sidecar
 * `.<name>.sha256` beside the file: JSON with the hex SHA-256 of its bytes and their CRC-64 (`crc64`, the
 * LTX polynomial; restore's two decoding threads each fold it over their own segments, where a SHA-256 would
 * need a third pass over the file). `head` reports the SHA-256 as metadata and `get`/`getStream` check the
 * bytes against it ({@link CorruptionError} naming the object on a mismatch).
 * That is what catches damage a format check cannot see: an LTX file checksum covers the decompressed pages,
 * so a changed LZ4 match offset that still decodes to the same page passes every LTX rule. Listings skip
 * sidecars, and so does Litestream (its file client ignores names that are not `<min>-<max>.ltx`). A
 * sidecar is written after its file, in place and without fsync: after a crash it may be missing, empty or
 * torn, which does not parse and reads as "no digest" (the LTX checks still apply), never as a wrong
 * digest; an overwrite removes the old
 * sidecar durably before the new file is written. Readers take the digest before and after reading the
 * bytes and check only when both agree, so a replacement during a read is never reported as damage.
 *
 * @module
 */

import {
  BucketNotFoundError,
  ConflictError,
  CorruptionError,
  LocalIoError,
  localIoError,
  NotFoundError,
  UsageError,
} from "../errors.ts";
import { crc64 } from "../ltx/checksum.ts";
import {
  copyFileAtomic,
  dirOf,
  fsyncDir,
  tempPathFor,
  writeAll,
  writeAllSync,
  writeFileAtomic,
} from "../util/fs.ts";
import { nodeCrypto } from "../util/node_crypto.ts";
import type {
  ListOptions,
  ObjectHead,
  ObjectInfo,
  ObjectStore,
  PutFileOptions,
  PutOptions,
  SweepResult,
} from "./object_store.ts";

const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** Whether `key` is a valid object key for the file backend (see the module doc). */
export function isValidFileKey(key: string): boolean {
  if (key === "" || key.length > 1024) return false;
  for (const seg of key.split("/")) {
    if (!SEGMENT_RE.test(seg) || seg === "." || seg === "..") return false;
  }
  return true;
}

/** Temp files of `writeFileAtomic` (`.<name>.<pid>-<rand>.tmp`) and Litestream's `<name>.tmp`. */
function isTempName(name: string): boolean {
  return name.endsWith(".tmp");
}

/** The metadata key a sidecar holds (the same key S3 objects carry). */
const DIGEST_KEY = "sha256";

/** Sidecar names: `.<name>.sha256`. */
function isSidecarName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(".sha256");
}

/** The path of the digest sidecar of the file at `path` (`<dir>/.<name>.sha256`). */
export function sidecarPath(path: string): string {
  return `${dirOf(path)}/.${path.slice(path.lastIndexOf("/") + 1)}.sha256`;
}

/** The digests a sidecar records for a file. */
export interface RecordedDigests {
  /** Hex SHA-256 of the file (lower case). */
  sha256: string;
  /** CRC-64/GO-ISO of the file's bytes (as `crc64()` of src/ltx/checksum.ts), when recorded. */
  crc64?: bigint;
}

/**
 * The digests recorded for the file at `path`, or undefined when it has no usable sidecar. For readers that
 * open replica files directly (restore's local fast paths).
 */
export function recordedDigests(path: string): RecordedDigests | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(sidecarPath(path));
  } catch {
    return undefined;
  }
  try {
    const j = JSON.parse(text) as { sha256?: unknown; crc64?: unknown };
    if (typeof j.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(j.sha256)) return undefined;
    const crc = typeof j.crc64 === "string" && /^[0-9a-f]{16}$/.test(j.crc64)
      ? BigInt(`0x${j.crc64}`)
      : undefined;
    return crc === undefined ? { sha256: j.sha256 } : { sha256: j.sha256, crc64: crc };
  } catch {
    return undefined; // empty or torn after a crash: no digest
  }
}

/** The SHA-256 recorded for the file at `path`, or undefined. */
export function recordedSha256(path: string): string | undefined {
  return recordedDigests(path)?.sha256;
}

function digestMismatch(key: string, actual: string, expected: string): CorruptionError {
  return new CorruptionError(
    `sha256 ${actual} of the file differs from its recorded sha256 ${expected}: the file changed after it ` +
      `was written (disk damage or an edit)`,
    { object: key },
  );
}

function etagOf(st: Deno.FileInfo): string {
  const mtime = st.mtime?.getTime() ?? 0;
  return `"${mtime.toString(16)}-${st.size.toString(16)}-${(st.ino ?? 0).toString(16)}"`;
}

/** Resolves a possibly relative directory against the working directory, without touching the disk. */
export function absolutePath(path: string): string {
  const joined = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const out: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return "/" + out.join("/");
}

/** A local directory as an object store. */
export class FileObjectStore implements ObjectStore {
  /** Always `file`. */
  readonly kind = "file" as const;
  /** The absolute root directory. */
  readonly root: string;
  /** Same as {@link root}: a directory path is its own display form. */
  readonly displayUrl: string;

  /** Creates a store rooted at `root` (relative paths are resolved against the working directory now). */
  constructor(root: string) {
    this.root = absolutePath(root);
    this.displayUrl = this.root;
  }

  /** The path of a validated key; {@link UsageError} for a key that could escape the root. */
  localPath(key: string): string {
    if (!isValidFileKey(key)) {
      throw new UsageError(
        `invalid object key ${
          JSON.stringify(key)
        } for ${this.root}: only [A-Za-z0-9._-] segments separated by '/'`,
      );
    }
    return this.root === "/" ? `/${key}` : `${this.root}/${key}`;
  }

  /** Lists files under the root whose key starts with `prefix`, in key order, without following symlinks. */
  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    const cut = prefix.lastIndexOf("/");
    const dirKey = cut < 0 ? "" : prefix.slice(0, cut);
    if (dirKey !== "" && !isValidFileKey(dirKey)) return; // no such directory can exist below the root
    yield* this.#walk(dirKey, prefix, options?.startAfter);
  }

  async *#walk(dirKey: string, prefix: string, startAfter: string | undefined): AsyncGenerator<ObjectInfo> {
    const dirPath = dirKey === "" ? this.root : this.localPath(dirKey);
    const entries: { name: string; sortKey: string; dir: boolean }[] = [];
    try {
      for await (const e of Deno.readDir(dirPath)) {
        if (e.isSymlink || !SEGMENT_RE.test(e.name) || e.name === "." || e.name === "..") continue;
        if (e.isDirectory) entries.push({ name: e.name, sortKey: e.name + "/", dir: true });
        else if (e.isFile && !isTempName(e.name) && !isSidecarName(e.name)) {
          entries.push({ name: e.name, sortKey: e.name, dir: false });
        }
      }
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
      throw localIoError(err, dirPath, "list");
    }
    // Sorting directories as "name/" makes a depth-first walk produce exact key (byte) order.
    entries.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const e of entries) {
      const key = dirKey === "" ? e.name : `${dirKey}/${e.name}`;
      if (e.dir) {
        const k = key + "/";
        if (k.startsWith(prefix) || prefix.startsWith(k)) yield* this.#walk(key, prefix, startAfter);
        continue;
      }
      if (!key.startsWith(prefix)) continue;
      if (startAfter !== undefined && key <= startAfter) continue;
      let st: Deno.FileInfo;
      try {
        st = await Deno.lstat(this.localPath(key));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue; // deleted while listing
        throw localIoError(err, this.localPath(key), "stat");
      }
      if (!st.isFile) continue;
      yield { key, size: st.size, lastModified: st.mtime ?? new Date(0), etag: etagOf(st) };
    }
  }

  /**
   * Reads a whole file; {@link NotFoundError} if absent, {@link CorruptionError} if its bytes differ from
   * its recorded digest.
   */
  async get(key: string): Promise<Uint8Array> {
    const path = this.localPath(key);
    // Read before and after the file: a put replacing it meanwhile removes the sidecar first and writes the
    // new one last, so a digest seen both times belongs to the bytes read (otherwise there is none to check).
    const expected = recordedSha256(path);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (err) {
      throw this.#readError(err, key, path);
    }
    if (expected) {
      const { createHash } = await nodeCrypto();
      const actual = createHash("sha256").update(bytes).digest("hex");
      if (actual !== expected && recordedSha256(path) === expected) {
        throw digestMismatch(key, actual, expected);
      }
    }
    return bytes;
  }

  /**
   * Streams a file; {@link NotFoundError} if absent. The stream closes the file when done or cancelled, and
   * errors with {@link CorruptionError} at its end if the bytes differ from the recorded digest.
   */
  async getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    const path = this.localPath(key);
    const expected = recordedSha256(path); // before the open (see get)
    const hash = expected ? (await nodeCrypto()).createHash("sha256") : null;
    let f: Deno.FsFile;
    try {
      f = await Deno.open(path, { read: true });
    } catch (err) {
      throw this.#readError(err, key, path);
    }
    if (!hash || !expected) return f.readable;
    return f.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, ctrl) {
          hash.update(chunk);
          ctrl.enqueue(chunk);
        },
        flush() {
          const actual = hash.digest("hex");
          // Checked again now, as in get: a replacement during the read is not damage.
          if (actual !== expected && recordedSha256(path) === expected) {
            throw digestMismatch(key, actual, expected);
          }
        },
      }),
    );
  }

  /** Size, mtime, synthetic ETag and the recorded `sha256` (the only metadata a file keeps); null if absent. */
  async head(key: string): Promise<ObjectHead | null> {
    const path = this.localPath(key);
    try {
      const st = await Deno.stat(path);
      if (!st.isFile) return null;
      const digest = recordedSha256(path);
      const metadata: Record<string, string> = digest ? { [DIGEST_KEY]: digest } : {};
      return { key, size: st.size, lastModified: st.mtime ?? new Date(0), etag: etagOf(st), metadata };
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return null;
      throw localIoError(err, path, "stat");
    }
  }

  /**
   * Writes a file atomically, creating directories below the root. `mtime` sets the modification time
   * (Litestream: the LTX header timestamp). Of the metadata only `sha256` is kept, in a sidecar (see the
   * module doc); it must be the digest of `body`.
   */
  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    const path = this.localPath(key);
    // An old sidecar must not outlive the file it describes: remove it (durably) before the file changes.
    await this.#removeSidecar(path);
    try {
      await this.#putOnce(key, path, body, options);
    } catch (err) {
      if (!(err instanceof NotFoundError) || options?.ifMatch !== undefined) throw err;
      // The directory is missing: create it (checking the root's parent) and try once more.
      await this.#ensureDir(dirOf(path));
      await this.#putOnce(key, path, body, options);
    }
    const digest = options?.metadata?.[DIGEST_KEY];
    if (digest && /^[0-9a-fA-F]{64}$/.test(digest)) this.#writeSidecar(path, digest.toLowerCase(), body);
    let etag: string | undefined;
    try {
      etag = etagOf(Deno.statSync(path));
    } catch { /* replaced or removed meanwhile: no ETag to report */ }
    return { etag };
  }

  /**
   * {@link ObjectStore.putFile}: a hard link to `src` when it can be made (the same file system), otherwise a
   * copy (temp file, fsync, rename, directory fsync); then the sidecar from the digests given. Memory use does
   * not depend on the file's size.
   */
  async putFile(key: string, src: string, options: PutFileOptions): Promise<{ etag?: string }> {
    const path = this.localPath(key);
    await this.#removeSidecar(path);
    const once = async (): Promise<void> => {
      if (this.#linkInto({ linkFrom: src, mtime: options.mtime }, path)) {
        await fsyncDir(dirOf(path));
        return;
      }
      await copyFileAtomic(src, path, options.mtime);
    };
    try {
      await once();
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      await this.#ensureDir(dirOf(path)); // the directory is missing: create it and try once more
      await once();
    }
    this.#writeSidecarText(path, options.sha256.toLowerCase(), options.crc64);
    let etag: string | undefined;
    try {
      etag = etagOf(Deno.statSync(path));
    } catch { /* replaced or removed meanwhile: no ETag to report */ }
    return { etag };
  }

  async #putOnce(key: string, path: string, body: Uint8Array, options?: PutOptions): Promise<void> {
    if (options?.ifMatch !== undefined) {
      const cur = await this.head(key);
      if (!cur) {
        throw new NotFoundError(`conditional write of ${this.root}/${key}: the object does not exist`);
      }
      if (cur.etag !== options.ifMatch) {
        throw new ConflictError(
          `conditional write of ${this.root}/${key} failed: it was changed by someone else (ETag differs)`,
        );
      }
    }
    if (options?.ifNoneMatch === "*") {
      await this.#createExclusive(key, path, body, options.mtime);
      return;
    }
    if (options?.linkFrom !== undefined && options.ifMatch === undefined && this.#linkInto(options, path)) {
      await fsyncDir(dirOf(path));
      return;
    }
    await writeFileAtomic(path, body, { mtime: options?.mtime });
  }

  /**
   * Hard-links `options.linkFrom` (durable, immutable: see {@link PutOptions.linkFrom}) to `path`, which must
   * not exist yet: a new name for bytes already on disk, so nothing is written or synced twice (an L0 file
   * of a replica on the queue's file system costs a link and a directory fsync). The mtime is set on the
   * source first, so the name never appears with another. False when this cannot be done (another file
   * system, `path` exists, the source is gone): the caller then writes the bytes.
   */
  #linkInto(options: PutOptions, path: string): boolean {
    try {
      if (options.mtime) Deno.utimeSync(options.linkFrom!, options.mtime, options.mtime);
      Deno.linkSync(options.linkFrom!, path);
      return true;
    } catch {
      return false;
    }
  }

  /** Writes a complete temp file, then hard-links it to `path`, which fails atomically if `path` exists. */
  async #createExclusive(key: string, path: string, body: Uint8Array, mtime?: Date): Promise<void> {
    const tmp = tempPathFor(path);
    let f: Deno.FsFile | undefined;
    try {
      f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
      await writeAll(f, body);
      await f.sync();
      f.close();
      f = undefined;
      if (mtime) await Deno.utime(tmp, mtime, mtime);
      await Deno.link(tmp, path);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        throw new ConflictError(`${this.root}/${key} already exists (created by another writer)`);
      }
      throw localIoError(err, path, "write");
    } finally {
      try {
        f?.close();
      } catch { /* already closed */ }
      await Deno.remove(tmp).catch(() => {});
    }
    await fsyncDir(dirOf(path));
  }

  async #ensureDir(dir: string): Promise<void> {
    try {
      await Deno.stat(this.root);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw localIoError(err, this.root, "stat");
      const parent = dirOf(this.root);
      try {
        const st = await Deno.stat(parent);
        if (!st.isDirectory) throw new Deno.errors.NotFound(parent);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
          throw new BucketNotFoundError(
            `replica directory ${this.root} cannot be created: its parent ${parent} does not exist; ` +
              `create it or fix the replica path`,
          );
        }
        throw localIoError(e, parent, "stat");
      }
    }
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return;
      const mapped = localIoError(err, dir, "create directory");
      if (mapped instanceof NotFoundError) {
        throw new LocalIoError(`create directory ${dir}: a path component is missing or not a directory`, {
          cause: err,
        });
      }
      throw mapped;
    }
  }

  /**
   * Removes files and their sidecars; absent ones are ignored. Directories are fsynced so the deletions
   * survive a crash.
   */
  async delete(keys: string[]): Promise<void> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.localPath(key);
      for (const p of [path, sidecarPath(path)]) {
        try {
          await Deno.remove(p);
          dirs.add(dirOf(p));
        } catch (err) {
          if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) continue;
          throw localIoError(err, p, "delete");
        }
      }
    }
    for (const d of dirs) await fsyncDir(d);
  }

  /**
   * Removes what interrupted writes left under `prefix` (a key prefix ending in `/`, or `""` for the whole
   * store) and last modified before `olderThan`: temp files (a process killed mid-write; see
   * {@link isTempName}) and digest sidecars whose file is gone (killed between a delete's two removals). A
   * write in progress keeps its temp file's mtime fresh, so a cut-off well in the past never touches one.
   * Symlinks are not followed. `bytes` counts only space really freed (a temp file hard-linked to its object
   * by an exclusive put is just a second name).
   */
  async sweepStale(prefix: string, olderThan: Date): Promise<SweepResult> {
    const result: SweepResult = { removed: [], bytes: 0 };
    const dirKey = prefix.replace(/\/$/, "");
    if (dirKey !== "" && !isValidFileKey(dirKey)) return result;
    const cutoff = olderThan.getTime();
    const visit = async (dirPath: string): Promise<void> => {
      const names: { name: string; dir: boolean }[] = [];
      try {
        for await (const e of Deno.readDir(dirPath)) {
          if (!e.isSymlink) names.push({ name: e.name, dir: e.isDirectory });
        }
      } catch (err) {
        if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
        throw localIoError(err, dirPath, "list");
      }
      const present = new Set(names.map((n) => n.name));
      let changed = false;
      for (const { name, dir } of names) {
        const path = `${dirPath}/${name}`;
        if (dir) {
          await visit(path);
          continue;
        }
        const orphanSidecar = isSidecarName(name) && !present.has(name.slice(1, -".sha256".length));
        if (!isTempName(name) && !orphanSidecar) continue;
        let st: Deno.FileInfo;
        try {
          st = await Deno.lstat(path);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue;
          throw localIoError(err, path, "stat");
        }
        if (!st.isFile || st.mtime === null || st.mtime.getTime() >= cutoff) continue;
        try {
          await Deno.remove(path);
        } catch (err) {
          if (err instanceof Deno.errors.NotFound) continue;
          throw localIoError(err, path, "delete");
        }
        changed = true;
        result.removed.push(path);
        if (st.nlink === null || st.nlink <= 1) result.bytes += st.size;
      }
      if (changed) await fsyncDir(dirPath);
    };
    await visit(dirKey === "" ? this.root : this.localPath(dirKey));
    return result;
  }

  /** Removes the sidecar of `path` if there is one, with a directory fsync (only then). */
  async #removeSidecar(path: string): Promise<void> {
    try {
      Deno.removeSync(sidecarPath(path));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return;
      throw localIoError(err, sidecarPath(path), "delete");
    }
    await fsyncDir(dirOf(path));
  }

  /**
   * Writes the sidecar of `path` (created new, no fsync: see the module doc; `put` removed any old one
   * first). No temp file and rename: a sidecar read half-written, or torn by a crash, does not parse and
   * reads as "no digest", and reads only trust a digest seen before and after the file. A failure is not an
   * error: the file itself is written, and a missing digest only means the LTX checks are all there is.
   */
  #writeSidecar(path: string, hex: string, body: Uint8Array): void {
    this.#writeSidecarText(path, hex, crc64(body));
  }

  #writeSidecarText(path: string, hex: string, crc: bigint): void {
    const text = JSON.stringify({ sha256: hex, crc64: crc.toString(16).padStart(16, "0") }) + "\n";
    try {
      const f = Deno.openSync(sidecarPath(path), { write: true, createNew: true, mode: 0o644 });
      try {
        writeAllSync(f, new TextEncoder().encode(text));
      } finally {
        f.close();
      }
    } catch { /* no sidecar: no digest */ }
  }

  /** Nothing to release. */
  close(): void {}

  #readError(err: unknown, key: string, path: string): unknown {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return new NotFoundError(`object ${key} not found in ${this.root}`, { cause: err });
    }
    if (err instanceof Deno.errors.IsADirectory) {
      return new NotFoundError(`object ${key} not found in ${this.root} (${path} is a directory)`, {
        cause: err,
      });
    }
    return localIoError(err, path, "read");
  }
}
