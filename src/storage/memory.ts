/**
 * An in-memory {@link ObjectStore} for unit tests of code above the storage layer (uploader, restore,
 * retention, lease). It behaves like S3 where it matters: key-ordered listings, conditional writes
 * (`ifNoneMatch`/`ifMatch` → ConflictError), NotFoundError for absent keys, user metadata, ETags that
 * change on every write. `kind` selects which Litestream layout a ReplicaClient uses over it.
 *
 * @module
 */

import { ConflictError, NotFoundError } from "../errors.ts";
import type { ListOptions, ObjectHead, ObjectInfo, ObjectStore, PutOptions } from "./object_store.ts";

interface Entry {
  body: Uint8Array;
  metadata: Record<string, string>;
  lastModified: Date;
  etag: string;
}

/** An in-memory object store (not durable; for tests). */
export class MemoryObjectStore implements ObjectStore {
  /** Which layout a ReplicaClient uses. */
  readonly kind: "file" | "s3";
  /** `memory://<name>`. */
  readonly displayUrl: string;
  /** The objects, by key (tests may inspect or corrupt them). */
  readonly objects: Map<string, Entry> = new Map();
  #seq = 0;
  /** Clock for lastModified (tests). */
  now: () => number = () => Date.now();

  /** An empty store. */
  constructor(kind: "file" | "s3" = "s3", name = "test") {
    this.kind = kind;
    this.displayUrl = `memory://${name}`;
  }

  /** Objects with `prefix`, in key order. */
  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) =>
      k.startsWith(prefix) && (options?.startAfter === undefined || k > options.startAfter)
    ).sort();
    for (const key of keys) {
      const e = this.objects.get(key);
      if (!e) continue; // deleted while listing
      yield { key, size: e.body.byteLength, lastModified: e.lastModified, etag: e.etag };
    }
  }

  /** A copy of the object's bytes. */
  get(key: string): Promise<Uint8Array> {
    const e = this.objects.get(key);
    if (!e) return Promise.reject(new NotFoundError(`object ${key} not found in ${this.displayUrl}`));
    return Promise.resolve(e.body.slice());
  }

  /** The object as a one-chunk stream. */
  async getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    const body = await this.get(key);
    return new ReadableStream({
      start(c) {
        c.enqueue(body);
        c.close();
      },
    });
  }

  /** Metadata, or null. */
  head(key: string): Promise<ObjectHead | null> {
    const e = this.objects.get(key);
    if (!e) return Promise.resolve(null);
    return Promise.resolve({
      key,
      size: e.body.byteLength,
      lastModified: e.lastModified,
      etag: e.etag,
      metadata: { ...e.metadata },
    });
  }

  /** Stores a copy; honours ifNoneMatch/ifMatch; mtime (file semantics) sets lastModified. */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    const cur = this.objects.get(key);
    if (options?.ifNoneMatch === "*" && cur) {
      return Promise.reject(new ConflictError(`${this.displayUrl}/${key}: precondition failed (exists)`));
    }
    if (options?.ifMatch !== undefined) {
      if (!cur) return Promise.reject(new NotFoundError(`object ${key} not found in ${this.displayUrl}`));
      if (cur.etag !== options.ifMatch) {
        return Promise.reject(new ConflictError(`${this.displayUrl}/${key}: precondition failed (ETag)`));
      }
    }
    const etag = `"m${++this.#seq}"`;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(options?.metadata ?? {})) metadata[k.toLowerCase()] = v;
    this.objects.set(key, {
      body: body.slice(),
      metadata,
      lastModified: this.kind === "file" && options?.mtime ? options.mtime : new Date(this.now()),
      etag,
    });
    return Promise.resolve({ etag });
  }

  /** Removes keys; absent keys are ignored. */
  delete(keys: string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k);
    return Promise.resolve();
  }

  /** Nothing to release. */
  close(): void {}
}
