/**
 * `deno task chaos [--seed N] [--rounds N] [--quick|--long] [--only R] [--keep] [--fail-fast] [--budget 10m]
 * [--out FILE]`: the chaos runner (see `src/chaos/runner.ts`). Prints the seed and one line per round; on a
 * failure, the round, its step, what the oracle saw and the command that re-runs just that round. Writes a
 * JSON summary (rounds, faults by kind, kills, commits, losses) to `bench/results/chaos.json` unless `--out`
 * says otherwise. Exit code 0 when every round passed, 1 otherwise.
 *
 * Defaults: `--quick` = 24 rounds of 2–4 s (what CI runs through tests/chaos_quick_test.ts); `--long` = 1000
 * rounds of 3–10 s, with stalls past the client timeout.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runChaos } from "../src/chaos/runner.ts";
import { parseDuration } from "../src/util/duration.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string" },
    rounds: { type: "string" },
    quick: { type: "boolean" },
    long: { type: "boolean" },
    only: { type: "string" },
    keep: { type: "boolean" },
    "fail-fast": { type: "boolean" },
    budget: { type: "string" },
    out: { type: "string" },
  },
});
const mode = values.long ? "long" : "quick";
const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() % 0x7fffffff) >>> 0;
const rounds = values.rounds !== undefined ? Number(values.rounds) : mode === "long" ? 1000 : 24;
const budget = values.budget !== undefined ? parseDuration(values.budget) : null;
if (!Number.isFinite(rounds) || rounds < 1) throw new Error(`--rounds: expected a positive number`);

const summary = await runChaos({
  seed,
  rounds,
  mode,
  only: values.only !== undefined ? Number(values.only) : undefined,
  keepFailed: values.keep === true,
  failFast: values["fail-fast"] === true,
  timeBudgetMs: budget ?? undefined,
});
const out = values.out ?? new URL("../bench/results/chaos.json", import.meta.url).pathname;
await Deno.writeTextFile(
  out,
  JSON.stringify({ ...summary, finishedAt: new Date().toISOString() }, null, 2) + "\n",
);
console.error(
  `chaos: seed=${summary.seed} ${summary.rounds} rounds (${summary.backends.s3} s3, ${summary.backends.file} file), ` +
    `${summary.commits} commits (max ${summary.maxCommitRate}/s), ${summary.kills} kills, ${summary.faults} faults ` +
    `${
      JSON.stringify(summary.faultsByKind)
    }, ${summary.restores} restores, ${summary.failedRounds} failed rounds, ` +
    `${summary.losses} losses; summary in ${out}`,
);
Deno.exit(summary.failedRounds === 0 ? 0 : 1);
