/**
 * `walrust compact` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `compact` command. */
export const compactCommand: Command = {
  name: "compact",
  summary: "(not implemented yet)",
  help: "Usage: walrust compact\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust compact is not implemented yet"));
  },
};
