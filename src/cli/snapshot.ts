/**
 * `walrust snapshot` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `snapshot` command. */
export const snapshotCommand: Command = {
  name: "snapshot",
  summary: "(not implemented yet)",
  help: "Usage: walrust snapshot\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust snapshot is not implemented yet"));
  },
};
