/**
 * `walrust replicate` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `replicate` command. */
export const replicateCommand: Command = {
  name: "replicate",
  summary: "(not implemented yet)",
  help: "Usage: walrust replicate\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust replicate is not implemented yet"));
  },
};
