/**
 * One database's LTX files in a replica, in Litestream v0.5's layout, over any {@link ObjectStore}.
 *
 * Keys (relative to the store root, which already includes the URL's prefix):
 * - file backend: `<name>/ltx/<level decimal>/<min16>-<max16>.ltx` (Litestream `file` client)
 * - s3 backend:   `<name>/<level %04x>/<min16>-<max16>.ltx` (Litestream `s3` client, no `ltx/`)
 *
 * An empty database name means the store root *is* the database (a Litestream replica URL that points at
 * one database: `<root>/ltx/0/…` or `<prefix>/0000/…`).
 *
 * Names that do not match `^[0-9a-f]{16}-[0-9a-f]{16}\.ltx$` (temp files, `lease.json`, v0.3
 * `generations/`) are ignored. `createdAt` is the file mtime (set to the LTX header timestamp on write) or,
 * on S3, LastModified — or, with `accurateTimestamps`, the `litestream-timestamp` metadata (one HEAD each).
 *
 * @module
 */

import { NotFoundError, UsageError } from "../errors.ts";
import { formatLtxFilename, parseLtxFilename } from "../ltx/types.ts";
import type { ObjectInfo, ObjectStore, SweepResult } from "./object_store.ts";
import { SHA256_METADATA_KEY, sha256Hex } from "./digest.ts";

/** One LTX file in the replica. */
export interface LtxFileInfo {
  /** Compaction level: 0 raw, 1…8 compacted, 9 snapshots. */
  level: number;
  /** First TXID covered. */
  minTXID: number;
  /** Last TXID covered. */
  maxTXID: number;
  /** Size in bytes. */
  size: number;
  /** When the file's newest transaction happened (see the module doc). */
  createdAt: Date;
  /** Key relative to the store root. */
  key: string;
}

/** Options of {@link ReplicaClient.ltxFiles}. */
export interface LtxListOptions {
  /** S3: HEAD each file for its `litestream-timestamp` metadata instead of LastModified (slower). */
  accurateTimestamps?: boolean;
}

/** The S3 metadata key of the LTX header timestamp (Litestream `MetadataKeyTimestamp`). */
export const TIMESTAMP_METADATA_KEY = "litestream-timestamp";

/** Highest level Litestream uses (9 = snapshots); `%04x` leaves room for more. */
const MAX_LEVEL = 0xffff;

const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Checks a database name: one path segment of `[A-Za-z0-9._-]`, not starting with a dot; `""` = root. */
export function validateDbName(name: string): void {
  if (name === "") return;
  if (!NAME_RE.test(name) || name.length > 255) {
    throw new UsageError(
      `database name ${
        JSON.stringify(name)
      } cannot be used in a replica: use letters, digits, '.', '_' and '-' (set 'name' in walrust.toml)`,
    );
  }
}

/** Formats ms since the epoch like Go's `time.RFC3339Nano` in UTC (trailing fraction zeros removed). */
export function formatRfc3339Nano(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2006-01-02T15:04:05.123Z
  const [sec, frac] = iso.slice(0, -1).split(".");
  const f = (frac ?? "").replace(/0+$/, "");
  return f ? `${sec}.${f}Z` : `${sec}Z`;
}

/** Parses an RFC 3339 timestamp with any number of fraction digits (ms precision); null if malformed. */
export function parseRfc3339(s: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(
    s.trim(),
  );
  if (!m) return null;
  const ms = Number((m[7] ?? "").slice(0, 3).padEnd(3, "0"));
  let t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], ms);
  if (m[8] !== "Z" && m[8] !== "z") {
    const sign = m[8][0] === "-" ? -1 : 1;
    t -= sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6))) * 60_000;
  }
  return Number.isNaN(t) ? null : new Date(t);
}

function levelDir(kind: "file" | "s3", level: number): string {
  return kind === "s3" ? level.toString(16).padStart(4, "0") : `ltx/${level}`;
}

function parseLevelDir(kind: "file" | "s3", parts: string[]): number | null {
  if (kind === "s3") {
    if (parts.length !== 1 || !/^[0-9a-f]{4}$/.test(parts[0])) return null;
    return parseInt(parts[0], 16);
  }
  if (parts.length !== 2 || parts[0] !== "ltx" || !/^(0|[1-9][0-9]{0,4})$/.test(parts[1])) return null;
  const n = Number(parts[1]);
  return n <= MAX_LEVEL ? n : null;
}

