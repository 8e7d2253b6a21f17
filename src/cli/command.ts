/**
 * What a subcommand looks like, and the argument parsing every command shares.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.ts";

/** Where a command writes, and what it knows about its terminal. Injected so tests can capture output. */
export interface CliIO {
  /** Writes text to standard output (no newline added). */
  stdout(text: string): void;
  /** Writes text to standard error (no newline added). */
  stderr(text: string): void;
  /** Whether stderr is a terminal (progress bars only then). */
  isTTY: boolean;
  /** Reads an environment variable (undefined when unset or not permitted). */
  env(name: string): string | undefined;
}

/** A subcommand. `run` returns the exit code or throws a typed error (see ../errors.ts). */
export interface Command {
  /** Name as typed: `restore`. */
  name: string;
  /** Full usage text for `walrust <name> --help`. */
  help: string;
  /** Runs the command with the arguments after its name. */
  run(args: string[], io: CliIO): Promise<number>;
}

/** Options understood by every command (also before the command name). */
export const GLOBAL_OPTIONS = {
  config: { type: "string", short: "c" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

/** Help text for the global options, appended to every command's help. */
export const GLOBAL_HELP = `Global options:
  -c, --config <file>      walrust.toml to read (default: ./walrust.toml when it exists)
      --log-level <level>  debug | info | warn | error (default info)
      --log-format <fmt>   text | json (default text)
  -h, --help               show help`;

/**
 * Parses `args` strictly with `node:util` parseArgs, adding the global options. Unknown flags and missing
 * values become a {@link UsageError} naming the command, so the user sees one line and exit code 2.
 */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  command: string,
  args: string[],
  options: O,
) {
  try {
    return parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new UsageError(`walrust ${command}: ${msg} (see 'walrust ${command} --help')`, { cause: err });
  }
}

/** Parses a non-negative integer flag value, naming the flag in the error. */
export function parseIntFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) {
    throw new UsageError(`--${name}: expected an integer >= ${min}, got '${value}'`);
  }
  return Number(value);
}
