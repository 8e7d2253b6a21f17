/**
 * A test application that commits transactions to a SQLite database, run as a separate process:
 *
 * ```
 * deno run -A tests/support/writer.ts <db> [--count N] [--duration 5s] [--rate TX_PER_S] [--seed N]
 *     [--mix inserts,updates,deletes,blobs,schema,vacuum,checkpoint] [--log FILE] [--autocheckpoint N]
 *     [--page-size N] [--no-digest]
 * ```
 *
 * Each transaction bumps `writer_meta.seq` and, after COMMIT returned, appends one JSON line
 * `{seq, commitTime, digest, op}` to the log, where `digest` is {@link databaseDigest} of the database as that
 * commit left it. A restored database's `writer_meta.seq` therefore names the logged state it must equal.
 * Ops: inserts, updates, deletes, blobs (larger than a page), schema (create/drop table, add column,
 * create/drop index), vacuum (a small insert then VACUUM), checkpoint (a small insert then an application
 * `PRAGMA wal_checkpoint(PASSIVE|TRUNCATE)`). SQLite's default autocheckpoint (1000 pages) stays on unless
 * `--autocheckpoint` says otherwise. Everything random comes from `--seed`.
 *
 * stdout gets `{"ready":true,"seq":N}` once the database is prepared and `{"done":true,...}` at the end.
 * SIGTERM/SIGINT stop it after the current transaction.
 *
 * The same machinery is usable in-process ({@link TestWriter}, {@link runWriter}) and as a child process
 * ({@link spawnWriter}).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { databaseDigest, quoteIdent } from "./sqlite_state.ts";
import { parseDuration } from "../../src/util/duration.ts";

/** The kinds of transaction the writer makes. */
export type WriterOp = "inserts" | "updates" | "deletes" | "blobs" | "schema" | "vacuum" | "checkpoint";

/** Every op, in a fixed order. */
export const ALL_OPS: readonly WriterOp[] = [
  "inserts",
  "updates",
  "deletes",
  "blobs",
  "schema",
  "vacuum",
  "checkpoint",
];

/** The default mix: row changes only (no VACUUM, schema changes or application checkpoints). */
export const DEFAULT_MIX: readonly WriterOp[] = ["inserts", "updates", "deletes", "blobs"];

/** One committed state, as logged. */
export interface WriterRecord {
  /** `writer_meta.seq` after this commit (0 = the writer's tables were just created). */
  seq: number;
  /** `Date.now()` right after COMMIT returned. */
  commitTime: number;
  /** {@link databaseDigest} of the database after this commit, or null with `--no-digest`. */
  digest: string | null;
  /** What the transaction did ("init" for seq 0). */
  op: WriterOp | "init";
  /** For op "checkpoint": the application checkpoint that followed the commit. */
  checkpoint?: { mode: "PASSIVE" | "TRUNCATE"; busy: boolean; log: number; checkpointed: number };
}

/** Options of {@link TestWriter.open}. */
export interface TestWriterOptions {
  /** PRNG seed (default 1). */
  seed?: number;
  /** Ops to choose from uniformly (default {@link DEFAULT_MIX}). */
  mix?: readonly WriterOp[];
  /** `PRAGMA wal_autocheckpoint` for this connection (default: SQLite's own, 1000; 0 = off). */
  autocheckpoint?: number;
  /** Page size for a new database (default 4096). */
  pageSize?: number;
  /** Compute a digest for each record (default true). */
  digest?: boolean;
  /** Append records as JSON lines to this file. */
  log?: string;
  /** Busy timeout of the writer's connection (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** Options of {@link runWriter}: when to stop and how fast to go. */
export interface RunOptions extends TestWriterOptions {
  /** Stop after this many transactions. */
  count?: number;
  /** Stop after this many ms. */
  durationMs?: number;
  /** Transactions per second (0 or absent: as fast as possible). */
  rate?: number;
  /** Stop early when this signal aborts. */
  signal?: AbortSignal;
  /** Called once the database is prepared, before the first transaction. */
  onReady?: (w: TestWriter) => void;
  /** Keep the records in {@link WriterSummary.records} (default true; false for long runs). */
  keepRecords?: boolean;
}

/** Small deterministic PRNG (mulberry32). */
export class Rng {
  #s: number;
  /** Creates a generator from a 32-bit seed. */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Next value in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** `n` pseudo-random bytes. */
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      for (let j = 0; j < 4 && i + j < n; j++) b[i + j] = v >>> (8 * j);
    }
    return b;
  }
  /** A lowercase word of length in [lo, hi]. */
  word(lo: number, hi: number): string {
    const n = this.int(lo, hi);
    let s = "";
    for (let i = 0; i < n; i++) s += String.fromCharCode(97 + this.int(0, 25));
    return s;
  }
}

