/**
 * `walrust demo`: the product's main job end to end on an embedded default, with nothing to configure.
 * It creates a demo database, replicates it to a local directory while writing to it (inserts, updates,
 * deletes, a blob larger than a page, a schema change), stops replication with a flush, restores the replica
 * into a new file and shows that the two databases hold the same data.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./command.ts";
import { CorruptionError, UsageError } from "../errors.ts";
import { type DatabaseSettings, DEFAULTS, type WatchSettings } from "../config/types.ts";
import { EventBus } from "../observe/events.ts";
import { Supervisor } from "../replicate/supervisor.ts";
import { openObjectStore } from "../storage/open.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { restoreDatabase } from "../restore/restore.ts";
import { databaseDigest, integrityCheck, tableCounts } from "../sqlite/state.ts";
import { parseIntFlag } from "./command.ts";

const HELP = `Usage: walrust demo [--dir <dir>] [--transactions <n>]

Runs the main job on an embedded default: creates <dir>/demo.db (WAL mode), replicates it to the local
directory <dir>/replica while committing transactions to it, stops replication (flushing the queue), restores
the replica to <dir>/restored.db and compares the two databases table by table.

Options:
      --dir <dir>           working directory (default: a new temporary directory, kept for inspection)
      --transactions <n>    transactions to commit while replicating (default 300)

Exit status 0 when the restored database matches the source, 7 when it does not.`;

/** The `demo` command. */
export const demoCommand: Command = {
  name: "demo",
  help: HELP,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs("demo", args, {
      dir: { type: "string" },
      transactions: { type: "string" },
    });
    if (positionals.length > 0) throw new UsageError(`walrust demo: unexpected argument '${positionals[0]}'`);
    const txCount = parseIntFlag("transactions", values.transactions, 1) ?? 300;
    const dir = values.dir ?? await Deno.makeTempDir({ prefix: "walrust-demo-" });
    await Deno.mkdir(dir, { recursive: true });
    const dbPath = `${dir}/demo.db`;
    const replicaDir = `${dir}/replica`;
    const restoredPath = `${dir}/restored.db`;
    for (const p of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`, restoredPath]) {
      await Deno.remove(p).catch(() => {});
    }
    await Deno.remove(replicaDir, { recursive: true }).catch(() => {});
    await Deno.remove(`${dir}/.demo.db-walrust`, { recursive: true }).catch(() => {});
    const say = (line: string) => io.stdout(line + "\n");

    say(`walrust demo in ${dir}`);
    const app = new DatabaseSync(dbPath, { timeout: 5000 });
    app.exec("PRAGMA journal_mode=WAL");
    app.exec(`CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
              CREATE TABLE events(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT, body BLOB);
              CREATE INDEX events_kind ON events(kind);`);
    const seed = app.prepare("INSERT INTO accounts(owner, balance) VALUES (?, ?)");
    app.exec("BEGIN");
    for (let i = 0; i < 100; i++) seed.run(`owner-${i}`, 1000);
    app.exec("COMMIT");
    say(`1. created demo.db (WAL mode) with 100 accounts`);

    const settings: DatabaseSettings = {
      path: dbPath,
      name: "demo",
      replica: { url: replicaDir },
      syncIntervalMs: 200,
      snapshotIntervalMs: DEFAULTS.snapshotIntervalMs,
      checkpointIntervalMs: DEFAULTS.checkpointIntervalMs,
      minCheckpointPages: DEFAULTS.minCheckpointPages,
      truncatePages: DEFAULTS.truncatePages,
      queueDir: `${dir}/.demo.db-walrust`,
      queueMaxBytes: DEFAULTS.queueMaxBytes,
      compactionIntervalsMs: [...DEFAULTS.compactionIntervalsMs],
      retention: { ...DEFAULTS.retention },
      validationIntervalMs: 0,
      retry: { ...DEFAULTS.retry },
    };
    const watch: WatchSettings = {
      databases: [settings],
      metricsAddr: null,
      webhooks: [],
      shutdownTimeoutMs: 10_000,
    };
    const bus = new EventBus();
    let uploads = 0;
    bus.subscribe((e) => {
      if (e.type === "upload") uploads++;
    });
    const supervisor = new Supervisor(watch, bus);
    await supervisor.start();
    say(`2. replicating to ${replicaDir} (sync every ${settings.syncIntervalMs} ms)`);

    const transfer = app.prepare(
      "UPDATE accounts SET balance = balance + ? WHERE id = ?",
    );
    const event = app.prepare("INSERT INTO events(at, kind, body) VALUES (?, ?, ?)");
    let rnd = 42;
    const next = (n: number) => (rnd = (rnd * 1103515245 + 12345) % 2147483648) % n;
    for (let i = 0; i < txCount; i++) {
      app.exec("BEGIN");
      const from = 1 + next(100), to = 1 + next(100), amount = 1 + next(50);
      transfer.run(-amount, from);
      transfer.run(amount, to);
      const big = i % 50 === 0;
      event.run(Date.now(), big ? "blob" : "transfer", new Uint8Array(big ? 10_000 : 16).fill(i % 251));
      if (i % 40 === 39) app.exec(`DELETE FROM events WHERE id % 7 = 0`);
      app.exec("COMMIT");
      if (i === Math.floor(txCount / 2)) app.exec("ALTER TABLE events ADD COLUMN note TEXT DEFAULT 'demo'");
      // Spread the writes over a few sync intervals so replication happens while the application writes.
      if (i % 4 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    say(
      `3. committed ${txCount} transactions (transfers, events, a blob larger than a page, deletes, ALTER TABLE)`,
    );

    // Wait until everything committed has reached the replica (or give up after 15 s).
    const deadline = Date.now() + 15_000;
    await new Promise((r) => setTimeout(r, settings.syncIntervalMs * 2));
    while (Date.now() < deadline) {
      const s = supervisor.statuses()[0];
      if (s.txid > 0 && s.replicatedTxid === s.txid && s.queueFiles === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const status = supervisor.statuses()[0];
    const { pending } = await supervisor.stop(10_000);
    app.close();
    say(
      `4. replica caught up at TXID ${status.replicatedTxid} (${uploads} uploads, ${pending} left in the queue)`,
    );

    const store = openObjectStore({ url: replicaDir });
    try {
      const result = await restoreDatabase(new ReplicaClient(store, "demo"), { output: restoredPath });
      say(`5. restored to ${restoredPath} at TXID ${result.txid}: integrity ${integrityCheck(restoredPath)}`);
    } finally {
      store.close();
    }

    const a = databaseDigest(dbPath), b = databaseDigest(restoredPath);
    const ca = tableCounts(dbPath), cb = tableCounts(restoredPath);
    for (const t of Object.keys(ca)) {
      say(
        `   ${t.padEnd(10)} source ${String(ca[t]).padStart(5)} rows   restored ${
          String(cb[t] ?? 0).padStart(5)
        } rows`,
      );
    }
    if (a !== b) {
      throw new CorruptionError(`the restored database differs from the source (digest ${b} vs ${a})`);
    }
    say(`6. match: source and restored databases are identical (sha256 ${a.slice(0, 16)}…)`);
    return 0;
  },
};
