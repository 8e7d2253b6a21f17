/**
 * The chaos runner: seeded rounds of a random workload against real databases, `walrust watch` (a
 * subprocess, killed with SIGKILL and restarted at random points) replicating to a real s3rver through the
 * fault-injecting proxy — or to a local directory — and, after each round, the oracle (`oracle.ts`) checking
 * every restore against what the writers committed.
 *
 * One round:
 * 1. **setup** — 1–3 databases: a "mixed" one written by `tests/support/writer.ts` (inserts, updates,
 *    deletes, blobs larger than a page, schema changes, VACUUM, application PASSIVE/TRUNCATE checkpoints;
 *    a digest per commit) and/or "hot" ones written by `hot_writer.ts` (thousands of commits/s in bursts
 *    and idle gaps, default autocheckpoint, replayable states). A random fault plan goes to the proxy.
 * 2. **workload** — writers and watch run for the round's duration; watch is killed (-9) and restarted at
 *    random moments; every ~250 ms the runner lists the replica directly (not through the proxy) and notes
 *    the newest contiguous TXID it saw and when (what the replica had *acknowledged*).
 * 3. **drain** — writers stop (SIGTERM, so the log is complete), faults are cleared, watch (restarted if it
 *    was dead) gets SIGTERM and must exit 0: every committed frame shipped.
 * 4. **verify** — `walrust verify` (subprocess) must exit 0: every object decodes, the TXID chain has no gap.
 * 5. **restore** — latest (`walrust restore` subprocess) must equal the writer's last state; restores by TXID
 *    and as of random times (in-process CLI) must be committed states, monotone, and no older than what was
 *    acknowledged before the time. Every restore must pass `PRAGMA integrity_check`.
 *
 * A failure names the round, its seed and step, and the command that re-runs just that round.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { runInProcess, runProcess, spawnProcess } from "../../tests/support/cli.ts";
import { type FaultKind, type FaultProxy, startFaultProxy } from "../../tests/support/fault_proxy.ts";
import { type S3rver, startS3rver } from "../../tests/support/s3rver.ts";
import { databaseDigest, integrityCheck } from "../../tests/support/sqlite_state.ts";
import { ALL_OPS, readWriterLog, spawnWriter, type WriterProcess } from "../../tests/support/writer.ts";
import { configureLogging } from "../observe/log.ts";
import { FileObjectStore } from "../storage/file.ts";
import type { ObjectStore } from "../storage/object_store.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { S3ObjectStore } from "../storage/s3.ts";
import { ChaosRng, describeFaultPlan, randomFaultPlan, roundSeed } from "./faults.ts";
import {
  ackedBefore,
  type AckObservation,
  checkLatest,
  checkTimestampRestore,
  checkTxidRestores,
  contiguousTxid,
  type LoggedState,
  type ObservedState,
  type TimestampRestore,
  type TxidRestore,
  type Violation,
  WriterHistory,
} from "./oracle.ts";
import { checkHotDatabase } from "./workload.ts";

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Seed of the whole run (printed; the same seed replays the same rounds). */
  seed: number;
  /** Rounds to run. */
  rounds: number;
  /** `quick`: 2–4 s rounds, no stalls (CI); `long`: 3–10 s rounds, stalls past the client timeout too. */
  mode: "quick" | "long";
  /** Run only this round (0-based) of the seed's sequence. */
  only?: number;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Keep the directory of a failed round (default false: everything is removed). */
  keepFailed?: boolean;
  /** Stop at the first failed round (default false). */
  failFast?: boolean;
  /** Stop starting new rounds after this many ms (the summary says how many ran). */
  timeBudgetMs?: number;
  /** Negative control (tests): after the drain, delete the newer half of the first database's files. */
  sabotage?: boolean;
}

/** The outcome of one round. */
export interface RoundResult {
  /** Round number (0-based). */
  round: number;
  /** The round's own seed. */
  seed: number;
  /** Replica backend. */
  backend: "s3" | "file";
  /** Databases and their workload kind. */
  databases: { name: string; kind: "mixed" | "hot" }[];
  /** Transactions committed by all writers. */
  commits: number;
  /** Peak commit rate of the round across its databases (commits/s over the workload phase). */
  commitRate: number;
  /** kill -9 of watch. */
  kills: number;
  /** Faults the proxy injected, by kind. */
  faults: Partial<Record<FaultKind, number>>;
  /** The fault plan, described. */
  faultPlan: string;
  /** Restores checked. */
  restores: number;
  /** Oracle violations (empty = pass). */
  violations: Violation[];
  /** The step that failed, when one did. */
  failedStep: string | null;
  /** Wall time, ms. */
  durationMs: number;
}

