/**
 * Test-facing name of the logical-state helpers (digest, integrity check, row counts); the implementation lives
 * in `src/sqlite/state.ts` because `walrust demo` uses it too.
 *
 * @module
 */
export * from "../../src/sqlite/state.ts";
