// Tests of the SQLite test tooling in tests/support/ (writer.ts, sqlite_state.ts): other modules' end-to-end
// tests rely on them to tell a correct restore from a wrong one, so they must be able to see a difference.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  ALL_OPS,
  parseWriterArgs,
  readWriterLog,
  runWriter,
  spawnWriter,
  writerArgs,
} from "../../tests/support/writer.ts";
import { databaseDigest, integrityCheck, tableCounts, userTables } from "../../tests/support/sqlite_state.ts";

async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-support-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function makeDb(path: string, sql: string): void {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec(sql);
  db.close();
}

Deno.test("sqlite_state: digest ignores layout (VACUUM, insert order, rowids, replicator tables)", async () => {
  await withTempDir((dir) => {
    const base = `CREATE TABLE a (id INTEGER PRIMARY KEY, t TEXT, r REAL, b BLOB);
      CREATE TABLE nopk (x, y);
      CREATE INDEX ia ON a (t);`;
    makeDb(
      `${dir}/1.db`,
      `${base} INSERT INTO a VALUES (1, 'x', 1.5, x'00ff'), (2, NULL, NULL, NULL);
       INSERT INTO nopk VALUES (1, 'p'), (2, 'q'), (2, 'q');`,
    );
    makeDb(
      `${dir}/2.db`,
      `${base} INSERT INTO a VALUES (2, NULL, NULL, NULL); INSERT INTO a VALUES (1, 'x', 1.5, x'00ff');
       INSERT INTO nopk VALUES (9, 'z'); INSERT INTO nopk VALUES (2, 'q'), (2, 'q'), (1, 'p');
       DELETE FROM nopk WHERE x = 9;
       CREATE TABLE _walrust_seq (id INTEGER PRIMARY KEY, seq INTEGER); INSERT INTO _walrust_seq VALUES (1, 5);
       CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);`,
    );
    const d1 = databaseDigest(`${dir}/1.db`);
    assert.match(d1, /^[0-9a-f]{64}$/);
    assert.equal(databaseDigest(`${dir}/2.db`), d1);
    makeDb(`${dir}/2.db`, "VACUUM");
    assert.equal(databaseDigest(`${dir}/2.db`), d1);
    assert.deepEqual(userTables(`${dir}/2.db`), ["a", "nopk"]);
    assert.deepEqual(tableCounts(`${dir}/2.db`), { a: 2, nopk: 3 });
  });
});

Deno.test("sqlite_state: digest sees every kind of difference", async () => {
  await withTempDir((dir) => {
    const base =
      `CREATE TABLE a (id INTEGER PRIMARY KEY, v); INSERT INTO a VALUES (1, 1), (2, 'two'), (3, x'01');`;
    makeDb(`${dir}/base.db`, base);
    const d = databaseDigest(`${dir}/base.db`);
    const variants = [
      "UPDATE a SET v = 1.0 WHERE id = 1", // integer → real
      "UPDATE a SET v = '1' WHERE id = 1", // integer → text
      "UPDATE a SET v = x'74776f' WHERE id = 2", // text → blob with the same bytes
      "UPDATE a SET v = NULL WHERE id = 3",
      "DELETE FROM a WHERE id = 3",
      "INSERT INTO a VALUES (4, NULL)",
      "CREATE INDEX i ON a (v)",
      "ALTER TABLE a ADD COLUMN c INTEGER",
      "CREATE TABLE empty (x)",
      "UPDATE a SET id = 5 WHERE id = 3",
    ];
    const seen = new Set([d]);
    variants.forEach((sql, i) => {
      makeDb(`${dir}/v${i}.db`, `${base} ${sql};`);
      const v = databaseDigest(`${dir}/v${i}.db`);
      assert.ok(!seen.has(v), `digest did not change for: ${sql}`);
      seen.add(v);
    });
  });
});

