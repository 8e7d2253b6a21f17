/**
 * `walrust verify` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `verify` command. */
export const verifyCommand: Command = {
  name: "verify",
  summary: "(not implemented yet)",
  help: "Usage: walrust verify\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust verify is not implemented yet"));
  },
};
