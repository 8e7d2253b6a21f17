/**
 * {@link ObjectStore} over an S3-compatible bucket (AWS, R2, Tigris, MinIO, s3rver) with `@aws-sdk/client-s3`.
 *
 * - Keys are relative to `<prefix>/` inside the bucket; the prefix is invisible to callers.
 * - Every library error becomes a typed error naming the bucket/key and what to do, never a secret
 *   (see {@link mapS3Error}). The SDK's own retries are off: `RetryingObjectStore` owns retry policy.
 * - Timeouts: connect, time to response headers (scaled with the upload size), and an inactivity watchdog on
 *   response bodies, so a stalled server cannot hang a caller.
 * - Integrity: `put` stores `x-amz-meta-sha256` (hex SHA-256 of the body); `get`/`getStream` verify it and
 *   the declared length when present, so a truncated or altered response never passes as good data.
 * - Compatibility: no `Expect: 100-continue`, and checksum headers only when an operation requires them
 *   (R2 and Tigris reject some of the SDK's defaults). Region `auto` is passed through as is.
 *
 * @module
 */

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import {
  AuthError,
  BucketNotFoundError,
  ConflictError,
  ConnectionError,
  CorruptionError,
  LocalIoError,
  localIoError,
  messageOf,
  NotFoundError,
  WalrustError,
} from "../errors.ts";
import { registerSecret } from "../observe/log.ts";
import type {
  ListOptions,
  ObjectHead,
  ObjectInfo,
  ObjectStore,
  PutFileOptions,
  PutOptions,
} from "./object_store.ts";
import { SHA256_METADATA_KEY, sha256Hex } from "./digest.ts";
import { VERSION } from "../version.ts";

/** Connection settings of an {@link S3ObjectStore}. */
export interface S3StoreOptions {
  /** Bucket name. */
  bucket: string;
  /** Key prefix inside the bucket, without leading/trailing slashes (`""` = bucket root). */
  prefix?: string;
  /** Endpoint URL for non-AWS services (`http://127.0.0.1:9000`); undefined = AWS. */
  endpoint?: string;
  /** Region; default `us-east-1`. `auto` works for R2 and Tigris. */
  region?: string;
  /** Path-style addressing; default true when an endpoint is set, false for AWS. */
  forcePathStyle?: boolean;
  /** Access key id; with the secret, static credentials. Otherwise the SDK's chain (env, files, IMDS). */
  accessKeyId?: string;
  /** Secret access key. */
  secretAccessKey?: string;
  /** Session token for temporary credentials. */
  sessionToken?: string;
  /** TCP connect timeout, ms (default 5 000). */
  connectTimeoutMs?: number;
  /** Time allowed until response headers arrive, ms, plus 1 s per MiB uploaded (default 30 000). */
  requestTimeoutMs?: number;
  /** Longest pause allowed while a response body is flowing, ms (default 30 000). */
  idleTimeoutMs?: number;
  /** ListObjectsV2 page size (MaxKeys), 1…1000 (default 1000). */
  pageSize?: number;
}

export { SHA256_METADATA_KEY, sha256Hex };

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTDOWN",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
]);

const AUTH_NAMES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "TokenRefreshRequired",
  "InvalidToken",
  "AccessDenied",
  "Forbidden",
  "AllAccessDisabled",
  "InvalidSecurity",
  "NotSignedUp",
  "AccountProblem",
  "UnauthorizedAccess",
]);

const TRANSIENT_NAMES = new Set([
  "SlowDown",
  "RequestTimeout",
  "RequestTimeTooSkewed",
  "InternalError",
  "ServiceUnavailable",
  "Throttling",
  "ThrottlingException",
  "TooManyRequests",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "TooManyRequestsException",
  "OperationAborted",
]);

function firstLine(s: string, max = 300): string {
  const line = s.split("\n")[0].trim();
  return line.length > max ? line.slice(0, max) + "…" : line;
}

/** An endpoint for messages: scheme, host and port only. */
function displayEndpoint(endpoint: string | undefined): string {
  if (!endpoint) return "AWS S3";
  try {
    const u = new URL(endpoint);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "the configured endpoint";
  }
}

