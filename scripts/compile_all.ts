/**
 * Builds standalone walrust executables for every supported platform into dist/:
 *   walrust-x86_64-linux, walrust-aarch64-linux, walrust-x86_64-macos, walrust-aarch64-macos
 *
 * `deno compile` downloads Deno's runtime (denort) for each target from Deno's release host; on a machine that
 * cannot reach it, set DENORT_BIN to a denort binary for the host target (only the host target can be built then).
 * The permissions baked in are the product's: read/write (database + queue + local replica), net (S3 endpoint and the
 * metrics server), env (AWS_* variables), run (`watch --exec`), sys (the host name recorded in the lease; optional).
 *
 * Usage: deno run -A scripts/compile_all.ts [--target <triple>]...
 */
import { parseArgs } from "node:util";
import { COMPILE_ARGS } from "./compile_args.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const TARGETS: Record<string, string> = {
  "x86_64-unknown-linux-gnu": "walrust-x86_64-linux",
  "aarch64-unknown-linux-gnu": "walrust-aarch64-linux",
  "x86_64-apple-darwin": "walrust-x86_64-macos",
  "aarch64-apple-darwin": "walrust-aarch64-macos",
};
const { values } = parseArgs({ args: Deno.args, options: { target: { type: "string", multiple: true } } });
const wanted = values.target?.length ? values.target : Object.keys(TARGETS);
let failed = 0;
for (const target of wanted) {
  const name = TARGETS[target];
  if (!name) {
    console.error(`unknown target ${target}; known: ${Object.keys(TARGETS).join(", ")}`);
    Deno.exit(2);
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      ...COMPILE_ARGS,
      "--target",
      target,
      "-o",
      `${ROOT}/dist/${name}`,
      `${ROOT}/main.ts`,
    ],
    cwd: ROOT,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (out.code === 0) console.log(`built dist/${name}`);
  else {
    failed++;
    console.error(`compile for ${target} failed (exit ${out.code})`);
  }
}
Deno.exit(failed ? 1 : 0);
