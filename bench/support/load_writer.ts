/**
 * Load generator for the replication benchmark: commits single-row transactions to N databases at R
 * transactions per second each for D seconds. Each row stores its own commit time (ms), so a restored copy
 * tells how far behind the replica was. On exit it writes `{ db: rowsCommitted }` as JSON to `--out`.
 *
 * Usage: deno run -A bench/support/load_writer.ts --rate R --duration D --out counts.json db1 db2 ...
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { rate: { type: "string" }, duration: { type: "string" }, out: { type: "string" } },
  allowPositionals: true,
});
const rate = Number(values.rate ?? 10);
const durationMs = Number(values.duration ?? 10) * 1000;
const dbs = positionals.map((path) => {
  const db = new DatabaseSync(path, { timeout: 5000 });
  db.exec("PRAGMA journal_mode=WAL");
  db.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, payload TEXT NOT NULL)");
  return { path, db, insert: db.prepare("INSERT INTO t(ts, payload) VALUES (?, ?)"), count: 0 };
});

const payload = "x".repeat(200);
const start = performance.now();
const tickMs = 10;
let stop = false;
Deno.addSignalListener("SIGTERM", () => (stop = true));
while (!stop && performance.now() - start < durationMs) {
  const elapsed = performance.now() - start;
  const due = Math.floor((elapsed / 1000) * rate);
  for (const d of dbs) {
    while (d.count < due) {
      d.insert.run(Date.now(), payload);
      d.count++;
    }
  }
  await new Promise((r) => setTimeout(r, tickMs));
}
const counts: Record<string, number> = {};
for (const d of dbs) {
  counts[d.path] = d.count;
  d.db.close();
}
if (values.out) Deno.writeTextFileSync(values.out, JSON.stringify(counts));