/** The run's summary (written to bench/results/chaos.json by the script). */
export interface ChaosSummary {
  /** Seed of the run. */
  seed: number;
  /** Mode. */
  mode: "quick" | "long";
  /** Rounds asked for. */
  roundsRequested: number;
  /** Rounds run. */
  rounds: number;
  /** Rounds that failed. */
  failedRounds: number;
  /** Oracle violations of kind `loss` (committed, replicated data missing from a restore). */
  losses: number;
  /** All oracle violations. */
  violations: number;
  /** Faults injected, by kind, over the run. */
  faultsByKind: Partial<Record<FaultKind, number>>;
  /** Total faults injected. */
  faults: number;
  /** kill -9 of watch. */
  kills: number;
  /** Commits by all writers. */
  commits: number;
  /** Highest per-round commit rate (commits/s, all databases of the round together). */
  maxCommitRate: number;
  /** Restores checked. */
  restores: number;
  /** Rounds per backend. */
  backends: { s3: number; file: number };
  /** Wall time, ms. */
  durationMs: number;
  /** Failed rounds in detail. */
  failures: RoundResult[];
}

const DEC = new TextDecoder();

class StepError extends Error {
  constructor(readonly step: string, message: string) {
    super(message);
  }
}

/** A running `walrust watch` child with its output collected. */
interface WatchChild {
  child: Deno.ChildProcess;
  output: () => string;
  done: Promise<Deno.CommandStatus>;
}

