/**
 * `walrust explain` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `explain` command. */
export const explainCommand: Command = {
  name: "explain",
  summary: "(not implemented yet)",
  help: "Usage: walrust explain\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust explain is not implemented yet"));
  },
};
