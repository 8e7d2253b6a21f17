/**
 * Side-by-side replication benchmark: walrust `watch` vs Litestream v0.3.13 `replicate`, same workload, same run.
 *
 * For each tool: create N WAL databases, start the replicator (file replica), write R tx/s to each database for
 * D seconds from a separate process, sample the replicator's RSS and CPU from /proc every 500 ms, sample replication
 * lag about every second (restore one database, lag = restore start − newest restored row's commit time), then
 * stop the writer, let the replicator catch up, stop it, restore every database and count missing rows. The
 * pause between lag samples is random (0.5–1.5 s) so samples fall at every phase of the sync cycles.
 *
 * Fairness:
 * - walrust runs through the `walrust` launcher (as users run it from source: same V8 flags as `deno task
 *   compile`); `exec` keeps the pid, so /proc samples are the replicator's own process, not its children.
 * - RSS and CPU are the replicator process only (utime + stime of that pid, from 2 s after start to the end of
 *   the catch-up); the lag sampler's restores run elsewhere and are not counted.
 * - walrust's restores for the lag sampler run in this process (`restoreDatabase`): a `deno run` per sample
 *   would start listing the replica ~0.3–1 s after `t0` (Deno start-up), while the Litestream binary lists
 *   within milliseconds, which made walrust's lag look smaller than it was. The final check of missing rows
 *   restores in-process too.
 * - Peak RSS is the largest 500 ms sample and also VmHWM (the kernel's high-water mark) at the end.
 *
 * Usage: deno run -A bench/replication_compare.ts [--dbs 1] [--rate 50] [--duration 30] [--tools walrust,litestream]
 *   [--repeat N] (the tools take turns N times; the table ends with each figure's median over the rounds)
 * Writes bench/results/replication_<dbs>x<rate>.json and prints a table.
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { restoreDatabase } from "../src/restore/restore.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const LITESTREAM = `${ROOT}/.tools/node_modules/@flydotio/litestream-linux-x64/litestream`;
const LAUNCHER = `${ROOT}/walrust`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    dbs: { type: "string", default: "1" },
    rate: { type: "string", default: "50" },
    duration: { type: "string", default: "30" },
    tools: { type: "string", default: "walrust,litestream" },
    repeat: { type: "string", default: "1" },
    out: { type: "string" },
  },
});
const N = Number(values.dbs);
const R = Number(values.rate);
const D = Number(values.duration);
const tools = values.tools!.split(",") as ("walrust" | "litestream")[];

interface ToolResult {
  tool: string;
  peakRssMB: number;
  hwmRssMB: number;
  meanRssMB: number;
  cpuSeconds: number;
  lagSamples: number;
  lagP50: number;
  lagP95: number;
  lagP99: number;
  lagMax: number;
  rowsWritten: number;
  rowsMissing: number;
  restoreFailures: number;
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function procStats(pid: number): { rssKB: number; hwmKB: number; cpuTicks: number } | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 (1-based) of /proc/pid/stat; index 11 and 12 after the comm field.
    return { rssKB: rss, hwmKB: hwm, cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

async function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  return { code: o.code, stderr: new TextDecoder().decode(o.stderr) };
}

function createDb(path: string) {
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, payload TEXT NOT NULL)");
  db.close();
}

async function restoreOne(tool: string, dir: string, i: number, out: string): Promise<boolean> {
  // Reading the previous sample's copy (a WAL-mode database) left its -wal and -shm beside it.
  for (const suffix of ["", "-wal", "-shm"]) await Deno.remove(out + suffix).catch(() => {});
  if (tool === "walrust") {
    const store = new FileObjectStore(`${dir}/replica`);
    try {
      await restoreDatabase(new ReplicaClient(store, `db${i}`), { output: out, integrityCheck: false });
      return true;
    } catch (err) {
      console.error(`walrust restore of db${i}: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    } finally {
      store.close();
    }
  }
  const r = await run(LITESTREAM, [
    "restore",
    "-config",
    `${dir}/litestream.yml`,
    "-o",
    out,
    `${dir}/db${i}.db`,
  ]);
  return r.code === 0;
}

function readRows(path: string): { count: number; maxTs: number } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const row = db.prepare("SELECT count(*) AS c, coalesce(max(ts), 0) AS m FROM t").get() as {
      c: number;
      m: number;
    };
    return { count: row.c, maxTs: row.m };
  } finally {
    db.close();
  }
}

async function benchTool(tool: "walrust" | "litestream"): Promise<ToolResult> {
  const dir = await Deno.makeTempDir({ prefix: `bench-${tool}-` });
  const paths = Array.from({ length: N }, (_, i) => `${dir}/db${i}.db`);
  for (const p of paths) createDb(p);
  let proc: Deno.ChildProcess;
  if (tool === "walrust") {
    proc = new Deno.Command(LAUNCHER, {
      args: ["watch", ...paths, "-b", `${dir}/replica`, "--no-metrics"],
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } else {
    const yml = "dbs:\n" +
      paths.map((p, i) =>
        `  - path: ${p}\n    replicas:\n      - type: file\n        path: ${dir}/ls-replica/db${i}\n        sync-interval: 1s\n`
      ).join("");
    await Deno.writeTextFile(`${dir}/litestream.yml`, yml);
    proc = new Deno.Command(LITESTREAM, {
      args: ["replicate", "-config", `${dir}/litestream.yml`],
      stdout: "null",
      stderr: "piped",
    }).spawn();
  }
  const stderrChunks: string[] = [];
  (async () => {
    for await (const c of proc.stderr.pipeThrough(new TextDecoderStream())) stderrChunks.push(c);
  })();
  if (tool === "walrust") {
    // The launcher's setup step and Deno's start-up come before `exec`: wait until walrust says it is
    // watching, so neither is counted (the pid is the same before and after exec).
    const deadline = Date.now() + 60_000;
    while (!stderrChunks.join("").includes("watching") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await new Promise((r) => setTimeout(r, 2000)); // start-up and initial snapshots
  const base = procStats(proc.pid);
  const writer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}/bench/support/load_writer.ts`,
      "--rate",
      String(R),
      "--duration",
      String(D),
      "--out",
      `${dir}/counts.json`,
      ...paths,
    ],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const rss: number[] = [];
  let writerDone = false;
  const writerStatus = writer.status.then((s) => {
    writerDone = true;
    return s;
  });
  const lags: number[] = [];
  const sampler = setInterval(() => {
    const s = procStats(proc.pid);
    if (s) rss.push(s.rssKB / 1024);
  }, 500);
  let next = 0;
  let restoreFailures = 0;
  await new Promise((r) => setTimeout(r, 3000));
  while (!writerDone) {
    const i = next++ % N;
    const t0 = Date.now();
    const out = `${dir}/lag-${i}.db`;
    if (await restoreOne(tool, dir, i, out)) {
      const { maxTs } = readRows(out);
      if (maxTs > 0 && !writerDone) lags.push((t0 - maxTs) / 1000);
    } else restoreFailures++;
    // A random pause: a fixed one (about the 1 s sync interval) kept every sample at the same phase of the
    // replicator's sync cycle, which biased the lag by up to a whole interval either way.
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
  }
  await writerStatus;
  await new Promise((r) => setTimeout(r, 3000)); // let the replicator ship the tail
  clearInterval(sampler);
  const end = procStats(proc.pid);
  proc.kill("SIGTERM");
  await proc.status;
  const counts = JSON.parse(await Deno.readTextFile(`${dir}/counts.json`)) as Record<string, number>;
  let written = 0;
  let missing = 0;
  for (let i = 0; i < N; i++) {
    const want = counts[paths[i]];
    written += want;
    const out = `${dir}/final-${i}.db`;
    if (!(await restoreOne(tool, dir, i, out))) {
      restoreFailures++;
      missing += want;
      continue;
    }
    missing += Math.max(0, want - readRows(out).count);
  }
  const ticks = 100; // USER_HZ
  const result: ToolResult = {
    tool,
    peakRssMB: Math.max(...rss),
    hwmRssMB: end ? end.hwmKB / 1024 : NaN,
    meanRssMB: rss.reduce((a, b) => a + b, 0) / rss.length,
    cpuSeconds: base && end ? (end.cpuTicks - base.cpuTicks) / ticks : NaN,
    lagSamples: lags.length,
    lagP50: percentile(lags, 50),
    lagP95: percentile(lags, 95),
    lagP99: percentile(lags, 99),
    lagMax: Math.max(...lags),
    rowsWritten: written,
    rowsMissing: missing,
    restoreFailures,
  };
  if (restoreFailures > 0) console.error(`${tool} stderr tail:\n${stderrChunks.join("").slice(-2000)}`);
  await Deno.remove(dir, { recursive: true });
  return result;
}

// With --repeat, the tools take turns N times and each figure is the median over the rounds: CPU is read in
// 10 ms ticks and a 1-database run uses ~0.1 s, so one round can be off by 10–20 %.
const rounds: ToolResult[][] = [];
const loadBefore = loadAverage();
for (let i = 0; i < Math.max(1, Number(values.repeat)); i++) {
  const round: ToolResult[] = [];
  for (const t of tools) round.push(await benchTool(t));
  rounds.push(round);
}
const loadAfter = loadAverage();
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const results: ToolResult[] = tools.map((tool) => {
  const runs = rounds.map((round) => round.find((r) => r.tool === tool)!);
  const keys = Object.keys(runs[0]).filter((k) => k !== "tool") as (keyof Omit<ToolResult, "tool">)[];
  return {
    tool,
    ...Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k]))])),
  } as ToolResult;
});
const w = results.find((r) => r.tool === "walrust");
const l = results.find((r) => r.tool === "litestream");
const ratios = w && l
  ? { rss: w.peakRssMB / l.peakRssMB, cpu: w.cpuSeconds / l.cpuSeconds, lagP99: w.lagP99 / l.lagP99 }
  : null;
const report = {
  workload: { dbs: N, txPerSecondPerDb: R, durationSeconds: D },
  // The machine is shared: the 1-minute load average before and after, to judge how noisy the run was.
  loadAverage: { before: loadBefore, after: loadAfter },
  results,
  rounds,
  ratios,
  at: new Date(),
};
await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
const out = values.out ?? `${ROOT}/bench/results/replication_${N}x${R}.json`;
await Deno.writeTextFile(out, JSON.stringify(report, null, 2));
console.log(`workload: ${N} db × ${R} tx/s × ${D} s (load average ${loadBefore} → ${loadAfter})`);
console.log(
  "tool           peakRSS MB  HWM MB  meanRSS MB  CPU s   lag p50  p95    p99    max    written  missing",
);
const rows = rounds.length > 1
  ? [
    ...rounds.flatMap((round, i) => round.map((r) => ({ ...r, tool: `${r.tool}#${i + 1}` }))),
    ...results.map((r) => ({ ...r, tool: `${r.tool} med` })),
  ]
  : results;
for (const r of rows) {
  console.log(
    `${r.tool.padEnd(14)} ${r.peakRssMB.toFixed(1).padStart(10)} ${r.hwmRssMB.toFixed(1).padStart(7)} ${
      r.meanRssMB.toFixed(1).padStart(11)
    } ${r.cpuSeconds.toFixed(2).padStart(6)} ${r.lagP50.toFixed(2).padStart(7)} ${
      r.lagP95.toFixed(2).padStart(6)
    } ${r.lagP99.toFixed(2).padStart(6)} ${r.lagMax.toFixed(2).padStart(6)} ${
      String(r.rowsWritten).padStart(8)
    } ${String(r.rowsMissing).padStart(8)}`,
  );
}
if (ratios) {
  console.log(
    `walrust/litestream: RSS ${ratios.rss.toFixed(2)}×  CPU ${ratios.cpu.toFixed(2)}×  lag p99 ${
      ratios.lagP99.toFixed(2)
    }×`,
  );
}
console.log(`wrote ${out}`);