function startWatch(args: string[], env: Record<string, string>): WatchChild {
  const child = spawnProcess(args, { env });
  let out = "";
  const drain = async (s: ReadableStream<Uint8Array>) => {
    try {
      for await (const c of s) {
        out += DEC.decode(c, { stream: true });
        if (out.length > 200_000) out = out.slice(-100_000);
      }
    } catch { /* killed */ }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const done = child.status.then(async (s) => {
    await drained;
    return s;
  });
  return { child, output: () => out, done };
}

async function killHard(w: WatchChild | null): Promise<void> {
  if (!w) return;
  try {
    w.child.kill("SIGKILL");
  } catch { /* gone */ }
  await w.done;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string, step: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new StepError(step, `${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The last `lines` lines of `s` — plus its first line, which holds the message of a stack trace. */
function tail(s: string, lines = 8): string {
  const all = s.trim().split("\n");
  const last = all.slice(-lines);
  return (all.length > lines ? [all[0], "…", ...last] : last).join("\n    ");
}

/** A database of a round. */
interface RoundDb {
  name: string;
  path: string;
  kind: "mixed" | "hot";
  logPath: string;
  seed: number;
  pageSize: number;
}

/** Reads what a restored file claims to be, checking integrity and (hot) content. */
function readRestored(
  path: string,
  db: RoundDb,
  what: string,
): { state: ObservedState; problems: Violation[] } {
  const problems: Violation[] = [];
  const ic = integrityCheck(path);
  if (ic !== "ok") {
    problems.push({ kind: "integrity", message: `${what}: integrity_check: ${ic.slice(0, 200)}` });
  }
  const conn = new DatabaseSync(path, { readOnly: true });
  try {
    if (db.kind === "hot") {
      const r = checkHotDatabase(conn, db.seed, db.pageSize);
      if (r.problem) problems.push({ kind: "phantom", message: `${what}: ${r.problem}` });
      return { state: { seq: r.seq, digest: null }, problems };
    }
    const row = conn.prepare("SELECT seq FROM writer_meta WHERE id = 1").get() as { seq: number };
    return { state: { seq: Number(row.seq), digest: databaseDigest(conn) }, problems };
  } finally {
    conn.close();
  }
}

async function readHistory(db: RoundDb): Promise<WriterHistory> {
  if (db.kind === "mixed") {
    const recs = await readWriterLog(db.logPath);
    return new WriterHistory(
      recs.map((r): LoggedState => ({ seq: r.seq, commitTime: r.commitTime, digest: r.digest })),
    );
  }
  const text = await Deno.readTextFile(db.logPath);
  const states: LoggedState[] = [];
  for (const line of text.split("\n")) {
    if (line.trim()) states.push(JSON.parse(line) as LoggedState);
  }
  return new WriterHistory(states);
}

/** The shared environment of a run: one s3rver and one proxy in front of it. */
interface ChaosEnv {
  s3: S3rver;
  proxy: FaultProxy;
}

function addFaults(into: Partial<Record<FaultKind, number>>, from: Partial<Record<FaultKind, number>>): void {
  for (const [k, v] of Object.entries(from) as [FaultKind, number][]) into[k] = (into[k] ?? 0) + v;
}

function diffFaults(
  after: Partial<Record<FaultKind, number>>,
  before: Partial<Record<FaultKind, number>>,
): Partial<Record<FaultKind, number>> {
  const out: Partial<Record<FaultKind, number>> = {};
  for (const [k, v] of Object.entries(after) as [FaultKind, number][]) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

/** Runs one round (see the module doc). Never throws: problems become violations of the result. */
export async function runRound(env: ChaosEnv, round: number, runSeed: number, mode: "quick" | "long", opts: {
  log: (line: string) => void;
  keepFailed: boolean;
  sabotage?: boolean;
}): Promise<RoundResult> {
  const started = Date.now();
  const seed = roundSeed(runSeed, round);
  const rng = new ChaosRng(seed);
  const backend: "s3" | "file" = rng.chance(0.25) ? "file" : "s3";
  const dir = await Deno.makeTempDir({ prefix: `walrust-chaos-r${round}-` });
  const result: RoundResult = {
    round,
    seed,
    backend,
    databases: [],
    commits: 0,
    commitRate: 0,
    kills: 0,
    faults: {},
    faultPlan: "none",
    restores: 0,
    violations: [],
    failedStep: null,
    durationMs: 0,
  };
  const writers: WriterProcess[] = [];
  let hot: { child: Deno.ChildProcess; done: Promise<Deno.CommandStatus>; ready: Promise<void> } | null =
    null;
  let watch: WatchChild | null = null;
  let step = "setup";
  const faultsBefore = { ...env.proxy.stats.injected };
  let observing = true;
  let observer: Promise<void> = Promise.resolve();
  let direct: ObjectStore | null = null;
  try {
    // --- setup ---------------------------------------------------------------------------------------
    const mixed = rng.chance(0.6);
    const hotCount = mixed ? rng.int(0, 2) : rng.int(1, 2);
    const pageSize = rng.pick([1024, 4096, 4096]);
    const dbs: RoundDb[] = [];
    if (mixed) {
      const path = `${dir}/mixed.db`;
      dbs.push({
        name: "mixed",
        path,
        kind: "mixed",
        logPath: `${dir}/mixed.log`,
        seed: rng.seed(),
        pageSize,
      });
    }
    for (let i = 0; i < hotCount; i++) {
      const path = `${dir}/hot${i}.db`;
      dbs.push({ name: `hot${i}`, path, kind: "hot", logPath: `${path}.log`, seed: 0, pageSize });
    }
    const hotSeed = rng.seed();
    for (const d of dbs) if (d.kind === "hot") d.seed = hotSeed;
    result.databases = dbs.map((d) => ({ name: d.name, kind: d.kind }));
    const durationMs = mode === "quick" ? rng.int(2000, 4000) : rng.int(3000, 10_000);
    const syncMs = rng.pick([50, 100, 200, 300]);
    const prefix = `run${runSeed.toString(16)}-r${round}`;
    const url = backend === "s3" ? `s3://${env.s3.bucket}/${prefix}` : `${dir}/replica`;
    const s3Env: Record<string, string> = {
      AWS_ACCESS_KEY_ID: env.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: env.s3.secretAccessKey,
      AWS_REGION: env.s3.region,
      NO_COLOR: "1",
    };
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[retry]\nmax_attempts = 4\nbase_delay = "20ms"\nmax_delay = "400ms"\nbreaker_threshold = 20\nbreaker_cooldown = "300ms"\n`,
    );
    const watchArgs = [
      "watch",
      ...dbs.map((d) => d.path),
      "-b",
      url,
      ...(backend === "s3" ? ["--endpoint", env.proxy.endpoint] : []),
      "--config",
      `${dir}/walrust.toml`,
      "--sync-interval",
      `${syncMs}ms`,
      "--min-checkpoint-pages",
      String(rng.pick([50, 200, 1000])),
      "--checkpoint-interval",
      rng.pick(["500ms", "2s", "1m"]),
      "--snapshot-interval",
      rng.pick(["700ms", "2s", "24h"]),
      "--shutdown-timeout",
      "20s",
      "--no-metrics",
      "--log-level",
      "info",
    ];
    const plan = backend === "s3" && rng.chance(0.85)
      ? randomFaultPlan(rng, { stalls: mode === "long" && rng.chance(0.15) })
      : { rules: [] };
    result.faultPlan = describeFaultPlan(plan);
    direct = backend === "s3"
      ? new S3ObjectStore({
        bucket: env.s3.bucket,
        prefix,
        endpoint: env.s3.endpoint,
        region: env.s3.region,
        forcePathStyle: true,
        accessKeyId: env.s3.accessKeyId,
        secretAccessKey: env.s3.secretAccessKey,
      })
      : new FileObjectStore(`${dir}/replica`);
    const kills = mode === "quick" ? rng.int(0, 2) : rng.int(0, 4);
    const killAt = Array.from({ length: kills }, () => Math.floor(durationMs * (0.15 + 0.75 * rng.next())))
      .sort((a, b) => a - b);
    const restartDelays = killAt.map(() => rng.int(0, 400));
    opts.log(
      `round ${round} seed=${seed} backend=${backend} dbs=${
        dbs.map((d) => `${d.name}(${d.kind})`).join(",")
      } ` +
        `duration=${durationMs}ms sync=${syncMs}ms page=${pageSize} kills=${kills} faults: ${result.faultPlan}`,
    );

    // Writers first: watch needs the databases to exist in WAL mode.
    const mixedDb = dbs.find((d) => d.kind === "mixed");
    if (mixedDb) {
      const w = spawnWriter(mixedDb.path, {
        seed: mixedDb.seed,
        rate: rng.int(50, 250),
        mix: ALL_OPS,
        log: mixedDb.logPath,
        pageSize,
      });
      writers.push(w);
      await withTimeout(w.ready, 30_000, "mixed writer start", step);
    }
    const hotDbs = dbs.filter((d) => d.kind === "hot");
    if (hotDbs.length > 0) {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          new URL("./hot_writer.ts", import.meta.url).pathname,
          "--seed",
          String(hotSeed),
          "--rate",
          String(rng.pick([1000, 2000, 4000])),
          "--burst-ms",
          String(rng.int(200, 1000)),
          "--idle-ms",
          String(rng.pick([0, 100, 400, 1200])),
          "--page-size",
          String(pageSize),
          "--checkpoint-every",
          String(rng.pick([0, 0, 300, 2000])),
          ...hotDbs.map((d) => d.path),
        ],
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      }).spawn();
      let readyRes!: () => void;
      const ready = new Promise<void>((r) => (readyRes = r));
      const out = { text: "" };
      const drain = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) {
          out.text += DEC.decode(c);
          if (out.text.includes('"ready":true')) readyRes();
        }
      };
      const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
      const done = child.status.then(async (s) => {
        await drained.catch(() => {});
        if (!s.success) out.text += `\n(exit ${s.code})`;
        return s;
      });
      hot = { child, done, ready };
      await withTimeout(Promise.race([ready, done.then(() => ready)]), 30_000, "hot writer start", step);
    }
    env.proxy.setFaults(plan);

    // --- workload ------------------------------------------------------------------------------------
    step = "workload";
    const clients = dbs.map((d) => new ReplicaClient(direct!, d.name));
    const acks = new Map<string, AckObservation[]>(dbs.map((d) => [d.name, []]));
    observer = (async () => {
      while (observing) {
        for (let i = 0; i < dbs.length; i++) {
          try {
            const files = await clients[i].allLtxFiles();
            acks.get(dbs[i].name)!.push({ at: Date.now(), txid: contiguousTxid(files) });
          } catch { /* the direct listing failed: no observation this time */ }
        }
        await sleep(250);
      }
    })();
    const t0 = Date.now();
    watch = startWatch(watchArgs, s3Env);
    for (let k = 0; k < killAt.length; k++) {
      const wait = t0 + killAt[k] - Date.now();
      if (wait > 0) await sleep(wait);
      await killHard(watch);
      result.kills++;
      watch = null;
      await sleep(restartDelays[k]);
      watch = startWatch(watchArgs, s3Env);
    }
    const rest = t0 + durationMs - Date.now();
    if (rest > 0) await sleep(rest);
    // A watch that died on its own (not killed by us) is a failure worth reporting.
    const early = await Promise.race([watch.done, sleep(0).then(() => null)]);
    if (early) {
      throw new StepError(
        step,
        `watch exited on its own with code ${early.code}:\n    ${tail(watch.output())}`,
      );
    }

    // --- drain ---------------------------------------------------------------------------------------
    step = "drain";
    for (const w of writers) await withTimeout(w.stop(), 30_000, "mixed writer stop", step);
    if (hot) {
      try {
        hot.child.kill("SIGTERM");
      } catch { /* gone */ }
      await withTimeout(hot.done, 30_000, "hot writer stop", step);
    }
    const workloadMs = Date.now() - t0;
    env.proxy.setFaults({ rules: [] });
    for (let attempt = 0;; attempt++) {
      // SIGTERM before watch installed its handlers (still loading) would just kill it: wait until it
      // says it is watching. (Kills during start-up are what the workload phase is for.)
      const w = watch!;
      const readyBy = Date.now() + 30_000;
      while (!/ watching /.test(w.output()) && Date.now() < readyBy) {
        const exited = await Promise.race([w.done, sleep(50).then(() => null)]);
        if (exited) {
          throw new StepError(
            step,
            `watch exited with code ${exited.code} before the drain:\n    ${tail(w.output())}`,
          );
        }
      }
      try {
        w.child.kill("SIGTERM");
      } catch { /* gone */ }
      const st = await withTimeout(watch!.done, mode === "quick" ? 60_000 : 120_000, "watch shutdown", step);
      if (st.code === 0) break;
      if (st.code !== 130 || attempt >= 2) {
        throw new StepError(
          step,
          `watch exited with code ${st.code} on SIGTERM:\n    ${tail(watch!.output())}`,
        );
      }
      // 130: files were still queued (possible after stalls); a new start ships them.
      watch = startWatch(watchArgs, s3Env);
      await sleep(1000);
    }
    watch = null;
    observing = false;
    await observer;

    if (opts.sabotage) {
      // Negative control: drop the newer half of the first database's TXIDs from the replica. The oracle
      // must report the loss (a runner that cannot fail proves nothing).
      const files = await clients[0].allLtxFiles();
      const newest = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
      await direct.delete(files.filter((f) => f.maxTXID > Math.floor(newest / 2)).map((f) => f.key));
      opts.log(
        `  sabotage: deleted ${dbs[0].name}'s files above TXID ${Math.floor(newest / 2)} of ${newest}`,
      );
    }

    // --- verify ----------------------------------------------------------------------------------------
    step = "verify";
    const readArgs = ["-b", url, ...(backend === "s3" ? ["--endpoint", env.s3.endpoint] : [])];
    const histories = new Map<string, WriterHistory>();
    for (const d of dbs) {
      const h = await readHistory(d);
      histories.set(d.name, h);
      result.commits += h.states.length - 1;
      // The raw chain itself, independently of verify: L0 files never overlap (no TXID shipped twice),
      // have no hole, and hold the newest TXID of the replica.
      const files = await clients[dbs.indexOf(d)].allLtxFiles();
      const l0 = files.filter((f) => f.level === 0).sort((a, b) => a.minTXID - b.minTXID);
      for (let k = 1; k < l0.length; k++) {
        if (l0[k].minTXID !== l0[k - 1].maxTXID + 1) {
          result.violations.push({
            kind: "chain",
            message: `${d.name}: L0 ${l0[k - 1].minTXID}-${l0[k - 1].maxTXID} is followed by ` +
              `${l0[k].minTXID}-${l0[k].maxTXID} (${l0[k].minTXID <= l0[k - 1].maxTXID ? "overlap" : "gap"})`,
          });
        }
      }
      const newest = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
      if (l0.length === 0 || l0[l0.length - 1].maxTXID !== newest) {
        result.violations.push({
          kind: "chain",
          message: `${d.name}: the newest TXID ${newest} is not in L0`,
        });
      }
      const v = await runWalrust(["verify", d.name, ...readArgs], s3Env);
      if (v.code !== 0) {
        result.violations.push({
          kind: "chain",
          message: `verify ${d.name} exited ${v.code}: ${tail(v.stderr + v.stdout, 4)}`,
        });
      }
    }
    result.commitRate = Math.round((result.commits * 1000) / Math.max(1, workloadMs));

    // --- restore -------------------------------------------------------------------------------------
    for (let i = 0; i < dbs.length; i++) {
      const d = dbs[i];
      const h = histories.get(d.name)!;
      step = `restore-latest ${d.name}`;
      const latestOut = `${dir}/restore-${d.name}-latest.db`;
      const r = await runWalrust(["restore", d.name, "-o", latestOut, ...readArgs], s3Env);
      result.restores++;
      if (r.code !== 0) {
        result.violations.push({
          kind: "loss",
          message: `latest restore of ${d.name} exited ${r.code}: ${tail(r.stderr, 3)}`,
        });
        continue;
      }
      const latest = readRestored(latestOut, d, `latest restore of ${d.name}`);
      result.violations.push(
        ...latest.problems,
        ...checkLatest(h, latest.state, `latest restore of ${d.name}`),
      );

      const files = await clients[i].allLtxFiles();
      const maxTxid = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
      const txidRestores: TxidRestore[] = [];
      const restoreTxid = async (txid: number): Promise<ObservedState | null> => {
        step = `restore-txid ${d.name} ${txid}`;
        const out = `${dir}/restore-${d.name}-t${txid}-${txidRestores.length}.db`;
        const rr = await runInProcess([
          "restore",
          d.name,
          "-o",
          out,
          "--txid",
          String(txid),
          "--json",
          ...readArgs,
        ], s3Env);
        result.restores++;
        if (rr.code !== 0) {
          result.violations.push({
            kind: "loss",
            message: `restore --txid ${txid} of ${d.name} exited ${rr.code}: ${tail(rr.stderr, 3)}`,
          });
          return null;
        }
        const got = readRestored(out, d, `restore --txid ${txid} of ${d.name}`);
        result.violations.push(...got.problems);
        txidRestores.push({ txid, state: got.state });
        await Deno.remove(out).catch(() => {});
        return got.state;
      };
      await restoreTxid(maxTxid);
      await restoreTxid(rng.int(1, maxTxid));

      const obs = acks.get(d.name)!;
      const lo = h.first.commitTime;
      const hi = h.last.commitTime + 300;
      for (let k = 0; k < 2; k++) {
        const target = lo + Math.floor(rng.next() * (hi - lo));
        const ackedTxid = ackedBefore(obs, target);
        const ackedState = ackedTxid > 0 ? await restoreTxid(ackedTxid) : null;
        step = `restore-timestamp ${d.name} ${new Date(target).toISOString()}`;
        const out = `${dir}/restore-${d.name}-ts${k}.db`;
        const rr = await runInProcess(
          [
            "restore",
            d.name,
            "-o",
            out,
            "--timestamp",
            new Date(target).toISOString(),
            "--json",
            ...readArgs,
          ],
          s3Env,
        );
        result.restores++;
        const tr: TimestampRestore = { target, txid: null, state: null, ackedTxid, ackedState };
        if (rr.code === 0) {
          tr.txid = Number((JSON.parse(rr.stdout) as { txid: number }).txid);
          const got = readRestored(out, d, `restore --timestamp of ${d.name}`);
          result.violations.push(...got.problems);
          tr.state = got.state;
        } else if (rr.code !== 10) {
          result.violations.push({
            kind: "error",
            message: `restore --timestamp ${new Date(target).toISOString()} of ${d.name} exited ${rr.code}: ${
              tail(rr.stderr, 3)
            }`,
          });
          continue;
        }
        result.violations.push(
          ...checkTimestampRestore(h, tr).map((v) => ({ ...v, message: `${d.name}: ${v.message}` })),
        );
        await Deno.remove(out).catch(() => {});
      }
      result.violations.push(
        ...checkTxidRestores(h, txidRestores).map((v) => ({ ...v, message: `${d.name}: ${v.message}` })),
      );
    }
    if (result.violations.length > 0) result.failedStep = "oracle";
  } catch (err) {
    const s = err instanceof StepError ? err.step : step;
    result.failedStep = s;
    const msg = err instanceof Error ? err.message : String(err);
    result.violations.push({ kind: "error", message: `${s}: ${msg}` });
  } finally {
    observing = false;
    await observer.catch(() => {});
    env.proxy.setFaults({ rules: [] });
    await killHard(watch);
    for (const w of writers) await w.kill().catch(() => {});
    if (hot) {
      try {
        hot.child.kill("SIGKILL");
      } catch { /* gone */ }
      await hot.done.catch(() => {});
    }
    direct?.close();
    result.faults = diffFaults(env.proxy.stats.injected, faultsBefore);
    result.durationMs = Date.now() - started;
    if (result.failedStep !== null && opts.keepFailed) {
      opts.log(`  kept the failed round's files in ${dir}`);
    } else {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
  return result;
}

/** Runs the CLI as a subprocess (the real binary path: `deno run main.ts`). */
function runWalrust(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runProcess(args, { env });
}

/** Starts the shared s3rver and proxy, runs the rounds, stops everything, and returns the summary. */
export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const log = opts.log ?? ((l: string) => console.error(l));
  configureLogging({ level: "error" });
  const started = Date.now();
  const summary: ChaosSummary = {
    seed: opts.seed,
    mode: opts.mode,
    roundsRequested: opts.only !== undefined ? 1 : opts.rounds,
    rounds: 0,
    failedRounds: 0,
    losses: 0,
    violations: 0,
    faultsByKind: {},
    faults: 0,
    kills: 0,
    commits: 0,
    maxCommitRate: 0,
    restores: 0,
    backends: { s3: 0, file: 0 },
    durationMs: 0,
    failures: [],
  };
  log(`chaos: seed=${opts.seed} mode=${opts.mode} rounds=${summary.roundsRequested}`);
  const s3 = await startS3rver();
  let proxy: FaultProxy | null = null;
  try {
    proxy = await startFaultProxy(s3.endpoint);
    const env: ChaosEnv = { s3, proxy };
    const list = opts.only !== undefined ? [opts.only] : Array.from({ length: opts.rounds }, (_, i) => i);
    for (const round of list) {
      if (opts.timeBudgetMs !== undefined && Date.now() - started > opts.timeBudgetMs) {
        log(`chaos: time budget reached after ${summary.rounds} rounds`);
        break;
      }
      const r = await runRound(env, round, opts.seed, opts.mode, {
        log,
        keepFailed: opts.keepFailed ?? false,
        sabotage: opts.sabotage,
      });
      summary.rounds++;
      summary.kills += r.kills;
      summary.commits += r.commits;
      summary.restores += r.restores;
      summary.maxCommitRate = Math.max(summary.maxCommitRate, r.commitRate);
      summary.backends[r.backend]++;
      addFaults(summary.faultsByKind, r.faults);
      summary.violations += r.violations.length;
      summary.losses += r.violations.filter((v) => v.kind === "loss").length;
      const nFaults = Object.values(r.faults).reduce((s, n) => s + (n ?? 0), 0);
      if (r.failedStep !== null) {
        summary.failedRounds++;
        summary.failures.push(r);
        log(
          `  FAILED round ${r.round} (seed ${r.seed}) at step "${r.failedStep}":\n    ` +
            r.violations.map((v) => `[${v.kind}] ${v.message}`).join("\n    ") +
            `\n  re-run just this round: deno task chaos --seed ${opts.seed} --only ${r.round}` +
            (opts.mode === "long" ? " --long" : ""),
        );
        if (opts.failFast) break;
      } else {
        log(
          `  ok round ${r.round}: ${r.commits} commits (${r.commitRate}/s), ${r.kills} kills, ${nFaults} faults, ` +
            `${r.restores} restores, ${(r.durationMs / 1000).toFixed(1)}s`,
        );
      }
    }
  } finally {
    await proxy?.stop();
    await s3.stop();
  }
  summary.faults = Object.values(summary.faultsByKind).reduce((s, n) => s + (n ?? 0), 0);
  summary.durationMs = Date.now() - started;
  return summary;
}
