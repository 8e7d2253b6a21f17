/**
 * The command registry: one line per subcommand, in the order `walrust --help` lists them.
 *
 * @module
 */

import type { Command } from "./command.ts";
import { watchCommand } from "./watch.ts";
import { snapshotCommand } from "./snapshot.ts";
import { restoreCommand } from "./restore.ts";
import { listCommand } from "./list.ts";
import { verifyCommand } from "./verify.ts";
import { compactCommand } from "./compact.ts";
import { replicateCommand } from "./replicate.ts";
import { explainCommand } from "./explain.ts";
import { ltxCommand } from "./ltx.ts";
import { demoCommand } from "./demo.ts";

/** Every subcommand. */
export const COMMANDS: readonly Command[] = [
  watchCommand,
  snapshotCommand,
  restoreCommand,
  listCommand,
  verifyCommand,
  compactCommand,
  replicateCommand,
  explainCommand,
  ltxCommand,
  demoCommand,
];