Deno.test("sqlite_state: integrityCheck reports a corrupted page", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/c.db`;
    makeDb(
      path,
      `CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT); CREATE INDEX i ON t (s);
       WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000)
       INSERT INTO t SELECT x, printf('%0100d', x) FROM n;`,
    );
    assert.equal(integrityCheck(path), "ok");
    const f = await Deno.open(path, { write: true });
    await f.seek(4096 * 5 + 200, Deno.SeekMode.Start);
    await f.write(new Uint8Array(1000).fill(0x41));
    f.close();
    assert.notEqual(integrityCheck(path), "ok");
  });
});

Deno.test("writer: in-process, every op, deterministic per seed, seq and digest consistent", async () => {
  await withTempDir(async (dir) => {
    const a = await runWriter(`${dir}/a.db`, { count: 60, seed: 42, mix: ALL_OPS, log: `${dir}/a.jsonl` });
    const b = await runWriter(`${dir}/b.db`, { count: 60, seed: 42, mix: ALL_OPS });
    const c = await runWriter(`${dir}/c.db`, { count: 60, seed: 43, mix: ALL_OPS });
    assert.equal(a.commits, 60);
    assert.equal(a.seq, 60);
    assert.deepEqual(a.records.map((r) => r.seq), Array.from({ length: 61 }, (_, i) => i));
    assert.deepEqual(a.records.map((r) => r.digest), b.records.map((r) => r.digest));
    assert.notDeepEqual(a.records.map((r) => r.digest), c.records.map((r) => r.digest));
    assert.deepEqual(new Set(a.records.map((r) => r.op)), new Set(["init", ...ALL_OPS]));
    assert.deepEqual(await readWriterLog(`${dir}/a.jsonl`), a.records);
    assert.equal(databaseDigest(`${dir}/a.db`), a.records[60].digest);
    assert.equal(integrityCheck(`${dir}/a.db`), "ok");
    // Consecutive states differ (every transaction bumps writer_meta.seq).
    assert.equal(new Set(a.records.map((r) => r.digest)).size, 61);
    // Blobs are larger than a page.
    const db = new DatabaseSync(`${dir}/a.db`);
    const big = db.prepare("SELECT max(length(data)) AS m FROM blobs").get() as { m: number };
    db.close();
    assert.ok(big.m > 4096, `largest blob ${big.m}`);
    // Reopening continues the sequence.
    const more = await runWriter(`${dir}/a.db`, { count: 2, seed: 1 });
    assert.deepEqual(more.records.map((r) => r.seq), [61, 62]);
  });
});

Deno.test("writer: command line flags round-trip and bad values are refused", () => {
  const opts = {
    count: 5,
    durationMs: 1500,
    rate: 20,
    seed: 9,
    mix: ["inserts", "vacuum"] as const,
    log: "/tmp/x.jsonl",
    autocheckpoint: 0,
    pageSize: 65536,
    digest: false,
  };
  const parsed = parseWriterArgs(writerArgs("/tmp/x.db", { ...opts, mix: [...opts.mix] }));
  assert.equal(parsed.path, "/tmp/x.db");
  assert.deepEqual(parsed.opts, { ...opts, mix: [...opts.mix] });
  assert.throws(() => parseWriterArgs(["db", "--mix", "inserts,explode"]), /unknown op explode/);
  assert.throws(() => parseWriterArgs(["db", "--count", "-1"]), /--count/);
  assert.throws(() => parseWriterArgs(["db", "--duration", "soon"]), /--duration/);
  assert.throws(() => parseWriterArgs([]), /usage/);
});

Deno.test("writer: as a process — count run, then a SIGTERM stop leaves a consistent log", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/p.db`;
    const log = `${dir}/p.jsonl`;
    const w1 = spawnWriter(path, { count: 5, seed: 3, log, autocheckpoint: 0 });
    try {
      await w1.ready;
      assert.equal((await w1.status).code, 0);
    } finally {
      await w1.kill();
    }
    let records = await readWriterLog(log);
    assert.deepEqual(records.map((r) => r.seq), [0, 1, 2, 3, 4, 5]);
    assert.equal(databaseDigest(path), records[5].digest);

    const w2 = spawnWriter(path, { rate: 100, seed: 4, log, mix: ["inserts", "checkpoint"] });
    try {
      await w2.ready;
      await new Promise((r) => setTimeout(r, 150));
      assert.equal((await w2.stop()).code, 0);
    } finally {
      await w2.kill();
    }
    records = await readWriterLog(log);
    const last = records[records.length - 1];
    assert.ok(last.seq > 5, `last seq ${last.seq}`);
    assert.deepEqual(records.map((r) => r.seq), Array.from({ length: last.seq + 1 }, (_, i) => i));
    assert.equal(databaseDigest(path), last.digest);
  });
});
