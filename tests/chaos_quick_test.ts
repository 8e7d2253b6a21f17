/**
 * The chaos runner in quick mode, as CI runs it: a fixed seed, 20 short rounds (2–4 s of workload each) of
 * real writers, `walrust watch` subprocesses killed with SIGKILL at random points, a fault-injecting proxy in
 * front of s3rver (or a local directory replica), then `walrust verify` and restores checked by the oracle.
 * Zero losses and zero violations are required. A negative control (the replica loses its newer half after
 * the round) must be reported as a loss, so the runner is shown able to fail.
 *
 * `WALRUST_CHAOS_SEED` / `WALRUST_CHAOS_ROUNDS` override the seed and the number of rounds.
 */
import assert from "node:assert/strict";
import { runChaos } from "../src/chaos/runner.ts";

const seed = Number(Deno.env.get("WALRUST_CHAOS_SEED") ?? "20261122");
const rounds = Number(Deno.env.get("WALRUST_CHAOS_ROUNDS") ?? "20");

Deno.test({
  name: `chaos quick: ${rounds} seeded rounds (seed ${seed}) with kill -9 and S3 faults lose nothing`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const lines: string[] = [];
    const summary = await runChaos({
      seed,
      rounds,
      mode: "quick",
      log: (l) => {
        lines.push(l);
        console.error(l);
      },
    });
    assert.equal(summary.rounds, rounds);
    assert.equal(
      summary.failedRounds,
      0,
      `failed rounds:\n${
        summary.failures.map((f) =>
          `round ${f.round} (${f.failedStep}): ${f.violations.map((v) => v.message).join("; ")}`
        )
          .join("\n")
      }`,
    );
    assert.equal(summary.losses, 0);
    // The run exercised what it claims to: kills, injected faults, both backends, many commits.
    assert.ok(summary.kills > 0, "no kill -9 happened");
    assert.ok(summary.faults > 0, "no fault was injected");
    assert.ok(summary.backends.s3 > 0 && summary.backends.file > 0, JSON.stringify(summary.backends));
    assert.ok(summary.restores >= rounds * 3);
    assert.ok(summary.commits > 1000);
  },
});

Deno.test({
  name: "chaos quick: the oracle reports a replica that lost its newer half (negative control)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const summary = await runChaos({ seed, rounds: 1, mode: "quick", sabotage: true, log: () => {} });
    assert.equal(summary.failedRounds, 1);
    assert.ok(summary.losses > 0, JSON.stringify(summary.failures.map((f) => f.violations)));
  },
});