/** What a failed call was doing, for messages and error mapping. */
export interface S3ErrorContext {
  /** `list`, `get`, `head`, `put`, `delete`. */
  op: string;
  /** Bucket name. */
  bucket: string;
  /** Full key or prefix inside the bucket. */
  key?: string;
  /** Endpoint as configured. */
  endpoint?: string;
  /** Region as configured. */
  region?: string;
}

/**
 * Maps anything the SDK (or the network below it) throws to a typed walrust error:
 * 403 and credential errors → AuthError (never retried); NoSuchBucket → BucketNotFoundError;
 * NoSuchKey/404 → NotFoundError; 412/PreconditionFailed → ConflictError; 5xx, 429, SlowDown, network
 * failures and timeouts → transient ConnectionError; anything else → non-transient ConnectionError.
 */
export function mapS3Error(err: unknown, ctx: S3ErrorContext): WalrustError {
  if (err instanceof WalrustError) return err;
  const e = (err ?? {}) as {
    name?: string;
    code?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $fault?: string;
  };
  const name = e.Code ?? e.name ?? "";
  const code = e.code ?? "";
  const status = e.$metadata?.httpStatusCode;
  const where = `s3://${ctx.bucket}/${ctx.key ?? ""}`;
  const ep = displayEndpoint(ctx.endpoint);
  const detail = firstLine(messageOf(err));
  const what = `${ctx.op} ${where}`;

  if (name === "CredentialsProviderError" || /could not load credentials/i.test(detail)) {
    return new AuthError(
      `${what}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the config file)`,
      { cause: err },
    );
  }
  if (AUTH_NAMES.has(name) || status === 403 || status === 401) {
    const hint = name === "ExpiredToken" || name === "TokenRefreshRequired"
      ? "the session token has expired; refresh AWS_SESSION_TOKEN"
      : name === "SignatureDoesNotMatch"
      ? "the secret access key is wrong; check AWS_SECRET_ACCESS_KEY"
      : name === "InvalidAccessKeyId"
      ? "the access key id is unknown to the server; check AWS_ACCESS_KEY_ID"
      : "check the credentials and the bucket policy";
    return new AuthError(`${what}: access denied by ${ep} (${name || "HTTP " + status}); ${hint}`, {
      cause: err,
    });
  }
  if (name === "NoSuchBucket") {
    return new BucketNotFoundError(
      `bucket '${ctx.bucket}' does not exist at ${ep}; create it or fix the replica URL`,
      { cause: err },
    );
  }
  if (name === "NoSuchKey" || name === "NotFound" || status === 404) {
    return new NotFoundError(`object ${where} not found`, { cause: err });
  }
  if (name === "PreconditionFailed" || name === "ConditionalRequestConflict" || status === 412) {
    return new ConflictError(`${what}: precondition failed; the object was changed by another writer`, {
      cause: err,
    });
  }
  if (name === "PermanentRedirect" || name === "AuthorizationHeaderMalformed" || status === 301) {
    return new ConnectionError(
      `${what}: the bucket is in another region than '${
        ctx.region ?? "us-east-1"
      }'; set --region or AWS_REGION`,
      { cause: err, transient: false },
    );
  }
  // Before the timeout test: the SDK renames ECONNRESET/EPIPE to "TimeoutError".
  if (
    code === "ECONNRESET" || code === "EPIPE" ||
    /socket hang up|ECONNRESET|premature close|aborted/i.test(detail)
  ) {
    return new ConnectionError(`${what}: the connection to ${ep} was cut (${code || detail}); will retry`, {
      cause: err,
    });
  }
  if (
    name === "TimeoutError" || name === "AbortError" || code === "ETIMEDOUT" || /timed? ?out/i.test(detail)
  ) {
    return new ConnectionError(
      `${what}: ${ep} did not answer in time (${detail}); check the endpoint and network`,
      {
        cause: err,
      },
    );
  }
  if (TRANSIENT_NAMES.has(name) || (status !== undefined && (status >= 500 || status === 429))) {
    return new ConnectionError(`${what}: ${ep} is failing (${name || "HTTP " + status}); will retry`, {
      cause: err,
    });
  }
  if (NETWORK_CODES.has(code) || /ECONNREFUSED|network|connection/i.test(detail)) {
    return new ConnectionError(
      `${what}: cannot reach ${ep} (${code || detail}); check --endpoint and the network`,
      {
        cause: err,
      },
    );
  }
  if (status !== undefined && status >= 400) {
    return new ConnectionError(`${what}: rejected by ${ep} (${name || "HTTP " + status}: ${detail})`, {
      cause: err,
      transient: false,
    });
  }
  // No HTTP status: the request never completed (broken stream, DNS, TLS…). Worth another try.
  return new ConnectionError(`${what}: ${detail || name || "request failed"} (${ep})`, { cause: err });
}

