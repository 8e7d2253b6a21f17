/**
 * Logical state of a SQLite database (used by `walrust demo` and the tests): a content digest that is equal for two databases exactly when
 * their schema and rows are equal (independent of page layout, VACUUM, checkpoints and rowids of tables without
 * an INTEGER PRIMARY KEY), an integrity check, and row counts per table.
 *
 * Tables that belong to replicators (`_walrust_*`, `_litestream_*`) and SQLite's own (`sqlite_*`) are excluded,
 * so a restored database compares equal to its source.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { createHash, type Hash } from "node:crypto";

/** Busy timeout for the test helpers' own connections (tests may run next to a writer process). */
const HELPER_BUSY_TIMEOUT_MS = 5000;

/** A `WHERE` fragment selecting the user's objects in sqlite_master (GLOB: `_` is literal, unlike LIKE). */
const USER_OBJECTS =
  `name NOT GLOB 'sqlite_*' AND name NOT GLOB '_walrust_*' AND name NOT GLOB '_litestream_*'
  AND tbl_name NOT GLOB 'sqlite_*' AND tbl_name NOT GLOB '_walrust_*' AND tbl_name NOT GLOB '_litestream_*'`;

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function openDb(path: string): DatabaseSync {
  return new DatabaseSync(path, { timeout: HELPER_BUSY_TIMEOUT_MS });
}

/** Runs `fn` on the database (opened and closed here when a path is given). */
function withDb<T>(target: string | DatabaseSync, fn: (db: DatabaseSync) => T): T {
  if (typeof target !== "string") return fn(target);
  const db = openDb(target);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Runs `fn` inside a read transaction (one consistent snapshot) unless one is already open. */
function inSnapshot<T>(db: DatabaseSync, fn: () => T): T {
  if (db.isTransaction) return fn();
  db.exec("BEGIN");
  try {
    // A deferred transaction takes its snapshot at the first read.
    db.prepare("SELECT 1 FROM sqlite_master LIMIT 1").get();
    return fn();
  } finally {
    db.exec("ROLLBACK");
  }
}

/** User tables (not views, not virtual tables, not replicator/SQLite tables), sorted by name. */
export function userTables(target: string | DatabaseSync): string[] {
  return withDb(target, (db) => listTables(db));
}

function listTables(db: DatabaseSync): string[] {
  const rows = db.prepare(
    `SELECT name FROM sqlite_master WHERE type = 'table' AND ${USER_OBJECTS}
     AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name`,
  ).all() as { name: string }[];
  return rows.map((r) => r.name);
}

const enc = new TextEncoder();

function lenPrefix(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}

function hashString(h: Hash, tag: number, s: string): void {
  const bytes = enc.encode(s);
  h.update(Uint8Array.of(tag));
  h.update(lenPrefix(bytes.length));
  h.update(bytes);
}

function hashValue(h: Hash, v: unknown): void {
  if (v === null || v === undefined) {
    h.update(Uint8Array.of(0));
  } else if (typeof v === "bigint") {
    hashString(h, 1, v.toString());
  } else if (typeof v === "number") {
    // With setReadBigInts every INTEGER is a bigint, so a number is a REAL: hash its exact bits.
    const b = new Uint8Array(9);
    b[0] = 2;
    new DataView(b.buffer).setFloat64(1, v, false);
    h.update(b);
  } else if (typeof v === "string") {
    hashString(h, 3, v);
  } else if (v instanceof Uint8Array) {
    h.update(Uint8Array.of(4));
    h.update(lenPrefix(v.length));
    h.update(v);
  } else {
    hashString(h, 5, String(v));
  }
}

interface ColumnInfo {
  name: string;
  pk: number;
}

/**
 * sha256 (hex) over the schema (sql of every user table, index, view and trigger, by type and name) and every
 * user table's rows in primary-key order (all columns when the table has no primary key, so that rowid
 * renumbering by VACUUM does not change the digest). Values are hashed with their type.
 */
export function databaseDigest(target: string | DatabaseSync): string {
  return withDb(target, (db) =>
    inSnapshot(db, () => {
      const h = createHash("sha256");
      const schema = db.prepare(
        `SELECT type, name, tbl_name, sql FROM sqlite_master WHERE ${USER_OBJECTS} ORDER BY type, name`,
      ).all() as { type: string; name: string; tbl_name: string; sql: string | null }[];
      for (const o of schema) {
        hashString(h, 10, o.type);
        hashString(h, 11, o.name);
        hashString(h, 12, o.tbl_name);
        hashString(h, 13, o.sql ?? "");
      }
      for (const table of listTables(db)) {
        const cols = db.prepare(`PRAGMA table_info(${quoteIdent(table)})`).all() as unknown as ColumnInfo[];
        const pk = cols.filter((c) => Number(c.pk) > 0).sort((a, b) => Number(a.pk) - Number(b.pk));
        const order = pk.length > 0
          ? pk.map((c) => quoteIdent(c.name)).join(", ")
          : cols.map((_, i) => String(i + 1)).join(", ");
        const list = cols.map((c) => quoteIdent(c.name)).join(", ");
        hashString(h, 20, table);
        for (const c of cols) hashString(h, 21, c.name);
        const stmt: StatementSync = db.prepare(`SELECT ${list} FROM ${quoteIdent(table)} ORDER BY ${order}`);
        stmt.setReadBigInts(true);
        let rows = 0;
        for (const row of stmt.iterate() as Iterable<Record<string, unknown>>) {
          h.update(Uint8Array.of(30));
          // Column names are unique (from table_info), so the row object holds every column in select order.
          for (const v of Object.values(row)) hashValue(h, v);
          rows++;
        }
        hashString(h, 31, String(rows));
      }
      return h.digest("hex");
    }));
}

/** `PRAGMA integrity_check`: "ok", or the reported problems one per line. Throws if the file cannot be opened. */
export function integrityCheck(target: string | DatabaseSync): string {
  return withDb(target, (db) => {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join("\n");
  });
}

/** Row count of every user table, by name. */
export function tableCounts(target: string | DatabaseSync): Record<string, number> {
  return withDb(target, (db) =>
    inSnapshot(db, () => {
      const out: Record<string, number> = {};
      for (const t of listTables(db)) {
        const row = db.prepare(`SELECT COUNT(*) AS n FROM ${quoteIdent(t)}`).get() as { n: number };
        out[t] = Number(row.n);
      }
      return out;
    }));
}
