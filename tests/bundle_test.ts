/**
 * The shipped artifact: `deno task bundle` output run by `deno run` with only the product's permissions, and the
 * `deno compile` executable when a Deno runtime (`DENORT_BIN`) is available to build it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { COMPILE_ARGS } from "../scripts/compile_args.ts";
import { PARALLEL_MIN_BYTES } from "../src/restore/parallel.ts";
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

/** `deno run` of the bundle `js` with only the product's permissions (a command prefix). */
function bundleCommand(js: string): string[] {
  return [Deno.execPath(), "run", "--quiet", "--no-config", ...PRODUCT_PERMISSIONS, js];
}

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

Deno.test("deno task compile and the walrust launcher pass the release arguments (scripts/compile_args.ts)", async () => {
  const task: string = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks.compile;
  assert.ok(task.startsWith("deno compile "), task);
  const args = task.split(/\s+/);
  for (let i = 0; i < COMPILE_ARGS.length; i++) {
    assert.ok(args.includes(COMPILE_ARGS[i]), `deno.json's compile task lacks ${COMPILE_ARGS[i]}`);
  }
  assert.ok(args.includes("--include") && args[args.indexOf("--include") + 1] === "src/restore/worker.ts");
  // The source launcher runs with the release binary's V8 flags (what the benchmarks measure).
  const v8 = COMPILE_ARGS.find((a) => a.startsWith("--v8-flags="));
  assert.ok(v8);
  assert.ok((await Deno.readTextFile(`${ROOT}/walrust`)).includes(`${v8} `), `walrust launcher lacks ${v8}`);
});

Deno.test("bundle: runs from another directory with only the product permissions", async () => {
  const [bundleCmd, ...bundlePre] = bundleCommand(await bundle());
  const cwd = await Deno.makeTempDir();
  try {
    const v = await run(bundleCmd, [...bundlePre, "--version"], {
      cwd,
    });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^walrust \d+\.\d+\.\d+/);
    const h = await run(bundleCmd, [...bundlePre, "--help"], {
      cwd,
    });
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /Commands:/);
    const bad = await run(bundleCmd, [...bundlePre, "nope"], {
      cwd,
    });
    assert.equal(bad.code, 2);
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("bundle: runs the main job (walrust demo) with only the product permissions", async () => {
  const [bundleCmd, ...bundlePre] = bundleCommand(await bundle());
  const dir = await Deno.makeTempDir();
  try {
    const r = await run(bundleCmd, [...bundlePre, "demo", "--dir", dir, "--transactions", "60"], {
      cwd: dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /match: source and restored databases are identical/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/**
 * Snapshots a database larger than {@link PARALLEL_MIN_BYTES} with `walrust` (the command prefix given) and
 * restores it: the restore must decode on two threads (its decode Worker starts from the shipped artifact,
 * with no load error on stderr) and give back the same bytes.
 */
async function assertLargeRestoreUsesWorker(walrust: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-large-restore-" });
  try {
    const src = `${dir}/big.db`;
    const db = new DatabaseSync(src);
    db.exec("PRAGMA journal_mode=WAL; CREATE TABLE t (b BLOB)");
    // One incompressible 3000-byte row a page: the snapshot LTX file is about 3 KiB a row.
    const rows = Math.ceil((PARALLEL_MIN_BYTES + (4 << 20)) / 3000);
    db.prepare(
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) INSERT INTO t SELECT randomblob(3000) FROM c",
    ).run(rows);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.close();
    const [cmd, ...pre] = walrust;
    const snap = await run(cmd, [...pre, "snapshot", src, "-b", `${dir}/replica`], { cwd: dir });
    assert.equal(snap.code, 0, snap.stderr);
    const out = `${dir}/restored.db`;
    const r = await run(cmd, [
      ...pre,
      "restore",
      "big",
      "-o",
      out,
      "-b",
      `${dir}/replica`,
      "--log-level",
      "debug",
    ], {
      cwd: dir,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Uncaught|not found/i);
    assert.match(r.stderr, /parallel snapshot decode/);
    assert.doesNotMatch(r.stderr, /parallel snapshot decode.*worker=|declined/);
    // Checkpointed at the snapshot's TXID, the source is the same file byte for byte.
    const check = new DatabaseSync(src);
    check.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    check.close();
    assert.equal(await sha256File(out), await sha256File(src));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("bundle: a large restore decodes on two threads (the bundle starts itself as the decode Worker)", async () => {
  await assertLargeRestoreUsesWorker(bundleCommand(await bundle()));
});

const denort = Deno.env.get("DENORT_BIN");
Deno.test({
  name: denort
    ? "compiled binary: deno compile with DENORT_BIN builds an executable that runs and restores on two threads"
    : "compiled binary: SKIPPED — DENORT_BIN is not set (deno compile needs Deno's runtime download, unreachable here)",
  ignore: !denort,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const c = await run(Deno.execPath(), [
        "compile",
        "--quiet",
        ...COMPILE_ARGS,
        "-o",
        `${dir}/walrust`,
        `${ROOT}/main.ts`,
      ], { cwd: ROOT, env: { DENORT_BIN: denort! } });
      assert.equal(c.code, 0, c.stderr);
      const v = await run(`${dir}/walrust`, ["--version"], { cwd: dir });
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, /^walrust /);
      await assertLargeRestoreUsesWorker([`${dir}/walrust`]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

globalThis.addEventListener("unload", () => {
  if (bundleDir) Deno.removeSync(bundleDir, { recursive: true });
});
