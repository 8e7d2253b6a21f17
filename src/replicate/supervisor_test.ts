/**
 * The supervisor: several databases in one process, each on its own loops. A database whose replica hangs
 * forever must not hold up another one.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type DatabaseSettings, DEFAULTS, type WatchSettings } from "../config/types.ts";
import { DatabaseError } from "../errors.ts";
import { EventBus } from "../observe/events.ts";
import { configureLogging } from "../observe/log.ts";
import { FileObjectStore } from "../storage/file.ts";
import type { ObjectStore, PutOptions } from "../storage/object_store.ts";
import { MAX_CONCURRENT_HOOKS, Supervisor } from "./supervisor.ts";
import { waitUntil } from "./testing.ts";

configureLogging({ level: "error" });

function dbSettings(dir: string, name: string): DatabaseSettings {
  return {
    path: `${dir}/${name}.db`,
    name,
    replica: { url: `${dir}/replica` },
    syncIntervalMs: 30,
    snapshotIntervalMs: DEFAULTS.snapshotIntervalMs,
    checkpointIntervalMs: DEFAULTS.checkpointIntervalMs,
    minCheckpointPages: DEFAULTS.minCheckpointPages,
    truncatePages: DEFAULTS.truncatePages,
    queueDir: `${dir}/.${name}.db-walrust`,
    queueMaxBytes: DEFAULTS.queueMaxBytes,
    compactionIntervalsMs: [...DEFAULTS.compactionIntervalsMs],
    retention: { ...DEFAULTS.retention },
    validationIntervalMs: 0,
    retry: { ...DEFAULTS.retry },
  };
}

/** A file store whose LTX writes never complete (a hung replica). */
class HangingStore extends FileObjectStore {
  override put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    if (key.endsWith(".ltx")) return new Promise(() => {});
    return super.put(key, body, options);
  }
}

Deno.test("supervisor: a database whose replica hangs does not hold up another one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-sup-test-" });
  const apps: DatabaseSync[] = [];
  try {
    for (const name of ["slow", "fast"]) {
      const db = new DatabaseSync(`${dir}/${name}.db`);
      db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (x)");
      apps.push(db);
    }
    const settings: WatchSettings = {
      databases: [dbSettings(dir, "slow"), dbSettings(dir, "fast")],
      metricsAddr: null,
      webhooks: [],
      shutdownTimeoutMs: 100,
    };
    const stores: ObjectStore[] = [];
    const sup = new Supervisor(settings, new EventBus(), {
      openStore: (db) => {
        const s = db.name === "slow"
          ? new HangingStore(`${dir}/replica`)
          : new FileObjectStore(`${dir}/replica`);
        stores.push(s);
        return s;
      },
    });
    await sup.start();
    const [slow, fast] = sup.replicators;
    for (let i = 0; i < 3; i++) {
      for (const db of apps) db.exec(`INSERT INTO t VALUES (${i})`);
      const target = fast.txid + 1;
      await waitUntil(() => fast.replicatedTxid >= target, 5000, "the fast database to replicate");
    }
    assert.ok(slow.txid >= 1, "the slow database still reads its WAL");
    assert.equal(slow.replicatedTxid, 0, "nothing of the slow database reached its replica");
    const statuses = sup.statuses();
    assert.deepEqual(statuses.map((s) => s.name), ["slow", "fast"]);
    assert.ok(statuses[0].queueFiles >= 1);
    const { pending } = await sup.stop(100);
    assert.ok(pending >= 1, "the slow database's files are left queued (shipped on the next start)");
  } finally {
    for (const db of apps) db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervisor: start fails with the first database error and stops the others", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-sup-test-" });
  try {
    const ok = new DatabaseSync(`${dir}/ok.db`);
    ok.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (x)");
    ok.close();
    const settings: WatchSettings = {
      databases: [dbSettings(dir, "ok"), dbSettings(dir, "missing")],
      metricsAddr: null,
      webhooks: [],
      shutdownTimeoutMs: 100,
    };
    const sup = new Supervisor(settings, new EventBus());
    await assert.rejects(() => sup.start(), DatabaseError);
    assert.equal(sup.statuses()[0].state, "stopped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervisor: compaction hooks take turns: every database once per round, at most MAX_CONCURRENT_HOOKS at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-sup-test-" });
  const names = ["a", "b", "c", "d", "e", "f"];
  const settings: WatchSettings = {
    databases: names.map((n) => dbSettings(dir, n)),
    metricsAddr: null,
    webhooks: [],
    shutdownTimeoutMs: 100,
  };
  // Not started: the hook schedule does not need running replicators.
  const sup = new Supervisor(settings, new EventBus());
  const calls: string[] = [];
  let running = 0;
  let peak = 0;
  try {
    sup.setCompactionHook(async (db) => {
      calls.push(db.name);
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, 25)); // longer than a slot (60 ms / 6 databases)
      running--;
    }, 60);
    await waitUntil(() => calls.length >= 2 * names.length, 10_000, "two rounds of hooks");
  } finally {
    await sup.stop(0);
  }
  assert.ok(peak <= MAX_CONCURRENT_HOOKS, `at most ${MAX_CONCURRENT_HOOKS} at once (saw ${peak})`);
  assert.deepEqual(calls.slice(0, names.length), names, "round robin, in configuration order");
  assert.deepEqual([...calls.slice(names.length, 2 * names.length)].sort(), names, "each one in every round");
  await Deno.remove(dir, { recursive: true });
});
