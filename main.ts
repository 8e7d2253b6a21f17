/**
 * walrust: continuous, verifiable backup of SQLite databases to S3-compatible storage or a directory.
 *
 * Run with: deno run --allow-read --allow-write --allow-net --allow-env main.ts <command> ...
 *
 * @module
 */

import { runCli } from "./src/cli/main.ts";

if (import.meta.main) {
  const code = await runCli(Deno.args);
  Deno.exit(code);
}
