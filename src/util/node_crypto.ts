/**
 * `node:crypto`, imported on first use. The first import of a Node built-in of its weight starts Deno's Node
 * compatibility layer, 15–20 ms of start-up here; commands that never hash (a restore from a directory
 * replica, `list`) should not pay for it. The module is cached after the first call.
 *
 * @module
 */

let loading: Promise<typeof import("node:crypto")> | undefined;

/** The `node:crypto` module (imported by the first call). */
export function nodeCrypto(): Promise<typeof import("node:crypto")> {
  return loading ??= import("node:crypto");
}
