import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import fc from "fast-check";
import { CorruptionError } from "../errors.ts";
import { applyWal, parseWalHeader, type WalApplyResult, walChecksum } from "./wal_apply.ts";

type Op =
  | { kind: "insert"; size: number }
  | { kind: "update"; id: number; size: number }
  | { kind: "delete"; id: number }
  | { kind: "vacuum" };

/** A database checkpointed into `base`, then transactions in its WAL (`wal`), read while still open. */
function makeWal(
  dir: string,
  pageSize: number,
  txns: Op[][],
): { base: Uint8Array; wal: Uint8Array; txFrames: number[] } {
  const path = `${dir}/src-${crypto.randomUUID()}.db`;
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA page_size=${pageSize}; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0`);
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    const ins = db.prepare("INSERT INTO t(v) VALUES (?)");
    for (let i = 0; i < 20; i++) ins.run(new Uint8Array(100 + i * 37).fill(i));
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const base = Deno.readFileSync(path);
    const txFrames: number[] = [];
    let seed = 1;
    const frameSize = 24 + pageSize;
    const walFrames = () => {
      try {
        return Math.max(0, (Deno.statSync(`${path}-wal`).size - 32) / frameSize);
      } catch {
        return 0;
      }
    };
    for (const tx of txns) {
      const before = walFrames();
      if (tx.length === 1 && tx[0].kind === "vacuum") db.exec("VACUUM");
      else {
        db.exec("BEGIN");
        for (const op of tx) {
          if (op.kind === "insert") ins.run(new Uint8Array(op.size).fill(seed++ & 0xff));
          else if (op.kind === "update") {
            db.prepare("UPDATE t SET v = ? WHERE id = ?").run(
              new Uint8Array(op.size).fill(seed++ & 0xff),
              op.id,
            );
          } else if (op.kind === "delete") db.prepare("DELETE FROM t WHERE id = ?").run(op.id);
        }
        db.exec("COMMIT");
      }
      txFrames.push(walFrames() - before);
    }
    let wal = new Uint8Array(0);
    try {
      wal = Deno.readFileSync(`${path}-wal`);
    } catch { /* no WAL: nothing was written */ }
    return { base, wal, txFrames };
  } finally {
    db.close();
  }
}

/** What SQLite itself makes of base + WAL: `-wal` beside it, then a TRUNCATE checkpoint. */
function sqliteApply(dir: string, base: Uint8Array, wal: Uint8Array): Uint8Array {
  const path = `${dir}/ref-${crypto.randomUUID()}.db`;
  Deno.writeFileSync(path, base);
  if (wal.length) Deno.writeFileSync(`${path}-wal`, wal);
  const db = new DatabaseSync(path);
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
  return Deno.readFileSync(path);
}

async function ourApply(
  dir: string,
  base: Uint8Array,
  wal: Uint8Array | AsyncIterable<Uint8Array>,
  pageSize: number,
  maxTxnBytes?: number,
): Promise<{ bytes: Uint8Array; result: WalApplyResult }> {
  const path = `${dir}/ours-${crypto.randomUUID()}.db`;
  Deno.writeFileSync(path, base);
  const f = await Deno.open(path, { read: true, write: true });
  try {
    const result = await applyWal(f, wal, {
      name: "test WAL",
      pageSize,
      spoolPath: `${path}.txn`,
      maxTxnBytes,
    });
    return { bytes: Deno.readFileSync(path), result };
  } finally {
    f.close();
  }
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.integer({ min: 0, max: 6000 }).map((size) => ({ kind: "insert" as const, size })),
  },
  {
    weight: 3,
    arbitrary: fc.record({ id: fc.integer({ min: 1, max: 40 }), size: fc.integer({ min: 0, max: 9000 }) })
      .map((
        r,
      ) => ({ kind: "update" as const, ...r })),
  },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 40 }).map((id) => ({ kind: "delete" as const, id })) },
);
const txArb: fc.Arbitrary<Op[]> = fc.oneof(
  { weight: 8, arbitrary: fc.array(opArb, { minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constant<Op[]>([{ kind: "vacuum" }]) },
);

Deno.test("wal apply: equals SQLite's own checkpoint for random transactions, page sizes and chunkings", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(512, 1024, 4096),
        fc.array(txArb, { minLength: 0, maxLength: 8 }),
        fc.integer({ min: 1, max: 9000 }),
        fc.boolean(),
        async (pageSize, txns, chunk, spill) => {
          const { base, wal } = makeWal(dir, pageSize, txns);
          if (wal.length === 0) return;
          const want = sqliteApply(dir, base, wal);
          async function* chunks() {
            for (let i = 0; i < wal.length; i += chunk) yield wal.subarray(i, i + chunk);
          }
          const { bytes, result } = await ourApply(
            dir,
            base,
            chunks(),
            pageSize,
            spill ? pageSize : undefined,
          );
          assert.deepEqual(bytes, want);
          assert.equal(result.walBytes, wal.length);
          assert.equal(result.ignoredFrames, 0);
        },
      ),
      { numRuns: 25 },
    );
    // Spilled transactions must not leave spool files behind.
    for await (const e of Deno.readDir(dir)) assert.ok(!e.name.endsWith(".txn"), e.name);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wal apply: VACUUM shrinks the database: the file is truncated to the last commit's size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { base, wal } = makeWal(dir, 4096, [
      [{ kind: "insert", size: 60_000 }],
      [{ kind: "delete", id: 21 }],
      [{ kind: "vacuum" }],
    ]);
    const want = sqliteApply(dir, base, wal);
    const { bytes, result } = await ourApply(dir, base, wal, 4096);
    assert.deepEqual(bytes, want);
    assert.equal(result.dbPages! * 4096, bytes.length);
    assert.ok(bytes.length < base.length + 60_000, "the blob's pages are gone");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wal apply: an uncommitted tail and a partial frame are ignored, as SQLite ignores them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ps = 1024;
    const { base, wal, txFrames } = makeWal(dir, ps, [
      [{ kind: "insert", size: 300 }],
      [{ kind: "insert", size: 5000 }, { kind: "update", id: 3, size: 2000 }],
    ]);
    const last = txFrames[txFrames.length - 1];
    assert.ok(last >= 2, "the last transaction spans several frames");
    const cut = wal.subarray(0, wal.length - (24 + ps)); // drop only its commit frame
    const want = sqliteApply(dir, base, cut);
    const { bytes, result } = await ourApply(dir, base, cut, ps);
    assert.deepEqual(bytes, want);
    assert.equal(result.ignoredFrames, last - 1);
    assert.equal(result.commits, 1);
    const partial = wal.subarray(0, wal.length - 100);
    const r2 = await ourApply(dir, base, partial, ps);
    assert.deepEqual(r2.bytes, sqliteApply(dir, base, partial));
    assert.equal(r2.result.ignoredBytes, 24 + ps - 100);
    // A header-only WAL changes nothing.
    const r3 = await ourApply(dir, base, wal.subarray(0, 32), ps);
    assert.deepEqual(r3.bytes, base);
    assert.equal(r3.result.dbPages, null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Re-encodes a little-endian WAL with big-endian checksum words (magic 0x377f0683). */
function toBigEndianWal(wal: Uint8Array, ps: number): Uint8Array {
  const out = wal.slice();
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0x377f0683);
  let [s0, s1] = walChecksum(true, 0, 0, out, 0, 24);
  dv.setUint32(24, s0);
  dv.setUint32(28, s1);
  for (let off = 32; off + 24 + ps <= out.length; off += 24 + ps) {
    [s0, s1] = walChecksum(true, s0, s1, out, off, off + 8);
    [s0, s1] = walChecksum(true, s0, s1, out, off + 24, off + 24 + ps);
    dv.setUint32(off + 16, s0);
    dv.setUint32(off + 20, s1);
  }
  return out;
}

Deno.test("wal apply: big-endian checksum WALs (magic 0x377f0683) apply like SQLite applies them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ps = 512;
    const { base, wal } = makeWal(dir, ps, [[{ kind: "insert", size: 3000 }], [{ kind: "delete", id: 2 }]]);
    const be = toBigEndianWal(wal, ps);
    const want = sqliteApply(dir, base, be);
    assert.notDeepEqual(want, base, "SQLite accepted the big-endian WAL");
    assert.deepEqual((await ourApply(dir, base, be, ps)).bytes, want);
    assert.equal(parseWalHeader(be, (m) => assert.fail(m)).bigEndian, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function applyError(
  dir: string,
  base: Uint8Array,
  wal: Uint8Array,
  ps: number,
): Promise<CorruptionError> {
  try {
    await ourApply(dir, base, wal, ps);
  } catch (err) {
    assert.ok(err instanceof CorruptionError, `expected CorruptionError, got ${err}`);
    return err;
  }
  assert.fail("applying succeeded");
}

Deno.test("wal apply: corruption anywhere before the end is a CorruptionError with the WAL offset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ps = 1024, fs = 24 + ps;
    const { base, wal } = makeWal(dir, ps, [[{ kind: "insert", size: 3000 }], [{
      kind: "insert",
      size: 10,
    }]]);
    const page = wal.slice();
    page[32 + fs + 24 + 500] ^= 1; // page data of frame 1
    const e1 = await applyError(dir, base, page, ps);
    assert.match(e1.message, /frame at WAL byte 1080 fails its checksum/);
    assert.equal(e1.offset, 32 + fs + 16);
    const salt = wal.slice();
    salt[32 + 2 * fs + 9] ^= 1;
    assert.match((await applyError(dir, base, salt, ps)).message, /salts/);
    const hdr = wal.slice();
    hdr[20] ^= 1;
    assert.match((await applyError(dir, base, hdr, ps)).message, /header checksum/);
    const magic = wal.slice();
    magic[3] = 0x99;
    assert.match((await applyError(dir, base, magic, ps)).message, /bad WAL magic/);
    assert.match((await applyError(dir, base, wal, 4096)).message, /page size 1024 differs/);
    assert.match((await applyError(dir, base, wal.subarray(0, 20), ps)).message, /header truncated/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
