/**
 * The `deno compile` arguments of the release executable, in one place: `scripts/compile_all.ts` and the
 * compiled-binary test use them, and a test checks that `deno task compile` (deno.json) passes the same.
 *
 * @module
 */

/** The product's permission flags: what the release binary bakes in and what users run the source with. */
export const PRODUCT_PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
];

/**
 * Permissions baked in (the product's), V8 flags for a small heap, and the restore's decode Worker, which
 * `deno compile` only embeds when told (`new Worker(url)` is not followed into the module graph).
 */
export const COMPILE_ARGS: readonly string[] = [
  "--frozen",
  ...PRODUCT_PERMISSIONS,
  "--v8-flags=--max-semi-space-size=1,--optimize-for-size,--no-memory-reducer",
  "--include",
  "src/restore/worker.ts",
];
