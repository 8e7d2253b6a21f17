/**
 * Helpers to run the real Litestream v0.3.13 binary in tests and benchmarks: `litestream replicate` to a
 * `file` or `s3` replica (a YAML config written to a temp dir), waiting until a commit has been uploaded,
 * and `litestream restore`.
 *
 * Facts these helpers rely on (measured with v0.3.13):
 * - Litestream logs to stdout (`time=… level=INFO msg="wal segment written" … position=<gen>/<idx %08x>:<offset>
 *   … sz=<uncompressed bytes>`); both pipes are drained continuously so the child never blocks.
 * - Its local state lives in `<dir>/.<dbfile>-litestream/`: `generation` (current generation id) and
 *   `generations/<gen>/wal/<idx %08x>.wal` (the shadow WAL, an exact copy of the real WAL up to the last commit).
 * - While it runs it holds a read transaction, so an application's `wal_checkpoint(TRUNCATE)` returns busy; new
 *   WAL indexes come from Litestream's own checkpoints (`min-checkpoint-page-count`, `checkpoint-interval`).
 * - Its restore leaves `<out>.tmp-wal` / `<out>.tmp-shm` behind and keeps page 1 in WAL mode.
 * - After a restart following an application TRUNCATE checkpoint it logs `init: cannot determine last wal
 *   position, clearing generation` and starts a new generation.
 * - `litestream restore` from an s3rver bucket fails (see {@link LitestreamRestoreOptions.s3}).
 *
 * @module
 */

/** The repository root. */
const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Path of the Litestream v0.3.13 binary installed by npm (`@flydotio/litestream-linux-x64`). */
export const LITESTREAM_BIN = `${ROOT}/.tools/node_modules/@flydotio/litestream-linux-x64/litestream`;

/** An S3-compatible replica target (e.g. from `tests/support/s3rver.ts` `startS3rver()`). */
export interface LitestreamS3Target {
  /** `http://127.0.0.1:PORT`. */
  endpoint: string;
  /** Bucket name. */
  bucket: string;
  /** Access key id. */
  accessKeyId: string;
  /** Secret access key. */
  secretAccessKey: string;
  /** Region, e.g. `us-east-1`. */
  region: string;
  /** Key prefix inside the bucket (the replica root); default `db`. */
  path?: string;
}

/** Options of {@link startLitestreamReplicate}. Durations are Go duration strings (`100ms`, `1s`). */
export interface LitestreamReplicateOptions {
  /** Database path. Litestream switches it to WAL mode if needed. */
  db: string;
  /** A `file` replica in this directory (the replica root that will contain `generations/`). */
  replicaDir?: string;
  /** An `s3` replica (may be combined with `replicaDir`). */
  s3?: LitestreamS3Target;
  /** Replica `sync-interval` (how often shadow WAL is uploaded); default `100ms`. */
  syncInterval?: string;
  /** Database `monitor-interval` (how often the WAL is copied to the shadow WAL); default `100ms`. */
  monitorInterval?: string;
  /** Replica `snapshot-interval`; default none (one snapshot per generation). */
  snapshotInterval?: string;
  /** Database `checkpoint-interval`; Litestream's default is 1m. */
  checkpointInterval?: string;
  /** Database `min-checkpoint-page-count`: Litestream checkpoints (new WAL index) past this many WAL pages. */
  minCheckpointPageCount?: number;
}

/** A running `litestream replicate`. */
export interface LitestreamHandle {
  /** The YAML config it runs with (usable by {@link litestreamRestore} until {@link LitestreamHandle.stop}). */
  readonly configPath: string;
  /** Process id. */
  readonly pid: number;
  /** Everything it logged so far (stdout + stderr). */
  log(): string;
  /** Resolves when the log matches `re`; rejects after `timeoutMs` or if the process exits. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /**
   * Resolves once everything committed to the database so far is uploaded: the shadow WAL has caught up with the
   * real WAL and a `wal segment written` line ends exactly at the shadow WAL's size. Call it while no
   * transaction is in progress.
   */
  waitForSync(timeoutMs?: number): Promise<{ generation: string; index: number; offset: number }>;
  /** The current generation id (from Litestream's local state), or null before the first sync. */
  generation(): Promise<string | null>;
  /** SIGTERM, wait for exit (SIGKILL after 5 s), remove the temp config directory. Safe to call twice. */
  stop(): Promise<void>;
}

function yamlString(s: string): string {
  return JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
}

