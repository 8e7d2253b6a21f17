/**
 * Read-replica apply cost: a ~1 GB replica kept up to date by `walrust replicate`'s engine while a source
 * database changes a few rows per LTX file. Measures, per file, the whole follower poll (list, download, verify,
 * journal, write, fsyncs, state file) and compares it with the time to copy the 1 GB file with `cp` — what a
 * copy-per-file design (the Rust walrust's §4.12) pays at the very least.
 *
 * Usage: deno run -A bench/replica_apply.ts [--mb 1000] [--files 200]
 * Writes bench/results/replica_apply.json and prints a table.
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { LtxEncoder } from "../src/ltx/encoder.ts";
import { encodeLtxToBytes } from "../src/ltx/encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, lockPgno, type LtxHeader } from "../src/ltx/types.ts";
import { configureLogging } from "../src/observe/log.ts";
import { ReplicaFollower } from "../src/readreplica/follower.ts";
import { readCommittedFrames, readPage } from "../src/sqlite/wal.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { writeAll } from "../src/util/fs.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "1000" }, files: { type: "string", default: "200" } },
});
const targetBytes = Number(values.mb) * 1_000_000;
const FILES = Number(values.files);
const PS = 4096;
configureLogging({ level: "warn" });

function header(min: number, max: number, commit: number, timestamp: number): LtxHeader {
  return {
    flags: HEADER_FLAG_NO_CHECKSUM,
    pageSize: PS,
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
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const dir = await Deno.makeTempDir({ prefix: "bench-replica-apply-" });
try {
  const srcPath = `${dir}/source.db`;
  const t0 = performance.now();
  {
    // Realistic rows (text, integers, a random blob), built fast without a journal, then switched to WAL.
    const db = new DatabaseSync(srcPath);
    db.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF");
    db.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, n INTEGER, blob BLOB)");
    const batch = 100_000;
    let next = 1;
    while ((await Deno.stat(srcPath)).size < targetBytes) {
      db.exec(
        `WITH RECURSIVE c(x) AS (SELECT ${next} UNION ALL SELECT x + 1 FROM c WHERE x < ${next + batch - 1})
         INSERT INTO items(id, name, n, blob) SELECT x, printf('item-%d-%d', x, x * 2654435761 % 100000), x * 3,
         randomblob(250 + x % 200) FROM c`,
      );
      next += batch;
    }
    db.exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=NORMAL");
    db.close();
  }
  const size = (await Deno.stat(srcPath)).size;
  const commit0 = size / PS;
  console.log(
    `database: ${(size / 1e6).toFixed(0)} MB (${commit0} pages), built in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s`,
  );

  // The backup: one level-9 snapshot, streamed from the source file.
  const client = new ReplicaClient(new FileObjectStore(`${dir}/backups`), "app");
  const snapTs = Date.now();
  const snapDir = `${dir}/backups/app/ltx/9`;
  await Deno.mkdir(snapDir, { recursive: true });
  const snapPath = `${snapDir}/0000000000000001-0000000000000001.ltx`;
  {
    const out = await Deno.open(snapPath, { write: true, create: true });
    const src = await Deno.open(srcPath, { read: true });
    const enc = new LtxEncoder({ write: (c) => writeAll(out, c) }, header(1, 1, commit0, snapTs));
    const lock = lockPgno(PS);
    const buf = new Uint8Array(256 * PS);
    let pgno = 1;
    while (true) {
      const n = await src.read(buf);
      if (n === null) break;
      for (let off = 0; off + PS <= n; off += PS, pgno++) {
        if (pgno !== lock) await enc.encodePage(pgno, buf.subarray(off, off + PS));
      }
    }
    await enc.finish();
    src.close();
    await out.sync();
    out.close();
    await Deno.utime(snapPath, new Date(snapTs), new Date(snapTs));
  }

  // Bootstrap the replica (restore + integrity_check + rename).
  const replica = `${dir}/replica.db`;
  const follower = await ReplicaFollower.open(client, { path: replica, intervalMs: 1000 });
  const tb = performance.now();
  await follower.step();
  const bootstrapSeconds = (performance.now() - tb) / 1000;
  console.log(`bootstrap (restore + integrity_check): ${bootstrapSeconds.toFixed(1)} s`);

  // FILES LTX files, each from one transaction updating 3 random rows; one follower poll per file.
  const db = new DatabaseSync(srcPath);
  db.exec("PRAGMA wal_autocheckpoint=0");
  const rows = Number((db.prepare("SELECT max(id) m FROM items").get() as { m: number }).m);
  const upd = db.prepare("UPDATE items SET n = n + 1, name = name || '.' WHERE id = ?");
  const wal = `${srcPath}-wal`;
  const pollMs: number[] = [];
  const pagesPerFile: number[] = [];
  for (let t = 2; t < FILES + 2; t++) {
    db.exec("BEGIN");
    for (let k = 0; k < 3; k++) upd.run(1 + Math.floor(Math.random() * rows));
    db.exec("COMMIT");
    const r = await readCommittedFrames(wal, null);
    if (r.kind !== "ok") throw new Error("unexpected WAL state");
    const f = await Deno.open(wal, { read: true });
    const pages: [number, Uint8Array][] = [];
    for (const pgno of [...r.pages.keys()].sort((a, b) => a - b)) {
      pages.push([pgno, await readPage(f, r.pages.get(pgno)!, PS)]);
    }
    f.close();
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const ts = Date.now();
    await client.writeLtxFile(0, t, t, await encodeLtxToBytes(header(t, t, r.commit, ts), pages), {
      timestamp: ts,
    });
    pagesPerFile.push(pages.length);
    const tp = performance.now();
    const res = await follower.step();
    pollMs.push(performance.now() - tp);
    if (res.kind !== "applied" || res.files !== 1) throw new Error(`poll ${t}: ${JSON.stringify(res)}`);
  }
  db.close();
  follower.close();
  {
    const check = new DatabaseSync(replica, { readOnly: true });
    const ok = (check.prepare("PRAGMA quick_check").get() as { quick_check: string }).quick_check;
    check.close();
    if (ok !== "ok") throw new Error(`replica quick_check: ${ok}`);
  }

  // cp of the same file, three times (the page cache is warm after the first run).
  const cpSeconds: number[] = [];
  for (let i = 0; i < 3; i++) {
    const tc = performance.now();
    const o = await new Deno.Command("cp", { args: [srcPath, `${dir}/copy.db`] }).output();
    if (o.code !== 0) throw new Error("cp failed");
    cpSeconds.push((performance.now() - tc) / 1000);
    await Deno.remove(`${dir}/copy.db`);
  }

  const sorted = [...pollMs].sort((a, b) => a - b);
  const cpSorted = [...cpSeconds].sort((a, b) => a - b);
  const result = {
    databaseBytes: size,
    files: FILES,
    pagesPerFile: {
      median: percentile([...pagesPerFile].sort((a, b) => a - b), 0.5),
      max: Math.max(...pagesPerFile),
    },
    applyPerFileMs: {
      median: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95),
      max: sorted[sorted.length - 1],
      min: sorted[0],
    },
    cpSeconds: { median: percentile(cpSorted, 0.5), best: cpSorted[0], runs: cpSeconds },
    speedupVsCpMedian: (percentile(cpSorted, 0.5) * 1000) / percentile(sorted, 0.5),
    bootstrapSeconds,
    note:
      "applyPerFileMs is one whole follower poll (list, read, verify, journal, write, state file; 6 fsyncs incl. directories) " +
      "on a local file replica; cp is the lower bound of copying the database once per file.",
    machine: { cpus: navigator.hardwareConcurrency, deno: Deno.version.deno },
    date: new Date().toISOString(),
  };
  await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
  await Deno.writeTextFile(
    `${ROOT}/bench/results/replica_apply.json`,
    JSON.stringify(result, null, 2) + "\n",
  );
  const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
  console.log(
    `\n| ${size / 1e6 | 0} MB replica, ${FILES} files, ~${result.pagesPerFile.median} pages each | time |`,
  );
  console.log("|---|---|");
  console.log(`| walrust replicate, per file (median) | ${fmt(result.applyPerFileMs.median)} |`);
  console.log(`| walrust replicate, per file (p95) | ${fmt(result.applyPerFileMs.p95)} |`);
  console.log(`| cp of the whole file (median of 3) | ${fmt(result.cpSeconds.median * 1000)} |`);
  console.log(`| ratio cp / apply (median) | ${result.speedupVsCpMedian.toFixed(0)}× |`);
  console.log(`| bootstrap (restore + integrity_check) | ${bootstrapSeconds.toFixed(1)} s |`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
