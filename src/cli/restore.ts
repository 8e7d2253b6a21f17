/**
 * `walrust restore` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `restore` command. */
export const restoreCommand: Command = {
  name: "restore",
  summary: "(not implemented yet)",
  help: "Usage: walrust restore\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust restore is not implemented yet"));
  },
};
