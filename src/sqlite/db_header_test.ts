import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { DatabaseError, ExitCode } from "../errors.ts";
import { parseDbHeader, readDbHeader, readDbHeaderSync } from "./db_header.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-dbheader-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A synthetic header: magic, page size field, versions, change counter, page count. */
function header(
  o: { rawPageSize: number; w?: number; r?: number; counter?: number; pages?: number },
): Uint8Array {
  const b = new Uint8Array(100);
  b.set(new TextEncoder().encode("SQLite format 3\0"));
  const v = new DataView(b.buffer);
  v.setUint16(16, o.rawPageSize);
  b[18] = o.w ?? 1;
  b[19] = o.r ?? 1;
  v.setUint32(24, o.counter ?? 0);
  v.setUint32(28, o.pages ?? 0);
  v.setUint32(92, o.counter ?? 0);
  return b;
}

function isDbError(re: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof DatabaseError, `expected DatabaseError, got ${e}`);
    assert.equal(e.exitCode, ExitCode.DATABASE);
    assert.match(e.message, re);
    return true;
  };
}

Deno.test("db header: synthetic fields, page size 1 means 65536", () => {
  const h = parseDbHeader(header({ rawPageSize: 1, w: 2, r: 2, counter: 0x01020304, pages: 77 }), "x.db");
  assert.deepEqual(h, {
    pageSize: 65536,
    pageCount: 77,
    changeCounter: 0x01020304,
    writeVersion: 2,
    readVersion: 2,
    walMode: true,
    versionValidFor: 0x01020304,
  });
  const r = parseDbHeader(header({ rawPageSize: 512 }), "x.db");
  assert.equal(r.pageSize, 512);
  assert.equal(r.walMode, false);
  // Only one of the two versions at 2 is not WAL mode.
  assert.equal(parseDbHeader(header({ rawPageSize: 4096, w: 2, r: 1 }), "x.db").walMode, false);
});

Deno.test("db header: invalid page sizes, short input and a wrong magic are DatabaseErrors naming the file", () => {
  for (const raw of [0, 256, 1000, 4095, 32769]) {
    assert.throws(
      () => parseDbHeader(header({ rawPageSize: raw }), "bad.db"),
      isDbError(/bad\.db.*page size/),
    );
  }
  assert.throws(
    () => parseDbHeader(new Uint8Array(99), "short.db"),
    isDbError(/short\.db is not a SQLite database/),
  );
  const wrong = header({ rawPageSize: 4096 });
  wrong[14] = 0x34; // "SQLite format 4"
  assert.throws(() => parseDbHeader(wrong, "v4.db"), isDbError(/v4\.db is not a SQLite database/));
});

Deno.test("db header: real databases — WAL and rollback mode, page sizes 4096 and 65536", async () => {
  await withTempDir(async (dir) => {
    for (const [pageSize, wal] of [[4096, true], [65536, true], [4096, false], [512, false]] as const) {
      const path = `${dir}/p${pageSize}-${wal}.db`;
      const db = new DatabaseSync(path);
      db.exec(`PRAGMA page_size=${pageSize}`);
      if (wal) db.exec("PRAGMA journal_mode=WAL");
      db.exec("CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(10000));");
      if (wal) db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      db.close();
      const h = await readDbHeader(path);
      assert.equal(h.pageSize, pageSize);
      assert.equal(h.walMode, wal);
      assert.equal(h.writeVersion, wal ? 2 : 1);
      assert.equal(h.readVersion, wal ? 2 : 1);
      assert.equal(h.pageCount, (await Deno.stat(path)).size / pageSize);
      assert.equal(h.versionValidFor, h.changeCounter);
      assert.deepEqual(readDbHeaderSync(path), h);
      if (pageSize === 65536) {
        const raw = (await Deno.readFile(path)).subarray(16, 18);
        assert.deepEqual([...raw], [0, 1]); // stored as 1
      }
    }
  });
});

Deno.test("db header: files that are not databases (Litestream fixtures #13 and others)", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, Uint8Array, RegExp][] = [
      ["zeros100.db", new Uint8Array(100), /zeros100\.db is not a SQLite database/],
      ["zeros10.db", new Uint8Array(10), /zeros10\.db is not a SQLite database: it is only 10 bytes/],
      ["empty.db", new Uint8Array(0), /empty\.db is empty/],
      [
        "text.db",
        new TextEncoder().encode("hello, this is not a database\n".repeat(10)),
        /not a SQLite database/,
      ],
    ];
    for (const [name, bytes, re] of cases) {
      await Deno.writeFile(`${dir}/${name}`, bytes);
      await assert.rejects(() => readDbHeader(`${dir}/${name}`), isDbError(re));
      assert.throws(() => readDbHeaderSync(`${dir}/${name}`), isDbError(re));
    }
    await assert.rejects(() => readDbHeader(`${dir}/missing.db`), isDbError(/missing\.db does not exist/));
    assert.throws(() => readDbHeaderSync(`${dir}/missing.db`), isDbError(/missing\.db does not exist/));
    await Deno.mkdir(`${dir}/adir.db`);
    await assert.rejects(() => readDbHeader(`${dir}/adir.db`), isDbError(/adir\.db is a directory/));
  });
});
