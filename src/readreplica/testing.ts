/**
 * Test support for the read replica: a real SQLite "source" database that a test mutates, and the LTX files
 * a replicating process would upload for it, written straight into a replica with the encoder. Each
 * {@link LtxSource.commit} is one TXID whose L0 file holds exactly the pages that changed (page-level diff
 * of the source file before and after), so tests control gaps, compacted levels, snapshots and replaced
 * histories precisely and without `watch`.
 *
 * Not used by the product.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { encodeLtxToBytes } from "../ltx/encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../ltx/types.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";

/** Options of {@link LtxSource.create}. */
export interface LtxSourceOptions {
  /** Page size of the source database (default 4096). */
  pageSize?: number;
  /** Keep the file bytes of every TXID (needed for {@link LtxSource.writeRange}; default false). */
  keepStates?: boolean;
}

let clock = Date.UTC(2025, 0, 1);

/** Strictly increasing timestamps (ms), so rewritten files always differ in mtime. */
function nextTime(): number {
  clock = Math.max(clock + 1, Date.now());
  return clock;
}

function samePage(a: Uint8Array, b: Uint8Array): boolean {
  const x = new Int32Array(a.buffer, a.byteOffset, a.length >> 2);
  const y = new Int32Array(b.slice().buffer, 0, b.length >> 2);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** A source database and the LTX history it produces. */
export class LtxSource {
  /** The source connection (rollback-journal mode, so the file is current after every commit). */
  readonly db: DatabaseSync;
  /** Path of the source database. */
  readonly path: string;
  /** Page size. */
  readonly pageSize: number;
  /** The replica the files go to. */
  readonly client: ReplicaClient;
  /** TXID of the last commit. */
  txid = 0;
  #prev: Uint8Array = new Uint8Array(0);
  #states: Map<number, Uint8Array> | null;

  private constructor(path: string, client: ReplicaClient, pageSize: number, keep: boolean) {
    this.path = path;
    this.client = client;
    this.pageSize = pageSize;
    this.db = new DatabaseSync(path);
    // synchronous=OFF: a test fixture needs no durability, and fsyncs would dominate the tests' run time.
    this.db.exec(`PRAGMA page_size=${pageSize}; PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF`);
    this.#states = keep ? new Map([[0, new Uint8Array(0)]]) : null;
  }

  /** A new, empty source database in `dir` whose files go to `client`. */
  static create(dir: string, client: ReplicaClient, opts: LtxSourceOptions = {}): LtxSource {
    return new LtxSource(
      `${dir}/source-${crypto.randomUUID()}.db`,
      client,
      opts.pageSize ?? 4096,
      !!opts.keepStates,
    );
  }

  /** The source file's bytes after TXID `txid` (needs `keepStates`, or the current TXID). */
  state(txid: number = this.txid): Uint8Array {
    if (txid === this.txid) return this.#prev;
    const s = this.#states?.get(txid);
    if (!s) throw new Error(`state of TXID ${txid} was not kept`);
    return s;
  }

  /**
   * Runs `fn` (which commits one or more transactions on {@link db}) as TXID `txid + 1` and, unless
   * `upload` is false, writes its L0 file. Returns the file written, or null.
   */
  async commit(fn: (db: DatabaseSync) => void, opts: { upload?: boolean } = {}): Promise<LtxFileInfo | null> {
    fn(this.db);
    const before = this.#prev;
    const after = Deno.readFileSync(this.path);
    this.txid++;
    this.#prev = after;
    this.#states?.set(this.txid, after);
    if (opts.upload === false) return null;
    return await this.#write(0, this.txid, this.txid, before, after);
  }

  /** Writes a level-9 snapshot `1…txid` of the current state. */
  async snapshot(): Promise<LtxFileInfo> {
    return await this.#write(9, 1, this.txid, new Uint8Array(0), this.#prev);
  }

  /** Writes a file for TXIDs `min…max` at `level` (pages changed since `min − 1`; needs `keepStates`). */
  async writeRange(level: number, min: number, max: number): Promise<LtxFileInfo> {
    return await this.#write(
      level,
      min,
      max,
      min === 1 ? new Uint8Array(0) : this.state(min - 1),
      this.state(max),
    );
  }

  async #write(
    level: number,
    min: number,
    max: number,
    before: Uint8Array,
    after: Uint8Array,
  ): Promise<LtxFileInfo> {
    const ps = this.pageSize;
    const commit = after.length / ps;
    const lock = lockPgno(ps);
    const pages: [number, Uint8Array][] = [];
    for (let p = 1; p <= commit; p++) {
      if (p === lock) continue;
      const page = after.slice((p - 1) * ps, p * ps);
      const old = (p - 1) * ps < before.length ? before.subarray((p - 1) * ps, p * ps) : null;
      if (min === 1 || !old || !samePage(page, old)) {
        // A WAL-mode source's page 1 says 2,2; the replica must rewrite it.
        if (p === 1) page[18] = page[19] = 2;
        pages.push([p, page]);
      }
    }
    const timestamp = nextTime();
    const header: LtxHeader = {
      flags: HEADER_FLAG_NO_CHECKSUM,
      pageSize: ps,
      commit,
      minTXID: min,
      maxTXID: max,
      timestamp,
      preApplyChecksum: 0n,
      walOffset: 0,
      walSize: 0,
      walSalt1: 0,
      walSalt2: 0,
      nodeID: 0n,
    };
    const bytes = await encodeLtxToBytes(header, pages);
    return await this.client.writeLtxFile(level, min, max, bytes, { timestamp });
  }

  /** Closes the source and removes its file. */
  close(): void {
    this.db.close();
    for (const p of [this.path, `${this.path}-journal`]) {
      try {
        Deno.removeSync(p);
      } catch { /* gone */ }
    }
  }
}

/** Creates the bank/counter schema used by the reader tests: `accounts` (sum 0) and `counter` (1…n). */
export function createBankSchema(db: DatabaseSync, accounts: number): void {
  db.exec("BEGIN");
  db.exec("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note TEXT)");
  db.exec("CREATE TABLE counter(n INTEGER PRIMARY KEY, pad TEXT)");
  db.exec("CREATE INDEX accounts_balance ON accounts(balance)");
  const ins = db.prepare("INSERT INTO accounts(id, balance, note) VALUES (?, 0, ?)");
  for (let i = 1; i <= accounts; i++) ins.run(i, "x".repeat(100));
  db.exec("INSERT INTO counter(n, pad) VALUES (1, 'start')");
  db.exec("COMMIT");
}

/**
 * One transaction of the workload: move an amount between two accounts (the sum stays 0) and append the next
 * counter row (the rows stay 1…n without holes), with padding so that pages split and the file grows.
 */
export function bankTransfer(db: DatabaseSync, i: number, accounts: number): void {
  const a = 1 + ((i * 7919) % accounts);
  const b = 1 + ((i * 104729 + 13) % accounts);
  const amount = 1 + (i % 97);
  db.exec("BEGIN");
  db.prepare("UPDATE accounts SET balance = balance - ?, note = ? WHERE id = ?").run(
    amount,
    `t${i}`.repeat(20),
    a,
  );
  db.prepare("UPDATE accounts SET balance = balance + ? WHERE id = ?").run(amount, b);
  db.prepare("INSERT INTO counter(n, pad) SELECT max(n) + 1, ? FROM counter").run("p".repeat(i % 300));
  db.exec("COMMIT");
}