interface BodyGuard {
  what: string;
  expectedSize?: number;
  sha256?: string;
  idleMs: number;
  abort: () => void;
}

/**
 * Wraps a response body: errors (as ConnectionError) if no bytes arrive for `idleMs`, if it ends short of or
 * beyond the declared length, and (as CorruptionError) if its SHA-256 differs from the stored metadata.
 */
function guardBody(src: ReadableStream<Uint8Array>, g: BodyGuard): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  const hash = g.sha256 ? createHash("sha256") : null;
  let got = 0;
  let finished = false;
  const fail = (err: unknown) => {
    finished = true;
    g.abort();
    reader.cancel().catch(() => {});
    return err;
  };
  return new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const stalled = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ConnectionError(
                  `get ${g.what}: the server stopped sending data for ${g.idleMs} ms after ${got} bytes`,
                ),
              ),
            g.idleMs,
          );
        });
        const r = await Promise.race([reader.read(), stalled]);
        if (r.done) {
          finished = true;
          if (g.expectedSize !== undefined && got !== g.expectedSize) {
            throw new ConnectionError(
              `get ${g.what}: response ended after ${got} of ${g.expectedSize} bytes (connection cut); will retry`,
            );
          }
          if (hash && g.sha256) {
            const actual = hash.digest("hex");
            if (actual !== g.sha256.toLowerCase()) {
              const err = new CorruptionError(
                `sha256 ${actual} of the downloaded bytes differs from the stored sha256 ${g.sha256}`,
                { object: g.what },
              );
              // Most often damage in flight (a proxy, a cut that still looked complete): worth another
              // download. Damage at rest fails every try and surfaces as corruption (exit 7).
              (err as { transient: boolean }).transient = true;
              throw err;
            }
          }
          ctrl.close();
          return;
        }
        got += r.value.byteLength;
        if (g.expectedSize !== undefined && got > g.expectedSize) {
          throw new ConnectionError(
            `get ${g.what}: response is longer than its declared ${g.expectedSize} bytes`,
          );
        }
        hash?.update(r.value);
        ctrl.enqueue(r.value);
      } catch (err) {
        const mapped = err instanceof WalrustError ? err : new ConnectionError(
          `get ${g.what}: the response was interrupted after ${got} bytes (${
            firstLine(messageOf(err))
          }); will retry`,
          { cause: err },
        );
        ctrl.error(fail(mapped));
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      if (!finished) g.abort();
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const c of stream) {
    chunks.push(c);
    total += c.byteLength;
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** Lower-cased user metadata. */
function lowerKeys(m: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) out[k.toLowerCase()] = v;
  return out;
}

/** Part size of multipart uploads (and the largest object sent with one PutObject by `putFile`). */
export const MULTIPART_PART_BYTES = 16 << 20;

/** Parts of one multipart upload in flight at once (each holds a part-sized buffer). */
const MULTIPART_CONCURRENCY = 2;

/** Runs a read of the local file being uploaded, mapping failures to errors that name it. */
async function readLocal<T>(path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw localIoError(err, path, "read");
  }
}

/** The local file was not the size it had when verified: it must not be uploaded. */
function changedWhileUploading(path: string, expected: number, got: number): LocalIoError {
  return new LocalIoError(
    `${path} changed while being uploaded (${got} bytes, expected ${expected}); it is uploaded again later`,
  );
}

