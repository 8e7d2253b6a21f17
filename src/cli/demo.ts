/**
 * `walrust demo` (not implemented yet).
 *
 * @module
 */

import type { Command } from "./command.ts";
import { UsageError } from "../errors.ts";

/** The `demo` command. */
export const demoCommand: Command = {
  name: "demo",
  summary: "(not implemented yet)",
  help: "Usage: walrust demo\n\n(not implemented yet)",
  run() {
    return Promise.reject(new UsageError("walrust demo is not implemented yet"));
  },
};