function compareFiles(a: LtxFileInfo, b: LtxFileInfo): number {
  return a.level - b.level || a.minTXID - b.minTXID || a.maxTXID - b.maxTXID;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Bytes of files recently written, by key, oldest evicted first once `budget` bytes are held; files larger
 * than `maxFile` are not kept. Entries are never mutated (callers hand over bytes they no longer change).
 */
export class RecentFiles {
  readonly #files = new Map<string, Uint8Array>();
  #bytes = 0;

  /** A cache holding at most `budget` bytes, of files up to `maxFile` bytes each. */
  constructor(readonly budget: number, readonly maxFile: number) {}

  /** Remembers `data` under `key` (replacing any older entry). */
  set(key: string, data: Uint8Array): void {
    this.delete(key);
    if (data.byteLength > this.maxFile || data.byteLength > this.budget) return;
    // A view into a larger buffer would keep all of it alive.
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    this.#files.set(key, own);
    this.#bytes += own.byteLength;
    for (const [k, v] of this.#files) {
      if (this.#bytes <= this.budget) break;
      this.#files.delete(k);
      this.#bytes -= v.byteLength;
    }
  }

  /** The bytes remembered under `key`, if still held. */
  get(key: string): Uint8Array | undefined {
    return this.#files.get(key);
  }

  /** Forgets `key`. */
  delete(key: string): void {
    const old = this.#files.get(key);
    if (!old) return;
    this.#files.delete(key);
    this.#bytes -= old.byteLength;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }
}

/** The LTX files of one database in a replica. */
export class ReplicaClient {
  /** The store. */
  readonly store: ObjectStore;
  /** The database name (`""` = the store root is the database). */
  readonly dbName: string;
  /** `<store url>/<name>`, for messages. */
  readonly displayUrl: string;
  readonly #base: string;
  /**
   * Level-0 files this client wrote lately, for the compaction that merges them into level 1 seconds later
   * (Litestream's compactor prefers its local L0 files too): no download, no digest file to read. 1 MiB at
   * most (about 30 s of a database syncing 30 KiB a second), files up to 256 KiB.
   */
  readonly #recentL0 = new RecentFiles(1 << 20, 256 << 10);

  /** A client for `dbName` (UsageError if the name cannot be a path segment). */
  constructor(store: ObjectStore, dbName: string) {
    validateDbName(dbName);
    this.store = store;
    this.dbName = dbName;
    this.#base = dbName === "" ? "" : dbName + "/";
    this.displayUrl = dbName === "" ? store.displayUrl : `${store.displayUrl.replace(/\/$/, "")}/${dbName}`;
  }

  /**
   * Removes leftovers of interrupted writes under this database's keys (see {@link ObjectStore.sweepStale});
   * nothing on stores without them (S3 has no temp objects).
   */
  async sweepStale(olderThan: Date): Promise<SweepResult> {
    return await this.store.sweepStale?.(this.#base, olderThan) ?? { removed: [], bytes: 0 };
  }

  /** The key of an LTX file. */
  ltxKey(level: number, minTXID: number, maxTXID: number): string {
    return `${this.#base}${levelDir(this.store.kind, level)}/${formatLtxFilename(minTXID, maxTXID)}`;
  }

  /** Parses a listed key (relative to the store root) into file info; null for anything else. */
  #parse(o: ObjectInfo): LtxFileInfo | null {
    if (!o.key.startsWith(this.#base)) return null;
    const parts = o.key.slice(this.#base.length).split("/");
    const range = parseLtxFilename(parts.pop() ?? "");
    if (!range) return null;
    const level = parseLevelDir(this.store.kind, parts);
    if (level === null) return null;
    return { level, ...range, size: o.size, createdAt: o.lastModified, key: o.key };
  }

  async #collect(prefix: string, opts?: LtxListOptions): Promise<LtxFileInfo[]> {
    const files: LtxFileInfo[] = [];
    for await (const o of this.store.list(prefix)) {
      const f = this.#parse(o);
      if (f) files.push(f);
    }
    files.sort(compareFiles);
    if (opts?.accurateTimestamps && this.store.kind === "s3") {
      await mapLimit(files, 8, async (f) => {
        const h = await this.store.head(f.key);
        const ts = h?.metadata[TIMESTAMP_METADATA_KEY];
        const parsed = ts ? parseRfc3339(ts) : null;
        if (parsed) f.createdAt = parsed;
      });
    }
    return files;
  }

  /** LTX files of one level, sorted by (minTXID, maxTXID). */
  ltxFiles(level: number, opts?: LtxListOptions): Promise<LtxFileInfo[]> {
    return this.#collect(`${this.#base}${levelDir(this.store.kind, level)}/`, opts);
  }

  /** LTX files of every level, sorted by (level, minTXID, maxTXID). */
  allLtxFiles(opts?: LtxListOptions): Promise<LtxFileInfo[]> {
    return this.#collect(this.store.kind === "s3" ? this.#base : `${this.#base}ltx/`, opts);
  }

  /** Streams one LTX file; NotFoundError naming the file if absent. */
  async openLtxFile(level: number, minTXID: number, maxTXID: number): Promise<ReadableStream<Uint8Array>> {
    try {
      return await this.store.getStream(this.ltxKey(level, minTXID, maxTXID));
    } catch (err) {
      throw this.#notFound(err, level, minTXID, maxTXID);
    }
  }

  /** Reads one LTX file; NotFoundError naming the file if absent. */
  async readLtxFile(
    level: number,
    minTXID: number,
    maxTXID: number,
    opts?: { preferRecent?: boolean },
  ): Promise<Uint8Array> {
    if (opts?.preferRecent && level === 0) {
      const recent = this.#recentL0.get(this.ltxKey(level, minTXID, maxTXID));
      if (recent) return recent;
    }
    try {
      return await this.store.get(this.ltxKey(level, minTXID, maxTXID));
    } catch (err) {
      throw this.#notFound(err, level, minTXID, maxTXID);
    }
  }

  /**
   * Writes one LTX file: metadata `litestream-timestamp` (RFC3339Nano of `opts.timestamp`) and `sha256` on S3;
   * on the file backend mtime = `opts.timestamp` and the `sha256` in a sidecar. `opts.sourcePath` names a
   * durable local file holding `data` (a queue file) that a directory replica may hard-link instead of
   * copying (`PutOptions.linkFrom`). Returns its info (createdAt = the timestamp).
   */
  async writeLtxFile(
    level: number,
    minTXID: number,
    maxTXID: number,
    data: Uint8Array,
    opts: { timestamp: number; sourcePath?: string },
  ): Promise<LtxFileInfo> {
    const key = this.ltxKey(level, minTXID, maxTXID);
    await this.store.put(key, data, {
      metadata: {
        [TIMESTAMP_METADATA_KEY]: formatRfc3339Nano(opts.timestamp),
        [SHA256_METADATA_KEY]: await sha256Hex(data),
      },
      mtime: new Date(opts.timestamp),
      linkFrom: opts.sourcePath,
    });
    if (level === 0) this.#recentL0.set(key, data);
    return { level, minTXID, maxTXID, size: data.byteLength, createdAt: new Date(opts.timestamp), key };
  }

  /**
   * {@link writeLtxFile} from a durable local file that does not change (a queue file) whose `size` and
   * digests the caller computed while verifying it: streamed by stores that can (`ObjectStore.putFile`), so a
   * snapshot of any size is uploaded in bounded memory; read whole for the others.
   */
  async writeLtxFileFromPath(
    level: number,
    minTXID: number,
    maxTXID: number,
    path: string,
    opts: { timestamp: number; size: number; sha256: string; crc64: bigint },
  ): Promise<LtxFileInfo> {
    if (!this.store.putFile) {
      return await this.writeLtxFile(level, minTXID, maxTXID, await Deno.readFile(path), {
        timestamp: opts.timestamp,
        sourcePath: path,
      });
    }
    const key = this.ltxKey(level, minTXID, maxTXID);
    await this.store.putFile(key, path, {
      size: opts.size,
      sha256: opts.sha256,
      crc64: opts.crc64,
      metadata: { [TIMESTAMP_METADATA_KEY]: formatRfc3339Nano(opts.timestamp) },
      mtime: new Date(opts.timestamp),
    });
    return { level, minTXID, maxTXID, size: opts.size, createdAt: new Date(opts.timestamp), key };
  }

  /** Deletes LTX files; absent ones are ignored. */
  async deleteLtxFiles(files: { level: number; minTXID: number; maxTXID: number }[]): Promise<void> {
    if (files.length === 0) return;
    const keys = files.map((f) => this.ltxKey(f.level, f.minTXID, f.maxTXID));
    for (const k of keys) this.#recentL0.delete(k);
    await this.store.delete(keys);
  }

  #notFound(err: unknown, level: number, min: number, max: number): unknown {
    if (err instanceof NotFoundError) {
      return new NotFoundError(
        `LTX file level ${level} ${formatLtxFilename(min, max)} not found in ${this.displayUrl}`,
        { cause: err },
      );
    }
    return err;
  }
}

/**
 * Names of the databases under the store root: first path segments that hold LTX files in either layout,
 * or Litestream v0.3 `generations/<16 hex>/` data. Lists flat (s3rver and some providers drop nested
 * common prefixes), sorted by name.
 */
export async function listDatabases(store: ObjectStore): Promise<string[]> {
  const names = new Set<string>();
  for await (const o of store.list("")) {
    const parts = o.key.split("/");
    if (parts.length < 3) continue;
    const name = parts[0];
    if (names.has(name) || !NAME_RE.test(name)) continue;
    const rest = parts.slice(1);
    const file = rest[rest.length - 1];
    const dirs = rest.slice(0, -1);
    const isLtx = parseLtxFilename(file) !== null &&
      (parseLevelDir("s3", dirs) !== null || parseLevelDir("file", dirs) !== null);
    const isV3 = rest[0] === "generations" && rest.length >= 4 && /^[0-9a-f]{16}$/.test(rest[1]) &&
      (rest[2] === "snapshots" || rest[2] === "wal");
    if (isLtx || isV3) names.add(name);
  }
  return [...names].sort();
}
