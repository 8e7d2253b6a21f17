/**
 * Opens the right {@link ObjectStore} for a replica's settings: a local directory or an S3-compatible bucket.
 * Adding a backend = one new file implementing ObjectStore plus one branch here.
 *
 * @module
 */

import type { ReplicaSettings, RetrySettings } from "../config/types.ts";
import type { EventBus } from "../observe/events.ts";
import { registerSecret } from "../observe/log.ts";
import { FileObjectStore } from "./file.ts";
import type { ObjectStore } from "./object_store.ts";
import { RetryingObjectStore } from "./retry.ts";
import { S3ObjectStore } from "./s3.ts";
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
    store = new S3ObjectStore({
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
