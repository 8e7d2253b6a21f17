/**
 * Start-up cost of the CLI: wall time of short commands that do (almost) no work, each a fresh process, so
 * what is measured is the runtime, module loading and argument handling — what every `restore` in a
 * container start or a CI job pays before its first byte. Compared with an empty Deno script in the same run.
 *
 * Usage: deno run -A bench/startup.ts [--runs 15]
 * Writes bench/results/startup.json and prints best and median milliseconds per command.
 */
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const PERMS = ["--allow-read", "--allow-write", "--allow-net", "--allow-env", "--allow-run", "--allow-sys"];
const { values } = parseArgs({ args: Deno.args, options: { runs: { type: "string", default: "15" } } });
const runs = Number(values.runs);

const dir = await Deno.makeTempDir({ prefix: "bench-startup-" });
const empty = `${dir}/empty.ts`;
await Deno.writeTextFile(empty, "");
const walrust = (
  ...args: string[]
) => ["run", "--quiet", "--config", `${ROOT}/deno.json`, ...PERMS, `${ROOT}/main.ts`, ...args];
const cases: Record<string, string[]> = {
  "deno (empty script)": ["run", "--quiet", empty],
  "walrust --version": walrust("--version"),
  "walrust list (empty directory replica)": walrust("list", "-b", `${dir}/replica`),
  "walrust restore (no backup, --if-replica-exists)": walrust(
    "restore",
    "app",
    "-o",
    `${dir}/out.db`,
    "-b",
    `${dir}/replica`,
    "--if-replica-exists",
  ),
};
await Deno.mkdir(`${dir}/replica`);

const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let r = 0; r < runs; r++) {
  for (const [name, args] of Object.entries(cases)) {
    const t = performance.now();
    const o = await new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).output();
    const ms = performance.now() - t;
    if (o.code !== 0) throw new Error(`${name}: exit ${o.code}: ${new TextDecoder().decode(o.stderr)}`);
    times[name].push(ms);
  }
}
await Deno.remove(dir, { recursive: true });

const summary = Object.fromEntries(
  Object.entries(times).map(([k, xs]) => {
    const s = [...xs].sort((a, b) => a - b);
    return [k, { bestMs: s[0], medianMs: s[Math.floor(s.length / 2)], runs: xs }];
  }),
);
await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
await Deno.writeTextFile(
  `${ROOT}/bench/results/startup.json`,
  JSON.stringify({ summary, at: new Date() }, null, 2),
);
console.log("command                                            best ms  median ms");
for (const [k, v] of Object.entries(summary)) {
  console.log(`${k.padEnd(50)} ${v.bestMs.toFixed(1).padStart(7)} ${v.medianMs.toFixed(1).padStart(10)}`);
}