/** The YAML config Litestream v0.3.13 reads for `opts`. */
export function litestreamConfigYaml(opts: LitestreamReplicateOptions): string {
  const lines = ["dbs:", `  - path: ${yamlString(opts.db)}`];
  lines.push(`    monitor-interval: ${opts.monitorInterval ?? "100ms"}`);
  if (opts.checkpointInterval) lines.push(`    checkpoint-interval: ${opts.checkpointInterval}`);
  if (opts.minCheckpointPageCount !== undefined) {
    lines.push(`    min-checkpoint-page-count: ${opts.minCheckpointPageCount}`);
  }
  lines.push("    replicas:");
  const common = (indent: string) => {
    const out = [`${indent}sync-interval: ${opts.syncInterval ?? "100ms"}`];
    if (opts.snapshotInterval) out.push(`${indent}snapshot-interval: ${opts.snapshotInterval}`);
    return out;
  };
  if (opts.replicaDir) {
    lines.push("      - type: file", `        path: ${yamlString(opts.replicaDir)}`, ...common("        "));
  }
  if (opts.s3) {
    lines.push(
      "      - type: s3",
      `        bucket: ${yamlString(opts.s3.bucket)}`,
      `        path: ${yamlString(opts.s3.path ?? "db")}`,
      `        endpoint: ${yamlString(opts.s3.endpoint)}`,
      `        region: ${yamlString(opts.s3.region)}`,
      `        access-key-id: ${yamlString(opts.s3.accessKeyId)}`,
      `        secret-access-key: ${yamlString(opts.s3.secretAccessKey)}`,
      "        force-path-style: true",
      ...common("        "),
    );
  }
  if (!opts.replicaDir && !opts.s3) throw new Error("litestream: need replicaDir or s3");
  return lines.join("\n") + "\n";
}

const decoder = new TextDecoder();

async function drain(stream: ReadableStream<Uint8Array>, sink: (text: string) => void): Promise<void> {
  try {
    for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
  } catch { /* process killed */ }
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? (i === 0 ? "/" : ".") : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Litestream v0.3.13's local meta directory for `db`. */
export function litestreamMetaDir(db: string): string {
  return `${dirOf(db)}/.${baseOf(db)}-litestream`;
}

async function statSize(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).size;
  } catch {
    return null;
  }
}

async function readAt(path: string, offset: number, n: number): Promise<Uint8Array> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path);
  } catch {
    return new Uint8Array(0);
  }
  try {
    await f.seek(offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const k = await f.read(buf.subarray(got));
      if (k === null) break;
      got += k;
    }
    return buf.subarray(0, got);
  } finally {
    f.close();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Whether Litestream's shadow WAL (current index of `gen`) holds every committed frame of the real WAL: the
 * headers are equal and the real WAL has no frame with the current salts past the shadow's end (a restarted
 * WAL keeps stale frames of the old salts beyond its valid end).
 */
async function shadowCaughtUp(
  db: string,
  gen: string,
  frame: number,
): Promise<{ index: number; size: number } | null> {
  const walDir = `${litestreamMetaDir(db)}/generations/${gen}/wal`;
  let index = -1;
  try {
    for await (const e of Deno.readDir(walDir)) {
      const m = e.name.match(/^([0-9a-f]{8})\.wal$/);
      if (m) index = Math.max(index, parseInt(m[1], 16));
    }
  } catch {
    return null;
  }
  if (index < 0) return null;
  const shadow = `${walDir}/${index.toString(16).padStart(8, "0")}.wal`;
  const size = await statSize(shadow);
  if (size === null || size < 32) return null;
  const realHeader = await readAt(`${db}-wal`, 0, 32);
  if (realHeader.length < 32 || !sameBytes(realHeader, await readAt(shadow, 0, 32))) return null;
  const next = await readAt(`${db}-wal`, size, 24);
  if (
    next.length === 24 && (size - 32) % frame === 0 &&
    sameBytes(next.subarray(8, 16), realHeader.subarray(16, 24))
  ) {
    return null; // a frame with the current salts that the shadow WAL does not have yet
  }
  return { index, size };
}

