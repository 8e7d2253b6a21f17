/**
 * `walrust watch` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `watch` command. */
export const watchCommand: Command = {
  name: "watch",
  summary: "(not implemented yet)",
  help: "Usage: walrust watch\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust watch is not implemented yet"));
  },
};
