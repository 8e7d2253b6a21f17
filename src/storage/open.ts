/**
 * Opens the right {@link ObjectStore} for a replica's settings: a local directory or an S3-compatible bucket.
 * Adding a backend = one new file implementing ObjectStore plus one branch here.
 *
 * The S3 backend (and with it `@aws-sdk/client-s3`, ~20 MB of resident memory once loaded) is imported on
 * first use only, so a process replicating to a directory never loads it. The `import("./s3.ts")` has a
 * static specifier, so `deno bundle` and `deno compile` still include the module.
 *
 * @module
 */

import type { ReplicaSettings, RetrySettings } from "../config/types.ts";
import type { EventBus } from "../observe/events.ts";
import { registerSecret } from "../observe/log.ts";
import { FileObjectStore } from "./file.ts";
import type {
  ListOptions,
  ObjectHead,
  ObjectInfo,
  ObjectStore,
  PutFileOptions,
  PutOptions,
} from "./object_store.ts";
import { RetryingObjectStore } from "./retry.ts";
import type { S3ObjectStore, S3StoreOptions } from "./s3.ts";
import { parseReplicaUrl } from "./url.ts";

/** Extra, optional choices for {@link openObjectStore}. */
export interface OpenStoreOptions {
  /** Wrap the store in a {@link RetryingObjectStore} with these settings (backoff + circuit breaker). */
  retry?: RetrySettings;
  /** Bus for `retry` / `circuit_breaker_*` events (with `retry`). */
  bus?: EventBus;
  /** Database name attached to `retry` events (with `retry`). */
  db?: string;
}

/** The endpoint for messages, without credentials or path (the same text as `s3.ts` uses). */
function displayEndpoint(endpoint: string | undefined): string {
  if (!endpoint) return "AWS S3";
  try {
    const u = new URL(endpoint);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "the configured endpoint";
  }
}

/**
 * An {@link S3ObjectStore} created on first use: the same `kind`, `displayUrl`, `bucket`, `prefix` and
 * `destination` right away, every operation after `./s3.ts` was imported.
 */
export class LazyS3ObjectStore implements ObjectStore {
  /** Always `s3`. */
  readonly kind = "s3" as const;
  /** `s3://bucket/prefix`, never with credentials (as {@link S3ObjectStore.displayUrl}). */
  readonly displayUrl: string;
  /** The bucket. */
  readonly bucket: string;
  /** The key prefix, without slashes at either end. */
  readonly prefix: string;
  readonly #opts: S3StoreOptions;
  #store: Promise<S3ObjectStore> | null = null;
  #closed = false;

  /** Records the options; nothing is imported or connected until the first operation. */
  constructor(opts: S3StoreOptions) {
    this.#opts = opts;
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? "").replace(/^\/+|\/+$/g, "");
    this.displayUrl = `s3://${this.bucket}${this.prefix ? "/" + this.prefix : ""}`;
    registerSecret(opts.secretAccessKey);
    registerSecret(opts.sessionToken);
  }

  /** Identity of the destination (as {@link S3ObjectStore.destination}): endpoint, bucket and prefix. */
  get destination(): string {
    return `${displayEndpoint(this.#opts.endpoint)} ${this.displayUrl}`;
  }

  /** The real store, created on first call. */
  #get(): Promise<S3ObjectStore> {
    this.#store ??= import("./s3.ts").then(({ S3ObjectStore }) => {
      const store = new S3ObjectStore(this.#opts);
      if (this.#closed) store.close();
      return store;
    });
    return this.#store;
  }

  /** See {@link ObjectStore.list}. */
  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    yield* (await this.#get()).list(prefix, options);
  }

  /** See {@link ObjectStore.get}. */
  async get(key: string): Promise<Uint8Array> {
    return await (await this.#get()).get(key);
  }

  /** See {@link ObjectStore.getStream}. */
  async getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    return await (await this.#get()).getStream(key);
  }

  /** See {@link ObjectStore.head}. */
  async head(key: string): Promise<ObjectHead | null> {
    return await (await this.#get()).head(key);
  }

  /** See {@link ObjectStore.put}. */
  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    return await (await this.#get()).put(key, body, options);
  }

  /** See {@link ObjectStore.putFile}. */
  async putFile(key: string, path: string, options: PutFileOptions): Promise<{ etag?: string }> {
    return await (await this.#get()).putFile(key, path, options);
  }

  /** See {@link ObjectStore.delete}. */
  async delete(keys: string[]): Promise<void> {
    await (await this.#get()).delete(keys);
  }

  /** Closes the client's connections (a store never used has none). */
  close(): void {
    this.#closed = true;
    void this.#store?.then((s) => s.close(), () => {});
  }
}

/**
 * Picks `file.ts` or `s3.ts` from `settings.url` (UsageError for a bad URL). Secrets are registered for
 * masking before anything can log them. With `opts.retry`, the store is wrapped for retries.
 */
export function openObjectStore(settings: ReplicaSettings, opts?: OpenStoreOptions): ObjectStore {
  registerSecret(settings.secretAccessKey);
  registerSecret(settings.sessionToken);
  const url = parseReplicaUrl(settings.url);
  let store: ObjectStore;
  if (url.kind === "file") {
    store = new FileObjectStore(url.path ?? ".");
  } else {
    store = new LazyS3ObjectStore({
      bucket: url.bucket ?? "",
      prefix: url.prefix,
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      accessKeyId: settings.accessKeyId,
      secretAccessKey: settings.secretAccessKey,
      sessionToken: settings.sessionToken,
    });
  }
  if (opts?.retry) return new RetryingObjectStore(store, opts.retry, opts.bus, opts.db);
  return store;
}