const enc = new TextEncoder();

/** A writer over one database connection; every {@link TestWriter.step} is one committed transaction. */
export class TestWriter {
  /** The database path. */
  readonly path: string;
  /** The connection (exposed for tests that want to inspect or add statements). */
  readonly db: DatabaseSync;
  /** The last committed `writer_meta.seq`. */
  seq = 0;
  /** The seq-0 record when {@link TestWriter.open} created the writer's tables, else null. */
  initRecord: WriterRecord | null = null;
  /** `Date.now()` right after the last COMMIT returned. */
  #commitTime = 0;
  readonly #rng: Rng;
  readonly #mix: readonly WriterOp[];
  readonly #digest: boolean;
  readonly #pageSize: number;
  readonly #busyTimeoutMs: number;
  #log: Deno.FsFile | null = null;

  private constructor(path: string, db: DatabaseSync, opts: TestWriterOptions) {
    this.path = path;
    this.db = db;
    this.#rng = new Rng(opts.seed ?? 1);
    this.#mix = opts.mix && opts.mix.length > 0 ? opts.mix : DEFAULT_MIX;
    this.#digest = opts.digest ?? true;
    this.#busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    this.#pageSize = Number((db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
  }

  /**
   * Opens (creating if needed) the database in WAL mode and the writer's tables. A new set of tables is logged
   * as seq 0; an existing `writer_meta` is continued from its seq.
   */
  static open(path: string, opts: TestWriterOptions = {}): TestWriter {
    const db = new DatabaseSync(path, { timeout: opts.busyTimeoutMs ?? 5000 });
    try {
      if (opts.pageSize) db.exec(`PRAGMA page_size=${Number(opts.pageSize)}`);
      db.exec("PRAGMA journal_mode=WAL");
      if (opts.autocheckpoint !== undefined) {
        db.exec(`PRAGMA wal_autocheckpoint=${Number(opts.autocheckpoint)}`);
      }
    } catch (err) {
      db.close();
      throw err;
    }
    const w = new TestWriter(path, db, opts);
    if (opts.log) w.#log = Deno.openSync(opts.log, { append: true, create: true });
    const meta = db.prepare("SELECT 1 AS x FROM sqlite_master WHERE name = 'writer_meta'").get();
    if (meta) {
      w.seq = Number((db.prepare("SELECT seq FROM writer_meta WHERE id = 1").get() as { seq: number }).seq);
    } else {
      w.#transaction(() => {
        db.exec(
          `CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, note TEXT);
          CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
          CREATE TABLE writer_meta (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
          INSERT INTO writer_meta (id, seq) VALUES (1, 0);`,
        );
      });
      w.#commitTime = Date.now();
      w.initRecord = w.#record("init");
    }
    return w;
  }

  /** Runs `fn` in `BEGIN IMMEDIATE … COMMIT` (rolled back if it throws). */
  #transaction(fn: () => void): void {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      fn();
      this.db.exec("COMMIT");
    } catch (err) {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Builds the record of the state just committed and appends it to the log (after COMMIT returned). */
  #record(op: WriterRecord["op"], checkpoint?: WriterRecord["checkpoint"]): WriterRecord {
    const rec: WriterRecord = {
      seq: this.seq,
      commitTime: this.#commitTime,
      digest: this.#digest ? databaseDigest(this.db) : null,
      op,
    };
    if (checkpoint) rec.checkpoint = checkpoint;
    if (this.#log) {
      const line = enc.encode(JSON.stringify(rec) + "\n");
      let off = 0;
      while (off < line.length) off += this.#log.writeSync(line.subarray(off));
    }
    return rec;
  }

  /** Commits one transaction of kind `op` (default: chosen from the mix) and returns its record. */
  step(op: WriterOp = this.#rng.pick(this.#mix)): WriterRecord {
    const rng = this.#rng;
    const db = this.db;
    if (op === "vacuum" || op === "checkpoint") {
      // A small change first, so the op still commits a new state; then the non-transactional part.
      this.#commit(() => this.#inserts(rng.int(1, 3)));
      if (op === "vacuum") {
        db.exec("VACUUM");
        return this.#record(op);
      }
      const mode = rng.next() < 0.5 ? "PASSIVE" : "TRUNCATE";
      // A TRUNCATE waits for readers for the whole busy timeout: keep that short, it is only a test app.
      db.exec("PRAGMA busy_timeout=200");
      let row: { busy: number; log: number; checkpointed: number };
      try {
        row = db.prepare(`PRAGMA wal_checkpoint(${mode})`).get() as typeof row;
      } finally {
        db.exec(`PRAGMA busy_timeout=${this.#busyTimeoutMs}`);
      }
      return this.#record(op, {
        mode,
        busy: Number(row.busy) !== 0,
        log: Number(row.log),
        checkpointed: Number(row.checkpointed),
      });
    }
    this.#commit(() => {
      switch (op) {
        case "inserts":
          this.#inserts(rng.int(1, 20));
          break;
        case "updates":
          this.#updates(rng.int(1, 10));
          break;
        case "deletes":
          this.#deletes(rng.int(1, 5));
          break;
        case "blobs":
          this.#blob();
          break;
        case "schema":
          this.#schema();
          break;
      }
    });
    return this.#record(op);
  }

  /** One transaction: `fn` plus the seq bump. */
  #commit(fn: () => void): void {
    this.#transaction(() => {
      fn();
      this.db.prepare("UPDATE writer_meta SET seq = ? WHERE id = 1").run(this.seq + 1);
    });
    this.#commitTime = Date.now();
    this.seq++;
  }

  #maxId(table: string): number {
    const row = this.db.prepare(`SELECT coalesce(max(id), 0) AS m FROM ${quoteIdent(table)}`).get() as {
      m: number;
    };
    return Number(row.m);
  }

  #inserts(n: number): void {
    const rng = this.#rng;
    const stmt = this.db.prepare("INSERT INTO items (k, v, note) VALUES (?, ?, ?)");
    for (let i = 0; i < n; i++) {
      stmt.run(rng.word(4, 40), rng.int(-1_000_000, 1_000_000), rng.next() < 0.3 ? null : rng.word(0, 200));
    }
  }

  #updates(n: number): void {
    const rng = this.#rng;
    const max = this.#maxId("items");
    if (max === 0) return this.#inserts(n);
    const stmt = this.db.prepare("UPDATE items SET v = ?, note = ? WHERE id = ?");
    for (let i = 0; i < n; i++) stmt.run(rng.int(-1_000_000, 1_000_000), rng.word(0, 300), rng.int(1, max));
  }

  #deletes(n: number): void {
    const rng = this.#rng;
    const max = this.#maxId("items");
    if (max === 0) return this.#inserts(n);
    const stmt = this.db.prepare("DELETE FROM items WHERE id BETWEEN ? AND ?");
    for (let i = 0; i < n; i++) {
      const a = rng.int(1, max);
      stmt.run(a, a + rng.int(0, 3));
    }
  }

  #blob(): void {
    const rng = this.#rng;
    const size = this.#pageSize * rng.int(1, 3) + rng.int(1, this.#pageSize);
    const max = this.#maxId("blobs");
    if (max > 0 && rng.next() < 0.4) {
      this.db.prepare("UPDATE blobs SET data = ? WHERE id = ?").run(rng.bytes(size), rng.int(1, max));
    } else if (max > 3 && rng.next() < 0.2) {
      this.db.prepare("DELETE FROM blobs WHERE id = ?").run(rng.int(1, max));
    } else {
      this.db.prepare("INSERT INTO blobs (data) VALUES (?)").run(rng.bytes(size));
    }
  }

  #schema(): void {
    const rng = this.#rng;
    const db = this.db;
    const extra = (db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'extra_*' ORDER BY name",
    ).all() as { name: string }[]).map((r) => r.name);
    const indexes = (db.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND name GLOB 'idx_*' ORDER BY name",
    ).all() as { name: string }[]).map((r) => r.name);
    const action = extra.length === 0 ? 0 : rng.int(0, 4);
    const tag = `${this.seq + 1}`;
    switch (action) {
      case 0: {
        const t = `extra_${tag}`;
        db.exec(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, a TEXT, b REAL)`);
        const stmt = db.prepare(`INSERT INTO ${t} (a, b) VALUES (?, ?)`);
        for (let i = rng.int(1, 10); i > 0; i--) stmt.run(rng.word(1, 30), rng.next() * 1000);
        break;
      }
      case 1:
        db.exec(`DROP TABLE ${quoteIdent(rng.pick(extra))}`);
        break;
      case 2:
        db.exec(`ALTER TABLE ${quoteIdent(rng.pick(extra))} ADD COLUMN c_${tag} INTEGER DEFAULT ${tag}`);
        break;
      case 3:
        if (indexes.length > 0 && rng.next() < 0.5) {
          db.exec(`DROP INDEX ${quoteIdent(rng.pick(indexes))}`);
        } else {
          const t = rng.pick([...extra, "items"]);
          db.exec(`CREATE INDEX idx_${tag} ON ${quoteIdent(t)} (${t === "items" ? "v" : "a"})`);
        }
        break;
      default: {
        const t = rng.pick(extra);
        db.prepare(`INSERT INTO ${quoteIdent(t)} (a, b) VALUES (?, ?)`).run(rng.word(1, 30), rng.next());
      }
    }
  }

  /** Closes the log and the connection. */
  close(): void {
    try {
      this.#log?.close();
    } catch { /* already closed */ }
    this.#log = null;
    if (this.db.isOpen) this.db.close();
  }
}

/** Summary of a {@link runWriter} run. */
export interface WriterSummary {
  /** Transactions committed by this run (seq 0 not counted). */
  commits: number;
  /** The last committed seq. */
  seq: number;
  /** Every record of this run, in order (including seq 0 for a new database). */
  records: WriterRecord[];
}

/**
 * Opens the database, commits transactions until `count`, `durationMs` or `signal` says stop (at least one of
 * them should be given), at `rate` per second, and closes it. Yields to the event loop between transactions.
 */
export async function runWriter(path: string, opts: RunOptions = {}): Promise<WriterSummary> {
  const w = TestWriter.open(path, opts);
  const records: WriterRecord[] = [];
  let commits = 0;
  try {
    if (w.initRecord) records.push(w.initRecord);
    opts.onReady?.(w);
    const start = Date.now();
    while (
      (opts.count === undefined || commits < opts.count) &&
      (opts.durationMs === undefined || Date.now() - start < opts.durationMs) && !opts.signal?.aborted
    ) {
      const rec = w.step();
      if (opts.keepRecords !== false) records.push(rec);
      commits++;
      const wait = opts.rate && opts.rate > 0 ? start + (commits * 1000) / opts.rate - Date.now() : 0;
      await new Promise((r) => setTimeout(r, Math.max(0, wait)));
    }
    return { commits, seq: w.seq, records };
  } finally {
    w.close();
  }
}

/** Parses a writer log (JSON lines); a torn last line (writer killed mid-write) is ignored. */
export async function readWriterLog(path: string): Promise<WriterRecord[]> {
  const text = await Deno.readTextFile(path);
  const out: WriterRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as WriterRecord);
    } catch {
      break;
    }
  }
  return out;
}

/** A writer running as a child process. */
export interface WriterProcess {
  /** The child process. */
  child: Deno.ChildProcess;
  /** Resolves once the writer printed its ready line (database prepared). */
  ready: Promise<void>;
  /** Resolves with the exit status when the process ends. */
  status: Promise<Deno.CommandStatus>;
  /** Asks the writer to stop after its current transaction (SIGTERM) and waits for it. */
  stop(): Promise<Deno.CommandStatus>;
  /** Kills the writer without warning (SIGKILL) and waits for it. */
  kill(): Promise<Deno.CommandStatus>;
}

/** Converts options to the command-line flags of this script. */
export function writerArgs(path: string, opts: RunOptions = {}): string[] {
  const a = [path];
  if (opts.count !== undefined) a.push("--count", String(opts.count));
  if (opts.durationMs !== undefined) a.push("--duration", `${opts.durationMs}ms`);
  if (opts.rate !== undefined) a.push("--rate", String(opts.rate));
  if (opts.seed !== undefined) a.push("--seed", String(opts.seed));
  if (opts.mix) a.push("--mix", opts.mix.join(","));
  if (opts.log) a.push("--log", opts.log);
  if (opts.autocheckpoint !== undefined) a.push("--autocheckpoint", String(opts.autocheckpoint));
  if (opts.pageSize !== undefined) a.push("--page-size", String(opts.pageSize));
  if (opts.digest === false) a.push("--no-digest");
  return a;
}

/**
 * Starts this script as a separate `deno run` process writing to `path`. The caller must end it
 * (`stop()`/`kill()`, or wait for `status` when `count`/`durationMs` was given), normally in a `finally`.
 */
export function spawnWriter(
  path: string,
  opts: Omit<RunOptions, "signal" | "onReady" | "keepRecords"> = {},
): WriterProcess {
  const script = new URL(import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", script, ...writerArgs(path, opts)],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  // Drain stdout (so the child never blocks on a full pipe) and watch for the ready line.
  const drained = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    let seen = false;
    for await (const chunk of child.stdout) {
      buf += dec.decode(chunk, { stream: true });
      if (!seen && buf.includes('"ready":true')) {
        seen = true;
        readyResolve();
      }
    }
    if (!seen) readyReject(new Error(`writer for ${path} exited before it was ready`));
  })();
  ready.catch(() => {});
  const status = child.status.then(async (s) => {
    await drained.catch(() => {});
    return s;
  });
  const signalAndWait = async (sig: Deno.Signal): Promise<Deno.CommandStatus> => {
    try {
      child.kill(sig);
    } catch { /* already exited */ }
    return await status;
  };
  return { child, ready, status, stop: () => signalAndWait("SIGTERM"), kill: () => signalAndWait("SIGKILL") };
}

/** Parses the script's command line into run options (throws on a bad value). */
export function parseWriterArgs(args: string[]): { path: string; opts: RunOptions } {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      rate: { type: "string" },
      count: { type: "string" },
      duration: { type: "string" },
      seed: { type: "string" },
      mix: { type: "string" },
      log: { type: "string" },
      autocheckpoint: { type: "string" },
      "page-size": { type: "string" },
      "no-digest": { type: "boolean" },
    },
  });
  if (positionals.length !== 1) throw new Error("usage: writer.ts <db> [options]");
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a non-negative number: ${v}`);
    return n;
  };
  let durationMs: number | undefined;
  if (values.duration !== undefined) {
    const d = parseDuration(values.duration);
    if (d === null) throw new Error(`--duration: not a duration: ${values.duration}`);
    durationMs = d;
  }
  let mix: WriterOp[] | undefined;
  if (values.mix !== undefined) {
    mix = values.mix.split(",").map((s) => s.trim()).filter((s) => s) as WriterOp[];
    for (const m of mix) if (!ALL_OPS.includes(m)) throw new Error(`--mix: unknown op ${m}`);
  }
  return {
    path: positionals[0],
    opts: {
      rate: num("rate", values.rate),
      count: num("count", values.count),
      durationMs,
      seed: num("seed", values.seed),
      mix,
      log: values.log,
      autocheckpoint: num("autocheckpoint", values.autocheckpoint),
      pageSize: num("page-size", values["page-size"]),
      digest: values["no-digest"] ? false : undefined,
    },
  };
}

async function main(): Promise<number> {
  let parsed: { path: string; opts: RunOptions };
  try {
    parsed = parseWriterArgs(Deno.args);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const { path, opts } = parsed;
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  const out = (o: unknown) => Deno.stdout.writeSync(enc.encode(JSON.stringify(o) + "\n"));
  let summary: WriterSummary;
  try {
    summary = await runWriter(path, {
      ...opts,
      signal: stop.signal,
      keepRecords: false,
      onReady: (w) => out({ ready: true, seq: w.seq }),
    });
  } finally {
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
  }
  out({ done: true, seq: summary.seq, commits: summary.commits });
  return 0;
}

if (import.meta.main) Deno.exit(await main());
