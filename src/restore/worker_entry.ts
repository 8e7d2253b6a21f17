/**
 * Where the restore's decode Worker starts, and the name it runs under. Kept apart from `parallel.ts` so that
 * `main.ts` can tell it is the Worker without loading the decoder first.
 *
 * @module
 */

/** The name a decode Worker runs under: `main.ts` started under it runs the decoder instead of the CLI. */
export const DECODE_WORKER_NAME = "walrust-restore-decoder";

/**
 * The module a decode Worker starts from, given the URL of the module that spawns it (`parallel.ts`). Run from
 * source, and in a `deno compile` executable (which keeps module paths), that is `worker.ts` beside it. In a
 * bundle every module is the one bundle file, and `worker.ts` does not exist: the Worker then starts the
 * bundle itself, under {@link DECODE_WORKER_NAME}.
 */
export function decodeWorkerEntry(spawnerUrl: string): string {
  return spawnerUrl.endsWith("/parallel.ts") ? new URL("./worker.ts", spawnerUrl).href : spawnerUrl;
}

/** Whether this thread is a decode Worker (its global `name` is {@link DECODE_WORKER_NAME}). */
export function isDecodeWorker(): boolean {
  return (globalThis as { name?: unknown }).name === DECODE_WORKER_NAME;
}

/**
 * The file a read permission must cover for the Worker at `entry` to load, or null when none is needed: a
 * module embedded in a `deno compile` executable (under its virtual `…/deno-compile-<name>/` root) or one
 * that is not a local file.
 */
export function decodeWorkerFile(entry: string): string | null {
  if (!entry.startsWith("file:")) return null;
  const path = decodeURIComponent(new URL(entry).pathname);
  return /\/deno-compile-[^/]+\//.test(path) ? null : path;
}
