/**
 * `walrust watch`: continuous replication of one or more databases in one process, until SIGTERM/SIGINT
 * (or until the `--exec` command exits).
 *
 * Shutdown: a final sync per database, then up to `--shutdown-timeout` for the queues to reach the replica;
 * the lease, read lock and local lock are released. Exit 0 when everything was shipped; otherwise the number
 * of files left is printed and the exit code is 130 (nothing is lost: they ship on the next start).
 *
 * @module
 */

import { type Command, parseCommandArgs } from "./command.ts";
import type { CliIO } from "./command.ts";
import { REPLICA_HELP, resolveWatchSettings, WATCH_HELP, WATCH_OPTIONS } from "../config/cli.ts";
import type { WatchSettings } from "../config/types.ts";
import { errorClassOf, ExitCode, InterruptedError, messageOf, WalrustError } from "../errors.ts";
import { EventBus } from "../observe/events.ts";
import { log } from "../observe/log.ts";
import { startObserveServer } from "../observe/server.ts";
import { startWebhooks } from "../observe/webhooks.ts";
import { Supervisor, type SupervisorOptions } from "../replicate/supervisor.ts";
import { type ChildHandle, parseCommand, startChild } from "../replicate/exec.ts";
import type { DbReplicator } from "../replicate/db.ts";
import { COMPACTION_HOOK_INTERVAL_MS, createCompactionHook } from "../retention/maintenance.ts";
import { verifyReplica } from "../verify/verify.ts";

const HELP = `Usage: walrust watch <db>... -b <replica-url> [options]
       walrust watch --config walrust.toml

Replicates SQLite databases (WAL mode) continuously: every sync interval the newly committed WAL frames of
each database become one level-0 LTX file in a local queue (<db dir>/.<db file>-walrust/), and an uploader
ships the queue to the replica in Litestream v0.5's layout. Checkpoints, snapshots and the single-writer
lease are handled for you. Stop with SIGTERM or Ctrl-C: the queue is flushed first.

${REPLICA_HELP}

${WATCH_HELP}

Examples:
  walrust watch app.db -b s3://my-bucket/backups
  walrust watch a.db b.db -b /mnt/backup --sync-interval 250ms
  walrust watch --config walrust.toml --metrics-addr 0.0.0.0:16767

Exit codes: 0 clean shutdown, 3 database missing/not WAL, 4 credentials rejected, 11 another process
replicates the database, 130 stopped with files still queued locally (they ship on the next start).`;

/**
 * Serialises the maintenance work on each database's replica: the periodic `verify` and the compaction/retention
 * hook never overlap for one database, so a verify never lists a file that retention deletes before it is
 * downloaded (which would be reported as a missing file). Replication itself never waits on this.
 */
export class ReplicaMaintenanceLock {
  #tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier task of `db` settled. */
  run<T>(db: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(db) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.#tails.set(db, tail);
    tail.then(() => {
      if (this.#tails.get(db) === tail) this.#tails.delete(db);
    });
    return next;
  }
}

/** The periodic validation of `watch`, returned by {@link startValidation}. */
export interface Validation {
  /** Stops the timers, aborts a verify in progress and waits for it (at most `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Runs `verifyReplica` for every database whose `validationIntervalMs` is above 0, `validationIntervalMs` after
 * the previous run ended (runs never pile up). It is off the hot path: it only reads the replica, on its own
 * timer, so syncing and uploading never wait for it. `verifyReplica` emits `verify` (metrics count it) and, on
 * failure, `verify_failed` and `corruption_detected` (webhooks deliver them). A verify that cannot run at all
 * (a bug, a local error) is reported as a failed validation too: silence would read as "backups are fine".
 */
export function startValidation(
  replicators: readonly DbReplicator[],
  bus: EventBus,
  lock: ReplicaMaintenanceLock = new ReplicaMaintenanceLock(),
): Validation {
  const abort = new AbortController();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const running = new Set<Promise<void>>();
  const schedule = (db: DbReplicator, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (abort.signal.aborted) return;
      const run = lock.run(db.name, async () => {
        if (abort.signal.aborted) return;
        try {
          // Two downloads at a time: validation shares the link with the uploader and must not crowd it out.
          await verifyReplica(db.client, { bus, signal: abort.signal, concurrency: 2 });
        } catch (err) {
          if (abort.signal.aborted) return; // shutting down: not a verdict on the backups
          const message = `${db.name}: verify could not run: ${messageOf(err)}`;
          const exitCode = err instanceof WalrustError ? err.exitCode : ExitCode.INTERNAL;
          log.error("validation failed", { db: db.name, error: messageOf(err), class: errorClassOf(err) });
          bus.emit({ type: "verify", db: db.name, ok: false, exitCode, message });
          bus.emit({ type: "verify_failed", db: db.name, exitCode, message });
        }
      }).finally(() => {
        running.delete(run);
        if (!abort.signal.aborted) schedule(db, ms);
      });
      running.add(run);
    }, ms);
    timers.add(t);
  };
  for (const db of replicators) {
    const ms = db.settings.validationIntervalMs;
    if (ms > 0) schedule(db, ms);
  }
  return {
    async stop(timeoutMs = 2000): Promise<void> {
      abort.abort(new InterruptedError("watch is stopping"));
      for (const t of timers) clearTimeout(t);
      timers.clear();
      if (running.size === 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...running]),
        new Promise((r) => (timer = setTimeout(r, timeoutMs))),
      ]);
      clearTimeout(timer);
    },
  };
}

/** What a running watch is waiting for: a signal, the --exec child, or a fatal error. */
type Outcome =
  | { kind: "signal"; signal: string }
  | { kind: "child"; code: number }
  | { kind: "fatal"; error: WalrustError };

