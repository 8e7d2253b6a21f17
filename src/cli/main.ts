/**
 * Top-level CLI: `walrust [global options] <command> [args]`, `--help`, `--version`, error reporting and
 * exit codes.
 *
 * @module
 */

// lz4.ts imports lz4-wasm's .wasm file as a module, and Deno links a wasm module only when it is part of the
// static graph (first imported inside a dynamic import(), it fails: "Module source can not be imported").
// Commands are loaded lazily (commands.ts), so the codec is imported here, up front.
import "../ltx/lz4.ts";
import { COMMANDS } from "./commands.ts";
import { type CliIO, GLOBAL_HELP } from "./command.ts";
import { errorClassOf, ExitCode, exitCodeOf, messageOf, WalrustError } from "../errors.ts";
import { configureLogging, type LogFormat, type LogLevel, redact } from "../observe/log.ts";
import { VERSION } from "../version.ts";

/** The exit-code table, printed in `walrust --help` and README.md. */
export const EXIT_CODE_HELP = `Exit codes:
  0    success
  1    internal error (a bug: please report it with the stack trace)
  2    usage or configuration error
  3    database error (missing, not SQLite, not in WAL mode)
  4    authentication failed (credentials rejected)
  5    replica unreachable (network, timeout, repeated 5xx)
  6    bucket not found
  7    corruption detected (bad checksum, bad header, truncated object)
  8    gap in the backup chain (missing TXIDs)
  9    stale backup (newer than --max-age not found)
  10   nothing to restore (no backup, or target TXID/time not covered)
  11   conflict (output exists, lease/lock held by another process)
  12   local I/O error (disk full, read-only, permission denied)
  130  interrupted (SIGINT/SIGTERM)`;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `walrust ${VERSION} — continuous, verifiable backup of SQLite databases to S3 or a directory

Usage: walrust [global options] <command> [arguments]

Commands:
${lines.join("\n")}

Run 'walrust <command> --help' for a command's options.

${GLOBAL_HELP}
  -V, --version            print the version

Replica URLs: s3://bucket/prefix (S3, R2, Tigris, MinIO: --endpoint or AWS_ENDPOINT_URL_S3),
              file:///abs/dir or a plain directory path.

${EXIT_CODE_HELP}
`;
}

/** The process's real IO. */
export function processIO(): CliIO {
  const enc = new TextEncoder();
  return {
    stdout: (t) => {
      Deno.stdout.writeSync(enc.encode(t));
    },
    stderr: (t) => {
      Deno.stderr.writeSync(enc.encode(t));
    },
    isTTY: Deno.stderr.isTerminal(),
    env: (name) => {
      try {
        return Deno.env.get(name);
      } catch {
        return undefined;
      }
    },
  };
}

function applyLogFlags(args: string[], io: CliIO): void {
  const pick = (flag: string) => {
    const i = args.findIndex((a) => a === flag || a.startsWith(flag + "="));
    if (i < 0) return undefined;
    return args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
  };
  const level = pick("--log-level") ?? io.env("WALRUST_LOG_LEVEL");
  const format = pick("--log-format") ?? io.env("WALRUST_LOG_FORMAT");
  if (level !== undefined && !["debug", "info", "warn", "error"].includes(level)) {
    throw new WalrustError(`--log-level: expected debug, info, warn or error, got '${level}'`, 2, "usage");
  }
  if (format !== undefined && !["text", "json"].includes(format)) {
    throw new WalrustError(`--log-format: expected text or json, got '${format}'`, 2, "usage");
  }
  configureLogging({ level: level as LogLevel | undefined, format: format as LogFormat | undefined });
}

/**
 * Runs the CLI with `args` and returns the exit code. Expected failures print one line
 * (`walrust: <message>`); unexpected ones print the stack trace too.
 */
export async function runCli(args: string[], io: CliIO = processIO()): Promise<number> {
  try {
    applyLogFlags(args, io);
    // Global options may precede the command name; find the first positional.
    let i = 0;
    const global: string[] = [];
    while (i < args.length && args[i].startsWith("-")) {
      const a = args[i];
      if (a === "--version" || a === "-V") {
        io.stdout(`walrust ${VERSION}\n`);
        return ExitCode.OK;
      }
      if (a === "--help" || a === "-h") {
        io.stdout(mainHelp());
        return ExitCode.OK;
      }
      global.push(a);
      if (!a.includes("=") && ["--config", "-c", "--log-level", "--log-format"].includes(a)) {
        global.push(args[++i]);
      }
      i++;
    }
    const name = args[i];
    if (name === undefined) {
      io.stderr(mainHelp());
      return ExitCode.USAGE;
    }
    if (name === "help") {
      const entry = COMMANDS.find((c) => c.name === args[i + 1]);
      io.stdout(entry ? (await entry.load()).help + "\n\n" + GLOBAL_HELP + "\n" : mainHelp());
      return ExitCode.OK;
    }
    const entry = COMMANDS.find((c) => c.name === name);
    if (!entry) {
      io.stderr(`walrust: unknown command '${name}'; run 'walrust --help' for the list\n`);
      return ExitCode.USAGE;
    }
    const command = await entry.load();
    const rest = [...global, ...args.slice(i + 1)];
    if (rest.includes("--help") || rest.includes("-h")) {
      io.stdout(command.help + "\n\n" + GLOBAL_HELP + "\n");
      return ExitCode.OK;
    }
    return await command.run(rest, io);
  } catch (err) {
    const code = exitCodeOf(err);
    if (err instanceof WalrustError) {
      io.stderr(`walrust: ${redact(messageOf(err))}\n`);
    } else {
      const stack = err instanceof Error && err.stack ? err.stack : messageOf(err);
      io.stderr(`walrust: internal error (class=${errorClassOf(err)}): ${redact(stack)}\n`);
    }
    return code;
  }
}
