/**
 * Helpers to run the CLI in-process with captured output, and as a subprocess (source or bundle).
 *
 * @module
 */

import { runCli } from "../../src/cli/main.ts";
import type { CliIO } from "../../src/cli/command.ts";

/** The captured result of one CLI run. */
export interface CliResult {
  /** Exit code. */
  code: number;
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/** Runs `walrust <args>` in this process, capturing output. `env` overrides environment lookups. */
export async function runInProcess(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const io: CliIO = {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    isTTY: false,
    env: (n) => (n in env ? env[n] : Deno.env.get(n)),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** The product's permission flags: what a user runs the binary with (scripts/compile_args.ts). */
import { PRODUCT_PERMISSIONS } from "../../scripts/compile_args.ts";
export { PRODUCT_PERMISSIONS };

/**
 * Runs `walrust <args>` as a separate `deno run` process of main.ts with the product's permissions.
 * Use for kill -9 tests and anything that needs a real process.
 */
export async function runProcess(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; script?: string } = {},
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--frozen",
      "--config",
      `${ROOT}/deno.json`,
      ...PRODUCT_PERMISSIONS,
      options.script ?? `${ROOT}/main.ts`,
      ...args,
    ],
    env: options.env,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Starts `walrust <args>` as a long-running child process (for watch). Caller must kill it. */
export function spawnProcess(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; script?: string } = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--frozen",
      "--config",
      `${ROOT}/deno.json`,
      ...PRODUCT_PERMISSIONS,
      options.script ?? `${ROOT}/main.ts`,
      ...args,
    ],
    env: options.env,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}
