/**
 * The `watch --exec "<command>"` child: the application walrust supervises, started once replication is
 * running. walrust behaves like a small init for it (as Litestream's `-exec` does):
 *
 * - The command line is split with shell-like quoting (`'…'`, `"…"`, backslash) and run directly, without a
 *   shell, so signals reach the application itself. Only when the string uses shell syntax (`|`, `&`, `;`,
 *   `<`, `>`, `(`, `)`, `$`, backquotes, globs `* ? [`, a leading `~` or `#`, a `VAR=value` prefix, or a
 *   newline) is it run as `sh -c "<command>"`, because only a shell can give those their meaning.
 * - The child gets its own process group (session), so a terminal's Ctrl-C reaches walrust once and walrust
 *   forwards it once (a second SIGINT often means "force quit" to an application). Signals go to the whole
 *   group (a `sh -c` pipeline included) when the process has unscoped `--allow-run`; with a scoped
 *   `--allow-run=<cmd>` Deno refuses group signals and only the child itself is signalled.
 * - The exit status is the child's code, or 128 + the signal number when a signal killed it (the shell's
 *   convention), so `walrust watch --exec` can stand in for the application in a process manager.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A parsed `--exec` command: either an argument vector run directly, or a string for `sh -c`. */
export type ParsedCommand =
  | { kind: "argv"; argv: string[] }
  | { kind: "shell"; script: string; reason: string };

/** A running `--exec` child. */
export interface ChildHandle {
  /** Process id of the child (also its process group id). */
  readonly pid: number;
  /** How it was started: the argument vector, or `["sh", "-c", script]`. */
  readonly argv: readonly string[];
  /** Resolves with the exit status once the child exits: its code, or 128 + n when signal n killed it. */
  readonly status: Promise<number>;
  /** Whether the child has exited. */
  readonly exited: boolean;
  /** Sends `sig` to the child's process group (or the child alone: see the module doc); no-op after exit. */
  signal(sig: Deno.Signal): void;
  /**
   * Asks the child to stop: SIGTERM, then SIGKILL if it is still running after `graceMs`. Resolves with the
   * exit status.
   */
  stop(graceMs: number): Promise<number>;
}

/** Characters that mean something to a shell outside quotes (operators, expansions, globs). */
const SHELL_CHARS = new Set(["|", "&", ";", "<", ">", "(", ")", "$", "`", "*", "?", "[", "\n"]);

/**
 * Splits `command` like a POSIX shell would split a simple command: whitespace separates words; single
 * quotes keep everything literally; double quotes keep everything but `\"`, `\\`, `` \` ``, `\$` and a
 * backslash-newline; outside quotes a backslash escapes the next character. When the string needs a real
 * shell (see the module doc), the result is `{kind: "shell"}` with the reason. UsageError for an empty
 * command or an unterminated quote.
 */
export function parseCommand(command: string): ParsedCommand {
  const shell = (reason: string): ParsedCommand => ({ kind: "shell", script: command, reason });
  const argv: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  const n = command.length;
  while (i < n) {
    const c = command[i];
    if (c === " " || c === "\t") {
      if (inWord) argv.push(word);
      word = "";
      inWord = false;
      i++;
      continue;
    }
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new UsageError(`--exec: unterminated single quote in '${command}'`);
      word += command.slice(i + 1, end);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new UsageError(`--exec: unterminated double quote in '${command}'`);
        const d = command[i];
        if (d === '"') break;
        if (d === "$" || d === "`") return shell(`'${d}' inside double quotes is expanded by a shell`);
        if (d === "\\" && i + 1 < n && ['"', "\\", "$", "`", "\n"].includes(command[i + 1])) {
          if (command[i + 1] !== "\n") word += command[i + 1];
          i += 2;
          continue;
        }
        word += d;
        i++;
      }
      inWord = true;
      i++;
      continue;
    }
    if (c === "\\") {
      if (i + 1 >= n) throw new UsageError(`--exec: trailing backslash in '${command}'`);
      if (command[i + 1] !== "\n") {
        word += command[i + 1];
        inWord = true;
      }
      i += 2;
      continue;
    }
    if (SHELL_CHARS.has(c)) return shell(c === "\n" ? "a newline" : `'${c}'`);
    if (!inWord && (c === "~" || c === "#")) return shell(`a word starting with '${c}'`);
    if (c === "=" && argv.length === 0 && inWord && /^[A-Za-z_][A-Za-z0-9_]*$/.test(word)) {
      // `VAR=value cmd`: an assignment prefix, which only a shell applies.
      return shell("a VAR=value assignment");
    }
    word += c;
    inWord = true;
    i++;
  }
  if (inWord) argv.push(word);
  if (argv.length === 0) throw new UsageError("--exec: the command is empty");
  return { kind: "argv", argv };
}

