/**
 * Seeded random fault plans for the chaos runner's fault-injecting proxy (`tests/support/fault_proxy.ts`),
 * and the deterministic PRNG every random choice of a round comes from.
 *
 * @module
 */

import type { FaultKind, FaultPlan, FaultRule } from "../../tests/support/fault_proxy.ts";

/** Small deterministic PRNG (mulberry32): the same seed gives the same round. */
export class ChaosRng {
  #s: number;
  /** A generator from a 32-bit seed. */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Next value in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** A 32-bit seed for a sub-generator. */
  seed(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}

/** The seed of round `round` of a run with seed `seed` (so one round can be re-run alone). */
export function roundSeed(seed: number, round: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(round + 1, 0x85ebca77)) >>> 0;
}

/** Faults that resolve within a short round (the client's request timeout is 30 s: stalls do not). */
export const FAST_FAULTS: readonly FaultKind[] = [
  "error_500",
  "error_503",
  "slowdown_503",
  "throttle_429",
  "reset",
  "reset_mid_body",
  "truncate",
  "short_body",
  "latency",
];

/** Faults that hold a request until the client's timeout fires (long mode only). */
export const STALL_FAULTS: readonly FaultKind[] = ["stall", "stall_mid_body"];

/** Options of {@link randomFaultPlan}. */
export interface FaultPlanOptions {
  /** Include stalls (each fires at most once per plan). */
  stalls: boolean;
  /** Upper bound of a rule's firing probability (default 0.3). */
  maxProbability?: number;
}

/**
 * A random plan: 1–4 rules, each a kind, sometimes limited to one method or to LTX objects, with a
 * probability, latency, or `afterUpstream` (the write happened but the client saw an error) drawn from `rng`.
 */
export function randomFaultPlan(rng: ChaosRng, opts: FaultPlanOptions): FaultPlan {
  const kinds = opts.stalls ? [...FAST_FAULTS, ...STALL_FAULTS] : [...FAST_FAULTS];
  const maxP = opts.maxProbability ?? 0.3;
  const rules: FaultRule[] = [];
  const n = rng.int(1, 4);
  for (let i = 0; i < n; i++) {
    const kind = rng.pick(kinds);
    const rule: FaultRule = { kind, probability: 0.02 + rng.next() * (maxP - 0.02) };
    if (rng.chance(0.5)) rule.method = rng.pick(["PUT", "PUT", "GET", "HEAD", "DELETE"]);
    if (rng.chance(0.3)) rule.path = /\.ltx/;
    if (kind === "latency") rule.latencyMs = rng.int(20, 400);
    if (
      kind.startsWith("error_") || kind.startsWith("slowdown") || kind.startsWith("throttle") ||
      kind === "reset"
    ) {
      if (rng.chance(0.4)) rule.afterUpstream = true;
    }
    if (STALL_FAULTS.includes(kind)) rule.times = 1;
    rules.push(rule);
  }
  return { rules, seed: rng.seed() };
}

/** A short description of a plan for logs: `error_500 PUT p=0.12, latency 200ms p=0.05`. */
export function describeFaultPlan(plan: FaultPlan): string {
  if (plan.rules.length === 0) return "none";
  return plan.rules.map((r) =>
    [
      r.kind,
      r.method,
      r.path ? "ltx" : undefined,
      r.latencyMs ? `${r.latencyMs}ms` : undefined,
      r.afterUpstream ? "after-upstream" : undefined,
      `p=${(r.probability ?? 1).toFixed(2)}`,
      r.times ? `x${r.times}` : undefined,
    ].filter((x) => x !== undefined).join(" ")
  ).join(", ");
}
