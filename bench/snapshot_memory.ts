/**
 * Memory of a snapshot of a large database: `walrust snapshot` (through the `walrust` launcher, the V8 flags
 * of a release build) of a database of incompressible rows, to a directory replica and to S3 (s3rver, a
 * multipart upload), sampling the process's peak resident memory (VmHWM). The snapshot, the full level-0 copy
 * a first run also writes and their uploads are streamed, so the peak should not grow with the database.
 *
 * Usage: deno run -A bench/snapshot_memory.ts [--mb 256] [--targets file,s3]
 * Writes bench/results/snapshot_memory.json and prints peak RSS and wall time per target.
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { startS3rver } from "../tests/support/s3rver.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "256" }, targets: { type: "string", default: "file,s3" } },
});
const mb = Number(values.mb);
const targets = values.targets!.split(",");

const dir = await Deno.makeTempDir({ prefix: "bench-snapmem-" });
const dbPath = `${dir}/big.db`;
{
  const db = new DatabaseSync(dbPath);
  db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
  const ins = db.prepare("INSERT INTO t(b) VALUES (?)");
  for (let done = 0; done < mb; done += 16) {
    db.exec("BEGIN");
    for (let i = 0; i < 16 * 256; i++) ins.run(crypto.getRandomValues(new Uint8Array(4000)));
    db.exec("COMMIT");
  }
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
}
const dbBytes = (await Deno.stat(dbPath)).size;
console.log(`database: ${(dbBytes / 1048576).toFixed(1)} MB`);

/** Runs the launcher with `args` and `env`; returns its peak RSS (MB) and wall seconds. */
async function measure(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ peakMB: number; s: number }> {
  const t = performance.now();
  const child = new Deno.Command(`${ROOT}/walrust`, { args, env, stdout: "null", stderr: "piped" }).spawn();
  let hwm = 0;
  const timer = setInterval(() => {
    try {
      const st = Deno.readTextFileSync(`/proc/${child.pid}/status`);
      hwm = Math.max(hwm, Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0));
    } catch { /* exited */ }
  }, 50);
  const out = await child.output();
  clearInterval(timer);
  if (!out.success) throw new Error(`walrust ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return { peakMB: hwm / 1024, s: (performance.now() - t) / 1000 };
}

const results: Record<string, { peakMB: number; s: number }> = {};
try {
  if (targets.includes("file")) {
    results.file = await measure(["snapshot", dbPath, "-b", `${dir}/replica`]);
  }
  if (targets.includes("s3")) {
    await Deno.remove(`${dir}/.big.db-walrust`, { recursive: true }).catch(() => {});
    const server = await startS3rver({ bucket: "snapmem" });
    try {
      results.s3 = await measure(["snapshot", dbPath, "-b", `s3://${server.bucket}/p`], {
        AWS_ENDPOINT_URL_S3: server.endpoint,
        AWS_ACCESS_KEY_ID: server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
        AWS_REGION: server.region,
      });
    } finally {
      await server.stop();
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
await Deno.writeTextFile(
  `${ROOT}/bench/results/snapshot_memory.json`,
  JSON.stringify({ databaseBytes: dbBytes, results, at: new Date() }, null, 2),
);
console.log("target   peak RSS MB   wall s");
for (const [k, v] of Object.entries(results)) {
  console.log(`${k.padEnd(8)} ${v.peakMB.toFixed(0).padStart(11)} ${v.s.toFixed(2).padStart(8)}`);
}
