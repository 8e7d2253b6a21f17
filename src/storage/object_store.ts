/**
 * The small interface every storage backend implements: a flat key space of immutable objects.
 * Layout (which keys an LTX file lives at) is not a backend concern: see `replica_client.ts`.
 * Adding a backend means one new file implementing {@link ObjectStore} plus one line in `open.ts`.
 *
 * Errors are typed (`../errors.ts`): AuthError, BucketNotFoundError, ConnectionError (transient),
 * NotFoundError (missing key), ConflictError (failed precondition), CorruptionError (short read).
 *
 * @module
 */

/** One object as listed. */
export interface ObjectInfo {
  /** Full key relative to the store root (no leading slash). */
  key: string;
  /** Size in bytes. */
  size: number;
  /** Last-modified time (file mtime or S3 LastModified). */
  lastModified: Date;
  /** Entity tag, when the backend has one. */
  etag?: string;
}

/** An object's metadata, from a HEAD request. */
export interface ObjectHead extends ObjectInfo {
  /** User metadata (S3 `x-amz-meta-*` without the prefix), lower-case keys. */
  metadata: Record<string, string>;
}

/** Options for a conditional or annotated write. */
export interface PutOptions {
  /** User metadata to store with the object. */
  metadata?: Record<string, string>;
  /** `"*"`: fail with ConflictError if the key exists. */
  ifNoneMatch?: "*";
  /** Fail with ConflictError unless the current ETag equals this. */
  ifMatch?: string;
  /** For the file backend: the mtime to set (Litestream sets it to the LTX header timestamp). */
  mtime?: Date;
  /**
   * For the file backend: a local file holding exactly `body`, already durable (fsync'd, its directory too)
   * and never modified afterwards (a local queue file). The store may hard-link it into place instead of
   * writing and syncing the bytes again; it writes them when it cannot (another file system, an existing
   * target, a conditional write). Other backends ignore it.
   */
  linkFrom?: string;
}

/** Options for {@link ObjectStore.list}. */
export interface ListOptions {
  /** Only keys strictly greater than this (S3 `StartAfter`); used to resume an interrupted listing. */
  startAfter?: string;
}

/** A backend: local directory or S3-compatible bucket. */
export interface ObjectStore {
  /** `file` keeps Litestream's `ltx/<level>/` layout; `s3` its `<level %04x>/` layout. */
  readonly kind: "file" | "s3";
  /** The store root for messages: `s3://bucket/prefix` or `/abs/dir`. Never contains credentials. */
  readonly displayUrl: string;
  /** Lists objects whose key starts with `prefix`, in key order (byte order of the UTF-8 key). */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  /** Reads a whole object. NotFoundError if absent. */
  get(key: string): Promise<Uint8Array>;
  /** Streams an object. NotFoundError if absent. */
  getStream(key: string): Promise<ReadableStream<Uint8Array>>;
  /** HEAD: metadata and size, or null if absent. */
  head(key: string): Promise<ObjectHead | null>;
  /** Writes an object atomically (readers see the old object or the whole new one). Returns the ETag. */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }>;
  /** Deletes keys; missing keys are not an error. */
  delete(keys: string[]): Promise<void>;
  /** Releases connections. */
  close(): void;
  /**
   * Local backends only: the file-system path of `key` (validated, inside the root). Used by `lease.ts` to
   * take an OS file lock; wrappers such as `RetryingObjectStore` forward it.
   */
  localPath?(key: string): string;
  /**
   * Local backends only: removes leftovers of interrupted writes (temp files, sidecars without their file)
   * under `prefix` last modified before `olderThan`. Wrappers forward it.
   */
  sweepStale?(prefix: string, olderThan: Date): Promise<SweepResult>;
  /**
   * Writes an object from a local file without holding it in memory (large queue files: snapshots, full
   * copies). The file must be durable and must not change while this runs; the caller has read it once to
   * verify it and gives its digests. Stores without it are written with `put`. Wrappers forward it.
   */
  putFile?(key: string, path: string, options: PutFileOptions): Promise<{ etag?: string }>;
}

/** Options of {@link ObjectStore.putFile}. */
export interface PutFileOptions {
  /** The file's size in bytes. */
  size: number;
  /** Hex SHA-256 of the file (stored as the `sha256` metadata, or a directory replica's sidecar). */
  sha256: string;
  /** CRC-64/GO-ISO of the file (a directory replica's sidecar). */
  crc64: bigint;
  /** Other user metadata (S3: `x-amz-meta-*`). */
  metadata?: Record<string, string>;
  /** Modification time to give the object (directory replicas). */
  mtime?: Date;
}

/** What {@link ObjectStore.sweepStale} removed. */
export interface SweepResult {
  /** Paths removed. */
  removed: string[];
  /** Bytes freed. */
  bytes: number;
}
