/**
 * The shipped artifact: `deno task bundle` output run by `deno run` with only the product's permissions, and the
 * `deno compile` executable when a Deno runtime (`DENORT_BIN`) is available to build it.
 */
import assert from "node:assert/strict";
import { PRODUCT_PERMISSIONS, ROOT } from "./support/cli.ts";

const dec = new TextDecoder();

async function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

let bundleDir: string | undefined;

/** Bundles main.ts once per test run (the same command as `deno task bundle`, into a temp dir). */
async function bundle(): Promise<string> {
  if (bundleDir) return `${bundleDir}/walrust.js`;
  bundleDir = await Deno.makeTempDir({ prefix: "walrust-bundle-" });
  const r = await run(Deno.execPath(), [
    "bundle",
    "--quiet",
    "--frozen",
    "--platform",
    "deno",
    "-o",
    `${bundleDir}/walrust.js`,
    `${ROOT}/main.ts`,
  ], { cwd: ROOT });
  assert.equal(r.code, 0, r.stderr);
  return `${bundleDir}/walrust.js`;
}

Deno.test("bundle: runs from another directory with only the product permissions", async () => {
  const js = await bundle();
  const cwd = await Deno.makeTempDir();
  try {
    const v = await run(Deno.execPath(), [
      "run",
      "--quiet",
      "--no-config",
      ...PRODUCT_PERMISSIONS,
      js,
      "--version",
    ], {
      cwd,
    });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^walrust \d+\.\d+\.\d+/);
    const h = await run(Deno.execPath(), [
      "run",
      "--quiet",
      "--no-config",
      ...PRODUCT_PERMISSIONS,
      js,
      "--help",
    ], {
      cwd,
    });
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /Commands:/);
    const bad = await run(Deno.execPath(), [
      "run",
      "--quiet",
      "--no-config",
      ...PRODUCT_PERMISSIONS,
      js,
      "nope",
    ], {
      cwd,
    });
    assert.equal(bad.code, 2);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("bundle: runs the main job (walrust demo) with only the product permissions", async () => {
  const js = await bundle();
  const dir = await Deno.makeTempDir();
  try {
    const r = await run(
      Deno.execPath(),
      [
        "run",
        "--quiet",
        "--no-config",
        ...PRODUCT_PERMISSIONS,
        js,
        "demo",
        "--dir",
        dir,
        "--transactions",
        "60",
      ],
      { cwd: dir },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /match: source and restored databases are identical/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const denort = Deno.env.get("DENORT_BIN");
Deno.test({
  name: denort
    ? "compiled binary: deno compile with DENORT_BIN builds an executable that runs"
    : "compiled binary: SKIPPED — DENORT_BIN is not set (deno compile needs Deno's runtime download, unreachable here)",
  ignore: !denort,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const c = await run(Deno.execPath(), [
        "compile",
        "--quiet",
        "--frozen",
        ...PRODUCT_PERMISSIONS,
        "-o",
        `${dir}/walrust`,
        `${ROOT}/main.ts`,
      ], { cwd: ROOT, env: { DENORT_BIN: denort! } });
      assert.equal(c.code, 0, c.stderr);
      const v = await run(`${dir}/walrust`, ["--version"], { cwd: dir });
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, /^walrust /);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

globalThis.addEventListener("unload", () => {
  if (bundleDir) Deno.removeSync(bundleDir, { recursive: true });
});