/** An S3-compatible bucket (below an optional prefix) as an object store. */
export class S3ObjectStore implements ObjectStore {
  /** Always `s3`. */
  readonly kind = "s3" as const;
  /** `s3://bucket/prefix`, never with credentials. */
  readonly displayUrl: string;
  /** The bucket. */
  readonly bucket: string;
  /** The key prefix, without slashes at either end. */
  readonly prefix: string;
  readonly #client: S3Client;
  readonly #opts: S3StoreOptions;
  readonly #requestTimeoutMs: number;
  readonly #idleMs: number;
  readonly #pageSize: number;

  /** Creates the client; no request is sent until the first operation. */
  constructor(opts: S3StoreOptions) {
    this.#opts = opts;
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? "").replace(/^\/+|\/+$/g, "");
    this.displayUrl = `s3://${this.bucket}${this.prefix ? "/" + this.prefix : ""}`;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.#idleMs = opts.idleTimeoutMs ?? 30_000;
    this.#pageSize = Math.max(1, Math.min(1000, opts.pageSize ?? 1000));
    registerSecret(opts.secretAccessKey);
    registerSecret(opts.sessionToken);
    const config: S3ClientConfig = {
      region: opts.region || "us-east-1",
      endpoint: opts.endpoint || undefined,
      forcePathStyle: opts.forcePathStyle ?? Boolean(opts.endpoint),
      // RetryingObjectStore owns the policy; SDK retries would multiply attempts and hide failures.
      maxAttempts: 1,
      // R2/Tigris/older MinIO reject or mishandle the SDK's default flexible-checksum headers.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: {
        connectionTimeout: opts.connectTimeoutMs ?? 5_000,
        // No socketTimeout: guardBody watches bodies, so a slow consumer is not mistaken for a stall.
      },
      // Expect: 100-continue makes the SDK use a fresh non-keep-alive agent and is not needed here.
      expectContinueHeader: false,
      // The SDK's default user agent calls os.release(), which needs --allow-sys=osRelease (docs/fly.md).
      defaultUserAgentProvider: () =>
        Promise.resolve([["walrust", VERSION], [`os/${Deno.build.os}`], ["lang/js"]]),
    };
    if (opts.accessKeyId && opts.secretAccessKey) {
      config.credentials = {
        accessKeyId: opts.accessKeyId,
        secretAccessKey: opts.secretAccessKey,
        sessionToken: opts.sessionToken || undefined,
      };
    }
    this.#client = new S3Client(config);
    // Like Litestream: Content-MD5 on DeleteObjects, which some S3-compatible services (older MinIO,
    // Backblaze, GCS interop) require and which the SDK no longer sends by itself.
    this.#client.middlewareStack.add(
      (next, context) => (args) => {
        const req = args.request as { headers?: Record<string, string>; body?: unknown };
        const body = req.body;
        if (
          context.commandName === "DeleteObjectsCommand" && req.headers &&
          (typeof body === "string" || body instanceof Uint8Array)
        ) {
          req.headers["content-md5"] = createHash("md5").update(body).digest("base64");
        }
        return next(args);
      },
      { step: "build", name: "walrustDeleteContentMd5" },
    );
  }

  /** Identity of the destination for sharing a circuit breaker: endpoint, bucket and prefix. */
  get destination(): string {
    return `${displayEndpoint(this.#opts.endpoint)} ${this.displayUrl}`;
  }

  /** The full key inside the bucket. */
  fullKey(key: string): string {
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  #ctx(op: string, key?: string): S3ErrorContext {
    return { op, bucket: this.bucket, key, endpoint: this.#opts.endpoint, region: this.#opts.region };
  }

  /** Sends a command with a deadline for the response headers; the controller stays usable for bodies. */
  async #send<T>(
    op: string,
    key: string | undefined,
    // deno-lint-ignore no-explicit-any
    command: any,
    extraMs = 0,
  ): Promise<{ out: T; controller: AbortController }> {
    const controller = new AbortController();
    const timeoutMs = this.#requestTimeoutMs + extraMs;
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const out = await this.#client.send(command, { abortSignal: controller.signal }) as T;
      return { out, controller };
    } catch (err) {
      if (controller.signal.aborted) {
        throw new ConnectionError(
          `${op} s3://${this.bucket}/${key ?? ""}: no response from ${
            displayEndpoint(this.#opts.endpoint)
          } within ${timeoutMs} ms; check the endpoint and network`,
          { cause: err },
        );
      }
      throw mapS3Error(err, this.#ctx(op, key));
    } finally {
      clearTimeout(timer);
    }
  }

  /** ListObjectsV2 with pagination; keys are returned relative to the store prefix, in key order. */
  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    const full = this.fullKey(prefix);
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    let first = true;
    do {
      const { out } = await this.#send<{
        Contents?: { Key?: string; Size?: number; LastModified?: Date; ETag?: string }[];
        IsTruncated?: boolean;
        NextContinuationToken?: string;
      }>(
        "list",
        full,
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: full,
          MaxKeys: this.#pageSize,
          ContinuationToken: token,
          StartAfter: first && options?.startAfter !== undefined
            ? this.fullKey(options.startAfter)
            : undefined,
        }),
      );
      first = false;
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(full)) continue;
        yield {
          key: o.Key.slice(strip),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          etag: o.ETag,
        };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
      if (out.IsTruncated && !token) {
        throw new ConnectionError(
          `list s3://${this.bucket}/${full}: truncated listing without a continuation token`,
        );
      }
    } while (token);
  }

  /** Reads a whole object, verifying its length and (when stored) its SHA-256. */
  async get(key: string): Promise<Uint8Array> {
    return await readAll(await this.getStream(key));
  }

  /** Streams an object; the stream errors on stalls, truncation and SHA-256 mismatch. */
  async getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    const full = this.fullKey(key);
    const { out, controller } = await this.#send<{
      Body?: { transformToWebStream(): ReadableStream<Uint8Array> };
      ContentLength?: number;
      Metadata?: Record<string, string>;
    }>("get", full, new GetObjectCommand({ Bucket: this.bucket, Key: full }));
    if (!out.Body) throw new ConnectionError(`get s3://${this.bucket}/${full}: response has no body`);
    const meta = lowerKeys(out.Metadata);
    return guardBody(out.Body.transformToWebStream(), {
      what: `s3://${this.bucket}/${full}`,
      expectedSize: out.ContentLength,
      sha256: /^[0-9a-fA-F]{64}$/.test(meta[SHA256_METADATA_KEY] ?? "")
        ? meta[SHA256_METADATA_KEY]
        : undefined,
      idleMs: this.#idleMs,
      abort: () => controller.abort(),
    });
  }

  /** HEAD: size, LastModified, ETag and user metadata; null if the key does not exist. */
  async head(key: string): Promise<ObjectHead | null> {
    const full = this.fullKey(key);
    try {
      const { out } = await this.#send<{
        ContentLength?: number;
        LastModified?: Date;
        ETag?: string;
        Metadata?: Record<string, string>;
      }>("head", full, new HeadObjectCommand({ Bucket: this.bucket, Key: full }));
      return {
        key,
        size: out.ContentLength ?? 0,
        lastModified: out.LastModified ?? new Date(0),
        etag: out.ETag,
        metadata: lowerKeys(out.Metadata),
      };
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  /** PutObject with `sha256` metadata (computed unless given) and optional If-None-Match/If-Match. */
  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    const full = this.fullKey(key);
    const metadata = { ...lowerKeys(options?.metadata) };
    if (!metadata[SHA256_METADATA_KEY]) metadata[SHA256_METADATA_KEY] = await sha256Hex(body);
    const { out } = await this.#send<{ ETag?: string }>(
      "put",
      full,
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: full,
        Body: body,
        ContentLength: body.byteLength,
        Metadata: metadata,
        IfNoneMatch: options?.ifNoneMatch,
        IfMatch: options?.ifMatch,
      }),
      Math.ceil(body.byteLength / (1024 * 1024)) * 1000,
    );
    return { etag: out.ETag };
  }

  /**
   * {@link ObjectStore.putFile}: one PutObject up to {@link MULTIPART_PART_BYTES}, a multipart upload above
   * (two parts in flight, read from the file as buffers free up, so memory use does not grow with the file;
   * aborted on any failure, so no parts are left to bill). The `sha256` metadata is the digest given.
   */
  async putFile(key: string, path: string, options: PutFileOptions): Promise<{ etag?: string }> {
    const metadata = { ...lowerKeys(options.metadata), [SHA256_METADATA_KEY]: options.sha256 };
    if (options.size <= MULTIPART_PART_BYTES) {
      const body = await readLocal(path, () => Deno.readFile(path));
      if (body.byteLength !== options.size) throw changedWhileUploading(path, options.size, body.byteLength);
      return await this.put(key, body, { metadata });
    }
    const full = this.fullKey(key);
    // S3 allows 10 000 parts: larger parts for objects over ~156 GiB.
    const partBytes = Math.max(MULTIPART_PART_BYTES, Math.ceil(options.size / 10_000));
    const f = await readLocal(path, () => Deno.open(path, { read: true }));
    let uploadId: string | undefined;
    try {
      const { out } = await this.#send<{ UploadId?: string }>(
        "put",
        full,
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: full, Metadata: metadata }),
      );
      uploadId = out.UploadId;
      if (!uploadId) {
        throw new ConnectionError(`put s3://${this.bucket}/${full}: the service started no multipart upload`);
      }
      // Parts go up MULTIPART_CONCURRENCY at a time (one buffer each, reused once its part is sent), while
      // the next one is read from the file.
      const parts: { ETag: string; PartNumber: number }[] = [];
      const free = Array.from({ length: MULTIPART_CONCURRENCY }, () => new Uint8Array(partBytes));
      const inFlight = new Set<Promise<void>>();
      let failure: { err: unknown } | null = null;
      let total = 0;
      try {
        for (let part = 1;; part++) {
          while (free.length === 0 && failure === null) await Promise.race(inFlight);
          if (failure !== null) break;
          const buf = free.pop()!;
          let len = 0;
          while (len < partBytes) {
            const n = await readLocal(path, () => f.read(buf.subarray(len)));
            if (n === null) break;
            len += n;
          }
          if (len === 0) break;
          total += len;
          const id: string = uploadId;
          const sent: Promise<void> = this.#send<{ ETag?: string }>(
            "put",
            full,
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: full,
              UploadId: id,
              PartNumber: part,
              Body: buf.subarray(0, len),
              ContentLength: len,
            }),
            Math.ceil(len / (1024 * 1024)) * 1000,
          ).then(({ out: up }) => {
            parts[part - 1] = { ETag: up.ETag ?? "", PartNumber: part };
          }, (err) => {
            failure ??= { err };
          }).finally(() => {
            free.push(buf);
            inFlight.delete(sent);
          });
          inFlight.add(sent);
          if (len < partBytes) break;
        }
      } finally {
        await Promise.all(inFlight); // never leave a part in flight behind (each settles, none rejects)
      }
      if (failure !== null) throw (failure as { err: unknown }).err;
      if (total !== options.size) throw changedWhileUploading(path, options.size, total);
      const { out: done } = await this.#send<{ ETag?: string }>(
        "put",
        full,
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: full,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
        }),
      );
      uploadId = undefined;
      return { etag: done.ETag };
    } finally {
      f.close();
      if (uploadId !== undefined) {
        const id = uploadId;
        await this.#send(
          "put",
          full,
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: full, UploadId: id }),
        ).catch(() => {});
      }
    }
  }

  /** DeleteObjects in batches of 1000; absent keys are not an error, per-key failures are. */
  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000).map((k) => ({ Key: this.fullKey(k) }));
      const { out } = await this.#send<{ Errors?: { Key?: string; Code?: string; Message?: string }[] }>(
        "delete",
        batch[0].Key,
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch, Quiet: true } }),
      );
      const errors = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
      if (errors.length > 0) {
        const e = errors[0];
        throw mapS3Error(
          { name: e.Code, message: e.Message ?? e.Code, $metadata: {} },
          this.#ctx("delete", e.Key),
        );
      }
    }
  }

  /** Closes the client's keep-alive connections. */
  close(): void {
    this.#client.destroy();
  }
}