/** Options of {@link runWatch} beyond the settings (tests inject these). */
export interface RunWatchOptions {
  /** Command to run once replicating (../replicate/exec.ts); watch stops when it exits, with its status. */
  exec?: string;
  /** Supervisor wiring (tests). */
  supervisor?: SupervisorOptions;
  /** Resolves to stop (tests; signals are always honoured too). */
  stop?: Promise<unknown>;
  /** Called once every database is replicating. */
  onStarted?: (sup: Supervisor) => void;
}

/** Runs `watch` with resolved settings; returns the exit code (or throws a typed error). */
export async function runWatch(
  settings: WatchSettings,
  io: CliIO,
  opts: RunWatchOptions = {},
): Promise<number> {
  if (settings.databases.length === 0) {
    io.stderr("walrust watch: no database to replicate (every configured glob matched nothing)\n");
    return 2;
  }
  if (opts.exec) parseCommand(opts.exec); // a malformed --exec is refused before anything starts
  const bus = new EventBus();
  const sup = new Supervisor(settings, bus, opts.supervisor);
  let signalled: (o: Outcome) => void = () => {};
  const signal = new Promise<Outcome>((resolve) => (signalled = resolve));
  const handlers: [Deno.Signal, () => void][] = [];
  let child: ChildHandle | null = null;
  // With --exec, signals go to the child (SIGHUP too); watch stops once the child exits.
  const sigs: Deno.Signal[] = opts.exec ? ["SIGTERM", "SIGINT", "SIGHUP"] : ["SIGTERM", "SIGINT"];
  for (const sig of sigs) {
    const h = () => {
      if (child && !child.exited) {
        log.info("forwarding signal to the --exec command", { signal: sig, pid: child.pid });
        child.signal(sig);
      } else if (sig !== "SIGHUP") signalled({ kind: "signal", signal: sig });
    };
    try {
      Deno.addSignalListener(sig, h);
      handlers.push([sig, h]);
    } catch { /* not supported here: tests stop through opts.stop */ }
  }
  opts.stop?.then(() => signalled({ kind: "signal", signal: "stop" }));
  const fatal = sup.fatal.then((error): Outcome => ({ kind: "fatal", error }));

  const hooks = startWebhooks(bus, settings.webhooks);
  let server: { addr: string; close(): Promise<void> } | null = null;
  let validation: Validation | null = null;
  let started = false;
  try {
    if (settings.metricsAddr) {
      server = await startObserveServer({ addr: settings.metricsAddr, bus, status: sup });
      log.info("metrics, health and dashboard", { addr: server.addr });
    }
    const starting = sup.start();
    starting.catch(() => {}); // a start cut short by a signal rejects after the race is decided
    const first = await Promise.race([
      starting.then((): Outcome | null => null),
      signal,
      fatal,
    ]);
    started = first === null;
    let outcome: Outcome;
    if (first !== null) {
      outcome = first;
    } else {
      log.info("watching", { databases: settings.databases.length });
      // Level compaction and GFS retention of every database's replica (src/retention/), and the periodic
      // verify (--validation-interval); the two never overlap on one database (see ReplicaMaintenanceLock).
      const maintenance = new ReplicaMaintenanceLock();
      const compact = createCompactionHook(bus);
      sup.setCompactionHook((db) => maintenance.run(db.name, () => compact(db)), COMPACTION_HOOK_INTERVAL_MS);
      validation = startValidation(sup.replicators, bus, maintenance);
      opts.onStarted?.(sup);
      const waits: Promise<Outcome>[] = [signal, fatal];
      if (opts.exec) {
        try {
          child = startChild(opts.exec);
          log.info("started the --exec command", { pid: child.pid, program: child.argv[0] });
          waits.push(child.status.then((code): Outcome => ({ kind: "child", code })));
        } catch (err) {
          if (!(err instanceof WalrustError)) throw err;
          waits.push(Promise.resolve({ kind: "fatal", error: err }));
        }
      }
      outcome = await Promise.race(waits);
    }
    if (outcome.kind === "signal") log.info("shutting down", { signal: outcome.signal });
    if (outcome.kind === "child") log.info("--exec command exited; shutting down", { code: outcome.code });
    if (child && outcome.kind !== "child") {
      await child.stop(settings.shutdownTimeoutMs);
    }
    // A verify in progress is abandoned first: it only reads, and the stores close with the supervisor.
    await validation?.stop();
    const { pending } = await sup.stop(started ? settings.shutdownTimeoutMs : 0);
    if (outcome.kind === "fatal") throw outcome.error;
    if (pending > 0) {
      throw new InterruptedError(
        `stopped with ${pending} file(s) still in the local queue; nothing is lost, they are uploaded on the ` +
          `next start`,
      );
    }
    if (!started) throw new InterruptedError("interrupted while starting");
    return outcome.kind === "child" ? outcome.code : 0;
  } finally {
    await validation?.stop(0);
    for (const [sig, h] of handlers) {
      try {
        Deno.removeSignalListener(sig, h);
      } catch { /* ignore */ }
    }
    await server?.close().catch((err) =>
      log.warn("closing the metrics server failed", { error: messageOf(err) })
    );
    await hooks.close().catch(() => {});
  }
}

/** The `watch` command. */
export const watchCommand: Command = {
  name: "watch",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("watch", args, WATCH_OPTIONS);
    const settings = await resolveWatchSettings(positionals, values, io);
    return await runWatch(settings, io, { exec: typeof values.exec === "string" ? values.exec : undefined });
  },
};