/** Signal numbers, for the 128 + n exit status (they differ between Linux and macOS for a few signals). */
const SIGNALS_LINUX: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};
const SIGNALS_DARWIN: Record<string, number> = {
  ...SIGNALS_LINUX,
  SIGBUS: 10,
  SIGUSR1: 30,
  SIGSEGV: 11,
  SIGUSR2: 31,
  SIGCHLD: 20,
  SIGCONT: 19,
  SIGSTOP: 17,
  SIGTSTP: 18,
  SIGURG: 16,
  SIGIO: 23,
  SIGSYS: 12,
};

/** The exit status a shell would report: the code, or 128 + n when signal n killed the process. */
export function exitStatusOf(status: Deno.CommandStatus): number {
  if (status.signal === null) return status.code;
  const table = Deno.build.os === "darwin" ? SIGNALS_DARWIN : SIGNALS_LINUX;
  const n = table[status.signal];
  if (n !== undefined) return 128 + n;
  // Deno already reports 128 + n as the code of a killed process; keep it when the name is unknown.
  return status.code > 128 ? status.code : 128;
}

/**
 * Starts `command` (see {@link parseCommand}) with walrust's environment plus `env`, standard input, output
 * and error inherited, in its own process group. Throws UsageError when the program does not exist or
 * `--allow-run` does not permit it (the message names the program and what to do).
 */
export function startChild(command: string, env: Record<string, string> = {}): ChildHandle {
  const parsed = parseCommand(command);
  const argv = parsed.kind === "argv" ? parsed.argv : ["sh", "-c", parsed.script];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      env,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      // Its own session and process group: terminal signals reach walrust only, and walrust forwards them.
      detached: Deno.build.os !== "windows",
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UsageError(`--exec: program '${argv[0]}' not found; check PATH or give its full path`, {
        cause: err,
      });
    }
    if (err instanceof Deno.errors.NotCapable) {
      throw new UsageError(
        `--exec: Deno's permissions do not allow running '${argv[0]}' (${firstLine(err)}); grant ` +
          `--allow-run=${argv[0]} (see docs/fly.md)`,
        { cause: err },
      );
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(`--exec: cannot run '${argv[0]}': permission denied; make the file executable`, {
        cause: err,
      });
    }
    throw err;
  }
  const pid = child.pid;
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return exitStatusOf(s);
  });
  // Whether group signals are permitted (unscoped --allow-run); decided on first use.
  let groupSignals = Deno.build.os !== "windows";
  const signal = (sig: Deno.Signal): void => {
    if (exited) return;
    if (groupSignals) {
      try {
        Deno.kill(-pid, sig);
        return;
      } catch (err) {
        if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
          groupSignals = false;
        } else if (err instanceof Deno.errors.NotFound) {
          return; // the group is gone: the child exited and nothing of it is left
        }
      }
    }
    try {
      child.kill(sig);
    } catch {
      // Exited between the check and the kill.
    }
  };
  const stop = async (graceMs: number): Promise<number> => {
    signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        signal("SIGKILL");
        resolve();
      }, Math.max(0, graceMs));
    });
    try {
      await Promise.race([status, killed]);
      return await status;
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    pid,
    argv,
    status,
    get exited() {
      return exited;
    },
    signal,
    stop,
  };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}
