/**
 * walrust: continuous, verifiable backup of SQLite databases to S3-compatible storage or a directory.
 *
 * Run with: deno run --allow-read --allow-write --allow-net --allow-env main.ts <command> ...
 *
 * @module
 */

import { runCli } from "./src/cli/main.ts";
import { isDecodeWorker } from "./src/restore/worker_entry.ts";

if (isDecodeWorker()) {
  // A bundle's restore starts its decode Worker from this same file (src/restore/worker_entry.ts).
  await import("./src/restore/worker.ts");
} else if (import.meta.main) {
  const code = await runCli(Deno.args);
  Deno.exit(code);
}
