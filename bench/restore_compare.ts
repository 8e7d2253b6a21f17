/**
 * Restore speed: a large database (default 256 MB) restored from a local replica by walrust, compared in the same
 * run with `cp` of the same file and with Litestream v0.3.13's restore of its own replica of the same database.
 *
 * walrust is timed twice: without and with its PRAGMA integrity_check (Litestream v0.3 checks nothing after a
 * restore, so the first is the like-for-like figure). Each restore is a fresh process: start-up included.
 * `cp` leaves its copy in the page cache; walrust and Litestream fsync theirs before they finish, so the run
 * also times `cp` followed by `sync <file>` (a durable copy), the fair floor for a durable restore.
 * Runs alternate between the tools, and each starts after `sync` (no other tool's dirty pages pending).
 *
 * Usage: deno run -A bench/restore_compare.ts [--mb 256] [--runs 11]
 * (this VM varies by ±30 % between runs of the same code: compare medians of several runs, not one best)
 * Writes bench/results/restore_compare.json and prints a table (best and median seconds, MB/s).
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const LITESTREAM = `${ROOT}/.tools/node_modules/@flydotio/litestream-linux-x64/litestream`;
const PERMS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-run", "--allow-sys"];
const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "256" }, runs: { type: "string", default: "11" } },
});
const targetBytes = Number(values.mb) * 1024 * 1024;
const runs = Number(values.runs);

async function sh(cmd: string, args: string[]): Promise<void> {
  const o = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (o.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
}

async function timeIt(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

const dir = await Deno.makeTempDir({ prefix: "bench-restore-" });
const dbPath = `${dir}/big.db`;
{
  // Realistic content: text, JSON, integers, some blobs, and an index.
  const db = new DatabaseSync(dbPath);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, meta TEXT, n INTEGER, blob BLOB)");
  db.exec("CREATE INDEX items_name ON items(name)");
  const ins = db.prepare("INSERT INTO items(name, meta, n, blob) VALUES (?, ?, ?, ?)");
  let i = 0;
  while (
    (await Deno.stat(dbPath)).size + ((await Deno.stat(`${dbPath}-wal`).catch(() => ({ size: 0 }))).size) <
      targetBytes
  ) {
    db.exec("BEGIN");
    for (let k = 0; k < 5000; k++, i++) {
      const blob = crypto.getRandomValues(new Uint8Array(64 + (i % 200)));
      ins.run(
        `item-${i}-${(i * 2654435761) % 100000}`,
        JSON.stringify({ i, tags: ["a", "b", i % 7] }),
        i * 3,
        blob,
      );
    }
    db.exec("COMMIT");
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  db.close();
}
const size = (await Deno.stat(dbPath)).size;
console.log(`database: ${(size / 1048576).toFixed(1)} MB`);

// walrust replica: one snapshot.
await sh(Deno.execPath(), [
  "run",
  "--quiet",
  "--config",
  `${ROOT}/deno.json`,
  ...PERMS,
  `${ROOT}/main.ts`,
  "snapshot",
  dbPath,
  "-b",
  `${dir}/replica`,
]);

// Litestream v0.3 replica: run replicate until a snapshot exists, then stop it.
await Deno.writeTextFile(
  `${dir}/litestream.yml`,
  `dbs:\n  - path: ${dbPath}\n    replicas:\n      - type: file\n        path: ${dir}/ls-replica\n`,
);
{
  const ls = new Deno.Command(LITESTREAM, {
    args: ["replicate", "-config", `${dir}/litestream.yml`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 120_000;
  for (;;) {
    let found = false;
    try {
      for await (const g of Deno.readDir(`${dir}/ls-replica/generations`)) {
        for await (const s of Deno.readDir(`${dir}/ls-replica/generations/${g.name}/snapshots`)) {
          if (s.name.endsWith(".snapshot.lz4")) found = true;
        }
      }
    } catch { /* not yet */ }
    if (found || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  await new Promise((r) => setTimeout(r, 2000));
  ls.kill("SIGTERM");
  await ls.status;
}

const results: Record<string, number[]> = {
  cp: [],
  "cp+sync": [],
  walrust: [],
  litestream: [],
  "walrust+check": [],
};
for (let r = 0; r < runs; r++) {
  const out = `${dir}/out.db`;
  // walrust+check: the default restore, with PRAGMA integrity_check (Litestream checks nothing).
  for (const tool of ["cp", "cp+sync", "walrust", "litestream", "walrust+check"] as const) {
    await Deno.remove(out).catch(() => {});
    await sh("sync", []);
    const secs = await timeIt(async () => {
      if (tool === "cp") await sh("cp", [dbPath, out]);
      else if (tool === "cp+sync") {
        await sh("cp", [dbPath, out]);
        await sh("sync", [out]);
      } else if (tool === "walrust" || tool === "walrust+check") {
        await sh(Deno.execPath(), [
          "run",
          "--quiet",
          "--config",
          `${ROOT}/deno.json`,
          ...PERMS,
          `${ROOT}/main.ts`,
          "restore",
          "big",
          "-o",
          out,
          "-b",
          `${dir}/replica`,
          ...(tool === "walrust" ? ["--no-integrity-check"] : []),
        ]);
      } else await sh(LITESTREAM, ["restore", "-config", `${dir}/litestream.yml`, "-o", out, dbPath]);
    });
    results[tool].push(secs);
  }
}
const summary = Object.fromEntries(
  Object.entries(results).map(([k, xs]) => {
    const s = [...xs].sort((a, b) => a - b);
    return [k, {
      best: s[0],
      median: s[Math.floor(s.length / 2)],
      mbPerSec: size / 1048576 / s[0],
      runs: xs,
    }];
  }),
);
const report = {
  databaseBytes: size,
  summary,
  walrustVsCp: summary.cp.best / summary.walrust.best,
  walrustVsDurableCp: summary["cp+sync"].best / summary.walrust.best,
  walrustVsLitestreamMedian: summary.litestream.median / summary.walrust.median,
  walrustVsLitestream: summary.litestream.best / summary.walrust.best,
  at: new Date(),
};
await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
await Deno.writeTextFile(`${ROOT}/bench/results/restore_compare.json`, JSON.stringify(report, null, 2));
console.log("tool           best s   median s   MB/s");
for (const [k, v] of Object.entries(summary)) {
  console.log(
    `${k.padEnd(14)} ${v.best.toFixed(3).padStart(6)} ${v.median.toFixed(3).padStart(10)} ${
      v.mbPerSec.toFixed(0).padStart(6)
    }`,
  );
}
console.log(
  `walrust speed (best) = ${report.walrustVsCp.toFixed(2)}× cp, ${
    report.walrustVsDurableCp.toFixed(2)
  }× cp+sync, ${report.walrustVsLitestream.toFixed(2)}× Litestream (median: ${
    report.walrustVsLitestreamMedian.toFixed(2)
  }×)`,
);
await Deno.remove(dir, { recursive: true });
