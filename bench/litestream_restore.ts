/**
 * Restoring a Litestream v0.3 replica: Litestream v0.3.13's own `litestream restore` vs walrust's `restoreV3`
 * (in-process, with and without its `PRAGMA integrity_check`; Litestream runs none), on the same replica in one
 * run. The replica is made by the real binary: a database of `--mb` MB (default 50) is snapshotted, then
 * `--txns` (default 300) small transactions and one larger one go through its WAL segments.
 *
 * Usage: deno run -A bench/litestream_restore.ts [--mb 50] [--runs 3] [--txns 300]
 * Writes bench/results/litestream_restore.json and prints a table (best and median seconds, MB/s).
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { restoreV3 } from "../src/litestream/v3_restore.ts";
import { configureLogging } from "../src/observe/log.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { LITESTREAM_BIN, litestreamRestore, startLitestreamReplicate } from "../tests/support/litestream.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: {
    mb: { type: "string", default: "50" },
    runs: { type: "string", default: "3" },
    txns: { type: "string", default: "300" },
  },
});
const targetBytes = Number(values.mb) * 1024 * 1024;
const runs = Number(values.runs);
const txns = Number(values.txns);
configureLogging({ write: () => {} });

const dir = await Deno.makeTempDir({ prefix: "bench-ls3-restore-" });
try {
  const dbPath = `${dir}/big.db`;
  const replica = `${dir}/replica`;
  const db = new DatabaseSync(dbPath, { timeout: 5000 });
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, meta TEXT, n INTEGER, blob BLOB)");
  db.exec("CREATE INDEX items_name ON items(name)");
  const ins = db.prepare("INSERT INTO items(name, meta, n, blob) VALUES (?, ?, ?, ?)");
  let i = 0;
  const insert = (rows: number) => {
    db.exec("BEGIN");
    for (let k = 0; k < rows; k++, i++) {
      ins.run(
        `item-${i}-${(i * 2654435761) % 100000}`,
        JSON.stringify({ i, tags: ["a", "b", i % 7] }),
        i * 3,
        crypto.getRandomValues(new Uint8Array(64 + (i % 200))),
      );
    }
    db.exec("COMMIT");
  };
  while ((await Deno.stat(dbPath)).size < targetBytes) {
    insert(5000);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }

  const ls = await startLitestreamReplicate({ db: dbPath, replicaDir: replica, syncInterval: "200ms" });
  try {
    await ls.waitForSync(120_000);
    for (let t = 0; t < txns; t++) insert(3);
    insert(2000);
    await ls.waitForSync(120_000);
  } finally {
    await ls.stop();
    db.close();
  }

  let snapshotBytes = 0, segments = 0, walBytes = 0;
  for await (const o of new FileObjectStore(replica).list("generations/")) {
    if (o.key.endsWith(".snapshot.lz4")) snapshotBytes += o.size;
    else if (o.key.endsWith(".wal.lz4")) {
      segments++;
      walBytes += o.size;
    }
  }

  type Tool = "litestream" | "walrust" | "walrust+check";
  const results: Record<Tool, number[]> = { litestream: [], walrust: [], "walrust+check": [] };
  const rssGrowthMb: number[] = [];
  let outputBytes = 0;
  for (let r = 0; r < runs; r++) {
    for (const tool of ["litestream", "walrust", "walrust+check"] as const) {
      const out = `${dir}/out-${tool}.db`;
      for (const p of [out, `${out}.tmp-wal`, `${out}.tmp-shm`]) await Deno.remove(p).catch(() => {});
      const t0 = performance.now();
      if (tool === "litestream") {
        await litestreamRestore({ output: out, replicaDir: replica });
      } else {
        const base = Deno.memoryUsage().rss;
        let peak = base;
        const timer = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 5);
        try {
          await restoreV3(new FileObjectStore(replica), "", {
            output: out,
            integrityCheck: tool !== "walrust",
          });
        } finally {
          clearInterval(timer);
        }
        if (tool === "walrust") rssGrowthMb.push((peak - base) / 1048576);
      }
      results[tool].push((performance.now() - t0) / 1000);
    }
    // Same bytes from both tools, or the comparison is meaningless.
    const a = await Deno.readFile(`${dir}/out-litestream.db`);
    const b = await Deno.readFile(`${dir}/out-walrust.db`);
    if (a.length !== b.length || !a.every((x, k) => x === b[k])) throw new Error("restores differ");
    outputBytes = b.length;
  }

  const summary = Object.fromEntries(
    Object.entries(results).map(([k, xs]) => {
      const s = [...xs].sort((x, y) => x - y);
      return [k, {
        best: s[0],
        median: s[Math.floor(s.length / 2)],
        mbPerSec: outputBytes / 1048576 / s[0],
        runs: xs,
      }];
    }),
  ) as Record<Tool, { best: number; median: number; mbPerSec: number; runs: number[] }>;
  const version = new TextDecoder().decode(
    (await new Deno.Command(LITESTREAM_BIN, { args: ["version"], stdout: "piped" }).output()).stdout,
  ).trim();
  const report = {
    litestreamVersion: version,
    databaseBytes: outputBytes,
    replica: { snapshotBytes, walSegments: segments, walSegmentBytes: walBytes },
    summary,
    walrustVsLitestream: summary.litestream.best / summary.walrust.best,
    walrustPeakRssGrowthMb: Math.max(...rssGrowthMb),
    identicalOutput: true,
    at: new Date(),
  };
  await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
  await Deno.writeTextFile(
    `${ROOT}/bench/results/litestream_restore.json`,
    JSON.stringify(report, null, 2) + "\n",
  );
  console.log(
    `database ${(outputBytes / 1048576).toFixed(1)} MB; replica: snapshot ${
      (snapshotBytes / 1048576).toFixed(1)
    } MB, ` +
      `${segments} WAL segments (${(walBytes / 1048576).toFixed(2)} MB)`,
  );
  console.log("tool            best s   median s   MB/s");
  for (const [k, v] of Object.entries(summary)) {
    console.log(
      `${k.padEnd(15)} ${v.best.toFixed(3).padStart(6)} ${v.median.toFixed(3).padStart(10)} ${
        v.mbPerSec.toFixed(0).padStart(6)
      }`,
    );
  }
  console.log(
    `walrust (no check) = ${report.walrustVsLitestream.toFixed(2)}× Litestream's speed; ` +
      `walrust peak RSS growth ${report.walrustPeakRssGrowthMb.toFixed(0)} MB; outputs byte-identical`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
