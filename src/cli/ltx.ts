/**
 * `walrust ltx` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `ltx` command. */
export const ltxCommand: Command = {
  name: "ltx",
  summary: "(not implemented yet)",
  help: "Usage: walrust ltx\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust ltx is not implemented yet"));
  },
};
