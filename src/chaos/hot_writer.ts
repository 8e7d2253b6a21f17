/**
 * The high-rate writer process of the chaos runner: commits the replayable transactions of `workload.ts` to
 * several databases round-robin, in bursts at a target rate separated by idle gaps, with SQLite's default
 * autocheckpoint left on (the setting under which Litestream v0.3 corrupted replicas, its issue #582) and
 * `synchronous=NORMAL` (what high-rate applications use; it is what makes thousands of commits/s possible).
 *
 * ```
 * deno run -A src/chaos/hot_writer.ts --seed N --rate TX_PER_S --burst-ms MS --idle-ms MS \
 *     [--page-size N] [--checkpoint-every N] <db>...
 * ```
 *
 * Each database gets `<db>.log` with one JSON line `{seq, commitTime, digest: null}` per commit (buffered,
 * flushed at every yield and on exit); `{"ready":true}` goes to stdout once every database is prepared and
 * `{"done":true,"commits":N}` at the end. SIGTERM/SIGINT stop it after the current transaction. With
 * `--checkpoint-every N`, every Nth transaction of a database is followed by an application
 * `PRAGMA wal_checkpoint(TRUNCATE)` (busy is fine: a reader may hold the WAL).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { applyHotTransaction, HOT_SCHEMA } from "./workload.ts";

const enc = new TextEncoder();

interface Target {
  path: string;
  db: DatabaseSync;
  seq: number;
  pageSize: number;
  log: Deno.FsFile;
  pending: string[];
}

function open(path: string, pageSize: number): Target {
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.exec(`PRAGMA page_size=${pageSize}`);
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("PRAGMA synchronous=NORMAL");
  db.exec(HOT_SCHEMA);
  const seq = Number((db.prepare("SELECT seq FROM writer_meta WHERE id = 1").get() as { seq: number }).seq);
  const ps = Number((db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size);
  const log = Deno.openSync(`${path}.log`, { append: true, create: true });
  const t: Target = { path, db, seq, pageSize: ps, log, pending: [] };
  if (seq === 0) t.pending.push(JSON.stringify({ seq: 0, commitTime: Date.now(), digest: null }));
  return t;
}

function flush(t: Target): void {
  if (t.pending.length === 0) return;
  const bytes = enc.encode(t.pending.join("\n") + "\n");
  t.pending = [];
  let off = 0;
  while (off < bytes.length) off += t.log.writeSync(bytes.subarray(off));
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      seed: { type: "string", default: "1" },
      rate: { type: "string", default: "2000" },
      "burst-ms": { type: "string", default: "500" },
      "idle-ms": { type: "string", default: "200" },
      "page-size": { type: "string", default: "4096" },
      "checkpoint-every": { type: "string", default: "0" },
    },
  });
  const seed = Number(values.seed);
  const rate = Number(values.rate);
  const burstMs = Number(values["burst-ms"]);
  const idleMs = Number(values["idle-ms"]);
  const ckptEvery = Number(values["checkpoint-every"]);
  const targets = positionals.map((p) => open(p, Number(values["page-size"])));
  const stop = { now: false };
  const onSignal = () => (stop.now = true);
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.stdout.writeSync(enc.encode(JSON.stringify({ ready: true }) + "\n"));
  let commits = 0;
  try {
    for (const t of targets) flush(t);
    let i = 0;
    while (!stop.now) {
      const burstStart = Date.now();
      let inBurst = 0;
      while (!stop.now && Date.now() - burstStart < burstMs) {
        // Commit as many as the rate allows so far, then yield (signals, flushing the logs).
        const due = Math.floor(((Date.now() - burstStart + 5) * rate) / 1000);
        for (let n = 0; n < 200 && inBurst < due && !stop.now; n++) {
          const t = targets[i++ % targets.length];
          applyHotTransaction(t.db, seed, t.seq + 1, t.pageSize);
          t.seq++;
          t.pending.push(JSON.stringify({ seq: t.seq, commitTime: Date.now(), digest: null }));
          if (ckptEvery > 0 && t.seq % ckptEvery === 0) {
            t.db.exec("PRAGMA busy_timeout=100");
            try {
              t.db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get();
            } catch {
              // SQLITE_BUSY: walrust holds its read lock; the application simply carries on.
            } finally {
              t.db.exec("PRAGMA busy_timeout=5000");
            }
          }
          inBurst++;
          commits++;
        }
        for (const t of targets) flush(t);
        await new Promise((r) => setTimeout(r, 1));
      }
      const idleUntil = Date.now() + idleMs;
      while (!stop.now && Date.now() < idleUntil) await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    for (const t of targets) {
      flush(t);
      t.log.close();
      t.db.close();
    }
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
  }
  Deno.stdout.writeSync(enc.encode(JSON.stringify({ done: true, commits }) + "\n"));
  return 0;
}

if (import.meta.main) Deno.exit(await main());
