/**
 * `walrust list` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `list` command. */
export const listCommand: Command = {
  name: "list",
  summary: "(not implemented yet)",
  help: "Usage: walrust list\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust list is not implemented yet"));
  },
};
