/**
 * The high-rate ("hot") chaos workload: transactions that are a pure function of `(seed, seq)`, so the state
 * a restored database claims to be (its `writer_meta.seq`) can be rebuilt by replay and compared row by row —
 * no per-commit digest, which would cap the commit rate at a few hundred per second.
 *
 * Transaction `k` (k ≥ 1) on `hot(id INTEGER PRIMARY KEY, v INTEGER, data BLOB)`:
 * - inserts row `k` (`v = k`, a blob of {@link blobSize} bytes — every 97th is larger than a page, so it
 *   spills into overflow pages);
 * - every 4th: `v = v + k` for row `⌊k/2⌋`; every 6th: deletes row `k-5`; every 50th: deletes every row
 *   older than `k-300` (frees pages, so the file shrinks and grows);
 * - sets `writer_meta.seq = k`.
 *
 * Used by `hot_writer.ts` (the writer process) and by the chaos runner (the checker).
 *
 * @module
 */

import type { DatabaseSync } from "node:sqlite";

/** Tables of the hot workload (the same `writer_meta` as `tests/support/writer.ts`). */
export const HOT_SCHEMA =
  `CREATE TABLE IF NOT EXISTS hot (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS writer_meta (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO writer_meta (id, seq) VALUES (1, 0);`;

/** Size of row `k`'s blob: usually small; every 97th spans several pages of `pageSize`. */
export function blobSize(k: number, pageSize: number): number {
  return k % 97 === 0 ? 3 * pageSize + 123 : ((k * 131) % 300) + 1;
}

/** The deterministic bytes of row `k`'s blob for `seed` (xorshift32 stream). */
export function blobBytes(seed: number, k: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (Math.imul(seed >>> 0, 2654435761) ^ Math.imul(k, 40503) ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Commits transaction `k` of the workload on `db` (which must be at seq `k-1`). */
export function applyHotTransaction(db: DatabaseSync, seed: number, k: number, pageSize: number): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.prepare("INSERT INTO hot (id, v, data) VALUES (?, ?, ?)").run(
      k,
      k,
      blobBytes(seed, k, blobSize(k, pageSize)),
    );
    if (k % 4 === 0) db.prepare("UPDATE hot SET v = v + ? WHERE id = ?").run(k, Math.floor(k / 2));
    if (k % 6 === 0) db.prepare("DELETE FROM hot WHERE id = ?").run(k - 5);
    if (k % 50 === 0) db.prepare("DELETE FROM hot WHERE id < ?").run(k - 300);
    db.prepare("UPDATE writer_meta SET seq = ? WHERE id = 1").run(k);
    db.exec("COMMIT");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw err;
  }
}

/** The rows (`id → v`) the workload has after transaction `seq`; blob bytes follow from the id. */
export function hotModel(seq: number): Map<number, number> {
  const rows = new Map<number, number>();
  for (let k = 1; k <= seq; k++) {
    rows.set(k, k);
    if (k % 4 === 0) {
      const id = Math.floor(k / 2);
      const v = rows.get(id);
      if (v !== undefined) rows.set(id, v + k);
    }
    if (k % 6 === 0) rows.delete(k - 5);
    if (k % 50 === 0) { for (const id of [...rows.keys()]) if (id < k - 300) rows.delete(id); }
  }
  return rows;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Compares a (restored) hot database with the model at its own `writer_meta.seq`. Returns the seq and null, or
 * the seq and the first difference found.
 */
export function checkHotDatabase(
  db: DatabaseSync,
  seed: number,
  pageSize: number,
): { seq: number; problem: string | null } {
  const seq = Number((db.prepare("SELECT seq FROM writer_meta WHERE id = 1").get() as { seq: number }).seq);
  const model = hotModel(seq);
  const stmt = db.prepare("SELECT id, v, data FROM hot ORDER BY id");
  let n = 0;
  for (const row of stmt.iterate() as Iterable<{ id: number; v: number; data: Uint8Array }>) {
    n++;
    const id = Number(row.id);
    const v = model.get(id);
    if (v === undefined) return { seq, problem: `row ${id} should not exist at seq ${seq}` };
    if (Number(row.v) !== v) return { seq, problem: `row ${id} has v=${row.v}, expected ${v} at seq ${seq}` };
    if (!sameBytes(row.data, blobBytes(seed, id, blobSize(id, pageSize)))) {
      return { seq, problem: `row ${id} has different blob bytes at seq ${seq}` };
    }
  }
  if (n !== model.size) return { seq, problem: `${n} rows, expected ${model.size} at seq ${seq}` };
  return { seq, problem: null };
}
