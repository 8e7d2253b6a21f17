/**
 * Test support for restore, list and verify: a real SQLite database's history (the exact file bytes after
 * each transaction) and LTX files built from it with the encoder, written into a replica at any level. Tests
 * build exact scenarios this way — gaps, overlaps, compacted levels, corrupt objects — without `watch`.
 *
 * Not used by the product.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { encodeLtxToBytes, type PageEncoding } from "../ltx/encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../ltx/types.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";

/** A database history: `states[t]` is the database file after TXID t (`states[0]` is empty). */
export interface DbHistory {
  /** Page size of the database. */
  pageSize: number;
  /** File bytes after each TXID (index 0 = before the first). */
  states: Uint8Array[];
  /** Header timestamp (ms) of each TXID: when its sync happened. */
  times: number[];
}

/**
 * Runs each step as one "sync" (TXID 1, 2, …) on a fresh WAL-mode database in `dir`, checkpointing after
 * each so the file itself holds the state; `startMs` is TXID 1's timestamp, then one second per TXID.
 */
export function buildHistory(
  dir: string,
  steps: ((db: DatabaseSync) => void)[],
  opts: { pageSize?: number; startMs?: number } = {},
): DbHistory {
  const path = `${dir}/history-${crypto.randomUUID()}.db`;
  const db = new DatabaseSync(path);
  const pageSize = opts.pageSize ?? 4096;
  const start = opts.startMs ?? Date.UTC(2025, 0, 1, 12, 0, 0);
  try {
    db.exec(`PRAGMA page_size=${pageSize}`);
    db.exec("PRAGMA journal_mode=WAL");
    const states: Uint8Array[] = [new Uint8Array(0)];
    const times: number[] = [0];
    steps.forEach((step, i) => {
      step(db);
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      states.push(Deno.readFileSync(path));
      times.push(start + i * 1000);
    });
    return { pageSize, states, times };
  } finally {
    db.close();
    for (const p of [path, `${path}-wal`, `${path}-shm`]) {
      try {
        Deno.removeSync(p);
      } catch { /* gone */ }
    }
  }
}

/** A convenient history: a table filled over `n` TXIDs with rows of varying size (some grow the file). */
export function sampleHistory(
  dir: string,
  n: number,
  opts: { pageSize?: number; startMs?: number } = {},
): DbHistory {
  const steps: ((db: DatabaseSync) => void)[] = [
    (db) => db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB); CREATE INDEX t_v ON t(v)"),
  ];
  for (let i = 1; i < n; i++) {
    steps.push((db) => {
      const ins = db.prepare("INSERT INTO t(v, b) VALUES (?, ?)");
      db.exec("BEGIN");
      for (let k = 0; k < 1 + (i % 4) * 3; k++) {
        ins.run(`row-${i}-${k}`, new Uint8Array(200 + ((i * 37 + k) % 900)).fill(i));
      }
      if (i % 5 === 0) db.exec(`DELETE FROM t WHERE id % 7 = ${i % 7}`);
      db.exec("COMMIT");
    });
  }
  return buildHistory(dir, steps, opts);
}

function pageOf(state: Uint8Array, pageSize: number, pgno: number): Uint8Array {
  return state.subarray((pgno - 1) * pageSize, pgno * pageSize);
}

function samePage(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The LTX file for TXIDs `min…max` of `h`: every page when `min` is 1, else the pages that changed since
 * TXID `min-1` (plus pages past its size). Timestamp = TXID `max`'s time unless given.
 */
export async function ltxFor(
  h: DbHistory,
  min: number,
  max: number,
  opts: { timestamp?: number; pageEncoding?: PageEncoding } = {},
): Promise<Uint8Array> {
  const ps = h.pageSize;
  const after = h.states[max];
  const before = h.states[min - 1];
  const commit = after.length / ps;
  const prevCommit = before.length / ps;
  const lock = lockPgno(ps);
  const pages: [number, Uint8Array][] = [];
  for (let p = 1; p <= commit; p++) {
    if (p === lock) continue;
    const page = pageOf(after, ps, p);
    if (min === 1 || p > prevCommit || !samePage(page, pageOf(before, ps, p))) pages.push([p, page]);
  }
  const header: LtxHeader = {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize: ps,
    commit,
    minTXID: min,
    maxTXID: max,
    timestamp: opts.timestamp ?? h.times[max],
    preApplyChecksum: 0n,
    walOffset: 0,
    walSize: 0,
    walSalt1: 0,
    walSalt2: 0,
    nodeID: 0n,
  };
  return await encodeLtxToBytes(header, pages, { pageEncoding: opts.pageEncoding });
}

/** Writes the LTX file for `min…max` at `level`; created-at = its timestamp (default TXID `max`'s time). */
export async function putLtx(
  client: ReplicaClient,
  h: DbHistory,
  level: number,
  min: number,
  max: number,
  opts: { timestamp?: number; pageEncoding?: PageEncoding } = {},
): Promise<LtxFileInfo> {
  const ts = opts.timestamp ?? h.times[max];
  const bytes = await ltxFor(h, min, max, { ...opts, timestamp: ts });
  return await client.writeLtxFile(level, min, max, bytes, { timestamp: ts });
}

/** Writes L0 files `from…to` (one per TXID), as a replicating process would. */
export async function putL0Range(
  client: ReplicaClient,
  h: DbHistory,
  from: number,
  to: number,
): Promise<void> {
  for (let t = from; t <= to; t++) await putLtx(client, h, 0, t, t);
}

/** Flips one bit of a file (for corruption tests). */
export async function flipByte(path: string, offset: number): Promise<void> {
  const b = await Deno.readFile(path);
  const at = offset < 0 ? b.length + offset : offset;
  b[at] ^= 0x40;
  await Deno.writeFile(path, b);
}