/** Starts `litestream replicate -config <tmp>/litestream.yml` for one database. */
export async function startLitestreamReplicate(opts: LitestreamReplicateOptions): Promise<LitestreamHandle> {
  const configDir = await Deno.makeTempDir({ prefix: "litestream-cfg-" });
  const configPath = `${configDir}/litestream.yml`;
  await Deno.writeTextFile(configPath, litestreamConfigYaml(opts));
  const child = new Deno.Command(LITESTREAM_BIN, {
    args: ["replicate", "-config", configPath],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let exited = false;
  const drained = Promise.all([
    drain(child.stdout, (t) => void (text += t)),
    drain(child.stderr, (t) => void (text += t)),
  ]);
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let stopped = false;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const caughtUp = (gen: string, frame: number) => shadowCaughtUp(opts.db, gen, frame);

  const handle: LitestreamHandle = {
    configPath,
    pid: child.pid,
    log: () => text,
    async waitForLog(re, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = text.match(re);
        if (m) return m;
        if (exited) throw new Error(`litestream exited while waiting for ${re}:\n${text}`);
        if (Date.now() > deadline) throw new Error(`litestream: timed out waiting for ${re}:\n${text}`);
        await sleep(20);
      }
    },
    async generation() {
      try {
        const g = (await Deno.readTextFile(`${litestreamMetaDir(opts.db)}/generation`)).trim();
        return g === "" ? null : g;
      } catch {
        return null;
      }
    },
    async waitForSync(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const header = await readAt(opts.db, 0, 100);
      const raw = (header[16] << 8) | header[17];
      const frame = 24 + (raw === 1 ? 65536 : raw);
      for (;;) {
        if (exited) throw new Error(`litestream exited while waiting for sync:\n${text}`);
        const gen = await handle.generation();
        const caught = gen ? await caughtUp(gen, frame) : null;
        if (caught) {
          const idx = caught.index.toString(16).padStart(8, "0");
          const re = new RegExp(`wal segment written.*position=${gen}/${idx}:(\\d+)\\b.*?\\bsz=(\\d+)`, "g");
          for (const m of text.matchAll(re)) {
            if (Number(m[1]) + Number(m[2]) === caught.size) {
              return { generation: gen!, index: caught.index, offset: caught.size };
            }
          }
        }
        if (Date.now() > deadline) throw new Error(`litestream: timed out waiting for sync:\n${text}`);
        await sleep(20);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
        }, 5_000);
        try {
          await status;
        } finally {
          clearTimeout(timer);
        }
      }
      await drained;
      await Deno.remove(configDir, { recursive: true }).catch(() => {});
    },
  };
  return handle;
}

/** Options of {@link litestreamRestore}: exactly one of `replicaDir`, `s3` or `configPath` + `db`. */
export interface LitestreamRestoreOptions {
  /** Output database path (must not exist). */
  output: string;
  /** Restore from this `file` replica root (`file://` URL form). */
  replicaDir?: string;
  /**
   * Restore from this S3 replica (a temporary config is written). Not against s3rver: v0.3.13 lists
   * generations with Delimiter "/" and s3rver drops CommonPrefixes nested two levels deep ("no matching backups
   * found"); restore a local copy of the objects (mtime = LastModified) instead.
   */
  s3?: LitestreamS3Target;
  /** Restore using an existing config (e.g. a replicate handle's) and its database path. */
  configPath?: string;
  /** The database path named in `configPath` (or a placeholder path for `s3`). */
  db?: string;
  /** Point in time (`-timestamp`, RFC 3339 with milliseconds). */
  timestamp?: Date;
  /** `-generation`. */
  generation?: string;
}

/** Runs `litestream restore`; throws an Error with its output on failure. Returns its log. */
export async function litestreamRestore(opts: LitestreamRestoreOptions): Promise<string> {
  const args = ["restore", "-o", opts.output];
  if (opts.timestamp) args.push("-timestamp", opts.timestamp.toISOString());
  if (opts.generation) args.push("-generation", opts.generation);
  let tmpDir: string | undefined;
  try {
    if (opts.replicaDir) {
      args.push(`file://${opts.replicaDir}`);
    } else if (opts.s3) {
      tmpDir = await Deno.makeTempDir({ prefix: "litestream-cfg-" });
      const db = opts.db ?? `${tmpDir}/placeholder.db`;
      await Deno.writeTextFile(`${tmpDir}/litestream.yml`, litestreamConfigYaml({ db, s3: opts.s3 }));
      args.push("-config", `${tmpDir}/litestream.yml`, db);
    } else if (opts.configPath && opts.db) {
      args.push("-config", opts.configPath, opts.db);
    } else {
      throw new Error("litestreamRestore: need replicaDir, s3, or configPath + db");
    }
    const out = await new Deno.Command(LITESTREAM_BIN, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const log = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    if (out.code !== 0) throw new Error(`litestream ${args.join(" ")} exited ${out.code}:\n${log}`);
    return log;
  } finally {
    if (tmpDir) await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
}
