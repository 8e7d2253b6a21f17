/**
 * Starts a real s3rver 3.7.1 (a fake S3 in Node) for end-to-end tests.
 *
 * Runs `node --openssl-legacy-provider .tools/node_modules/s3rver/bin/s3rver.js -d <tmp> -a 127.0.0.1 -p 0
 * --silent --configure-bucket <bucket>`: port 0 lets the OS pick a free port, which s3rver prints as
 * `S3rver listening on 127.0.0.1:<port>`. The legacy provider is needed for ListObjectsV2 page 2 (its
 * continuation token uses DES).
 *
 * Two s3rver bugs are patched at startup (a `--require` preload, see {@link S3RVER_PATCH}), because every
 * test that lists or deletes would otherwise trip on them:
 * - listings came out in file-system walk order (`a/…` before `a.x`), and pagination then *skipped* keys;
 *   now they are in S3's byte order;
 * - DeleteObjects of several keys in one directory raced on removing the emptied directory and answered
 *   500 InternalError; that clean-up is now tolerant.
 *
 * Known gaps that remain: it ignores If-None-Match/If-Match (use `fault_proxy.ts`, which enforces them),
 * drops nested CommonPrefixes in Delimiter listings, and does not verify SigV4 signatures (a wrong secret
 * is accepted; only an unknown access key id is refused).
 *
 * Always `await server.stop()` in `finally`: it kills the process and removes the data directory.
 *
 * @module
 */

import { ROOT } from "./cli.ts";

/** A running s3rver. */
export interface S3rver {
  /** `http://127.0.0.1:<port>`. */
  endpoint: string;
  /** The bucket created at start. */
  bucket: string;
  /** s3rver's fixed access key id. */
  accessKeyId: "S3RVER";
  /** s3rver's fixed secret. */
  secretAccessKey: "S3RVER";
  /** Region to use with it (any works; s3rver does not check). */
  region: string;
  /** s3rver's data directory (`<dir>/<bucket>/<key>._S3rver_object`). */
  dir: string;
  /** Kills s3rver and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Options of {@link startS3rver}. */
export interface S3rverOptions {
  /** Bucket to create (default `walrust-test`). */
  bucket?: string;
  /** Give up waiting for startup after this many ms (default 20 000). */
  startTimeoutMs?: number;
}

/** The s3rver entry point in the project's tool directory. */
export const S3RVER_BIN = `${ROOT}/.tools/node_modules/s3rver/bin/s3rver.js`;

/**
 * CommonJS preload that fixes s3rver's listing order and DeleteObjects race (see the module doc). It patches
 * `utils.walk` before the file-system store destructures it, so it must run via `--require`.
 */
export const S3RVER_PATCH = `'use strict';
const fs = require('fs');
const path = require('path');
const lib = ${JSON.stringify(`${ROOT}/.tools/node_modules/s3rver/lib`)};
const utils = require(lib + '/utils.js');
const SUFFIX = '._S3rver_';
utils.walk = function* walk(dir, recurseFilter) {
  const entries = [];
  for (const name of fs.readdirSync(dir)) {
    const p = path.posix.join(dir, name);
    let isDir;
    try { isDir = fs.statSync(p).isDirectory(); } catch { continue; }
    const i = name.indexOf(SUFFIX);
    entries.push({ p, isDir, key: isDir ? name + '/' : (i >= 0 ? name.slice(0, i) : name) });
  }
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  for (const e of entries) {
    if (!e.isDir) yield e.p;
    else if (!recurseFilter || recurseFilter(e.p)) yield* walk(e.p, recurseFilter);
  }
};
const Store = require(lib + '/stores/filesystem.js');
const deleteObject = Store.prototype.deleteObject;
Store.prototype.deleteObject = async function (bucket, key) {
  try {
    return await deleteObject.call(this, bucket, key);
  } catch (err) {
    if (err && ['ENOENT', 'ENOTEMPTY', 'EEXIST'].includes(err.code)) return;
    throw err;
  }
};
`;

/** The Node binary: `$WALRUST_NODE` or `node` on PATH. */
export function nodeBinary(): string {
  return Deno.env.get("WALRUST_NODE") ?? "node";
}

/** Starts s3rver on a free port with one bucket; resolves once it answers HTTP requests. */
export async function startS3rver(options: S3rverOptions = {}): Promise<S3rver> {
  const bucket = options.bucket ?? "walrust-test";
  const base = await Deno.makeTempDir({ prefix: "walrust-s3rver-" });
  const dir = `${base}/data`;
  await Deno.mkdir(dir);
  await Deno.writeTextFile(`${base}/patch.cjs`, S3RVER_PATCH);
  const child = new Deno.Command(nodeBinary(), {
    args: [
      "--openssl-legacy-provider",
      "--require",
      `${base}/patch.cjs`,
      S3RVER_BIN,
      "-d",
      dir,
      "-a",
      "127.0.0.1",
      "-p",
      "0",
      "--silent",
      "--configure-bucket",
      bucket,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let output = "";
  let resolvePort: (port: number) => void = () => {};
  const portPromise = new Promise<number>((resolve) => (resolvePort = resolve));
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        output += dec.decode(chunk, { stream: true });
        if (output.length > 64_000) output = output.slice(-32_000);
        const m = /S3rver listening on [^\s:]+:(\d+)/.exec(output);
        if (m) resolvePort(Number(m[1]));
      }
    } catch {
      // The process was killed: nothing more to read.
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.status;
    await drained;
    await Deno.remove(base, { recursive: true }).catch(() => {});
  };

  try {
    const timeoutMs = options.startTimeoutMs ?? 20_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const port = await Promise.race([
      portPromise,
      child.status.then((s) => {
        throw new Error(`s3rver exited with code ${s.code} before listening:\n${output}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`s3rver did not start in ${timeoutMs} ms:\n${output}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const endpoint = `http://127.0.0.1:${port}`;
    await waitUntilAnswering(`${endpoint}/${bucket}`, timeoutMs);
    return {
      endpoint,
      bucket,
      accessKeyId: "S3RVER",
      secretAccessKey: "S3RVER",
      region: "us-east-1",
      dir,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitUntilAnswering(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      // Anonymous GET of the bucket: s3rver answers (200 listing) once the bucket exists.
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.status < 500) return;
    } catch {
      // Not accepting connections yet.
    }
    if (Date.now() > deadline) throw new Error(`s3rver at ${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
