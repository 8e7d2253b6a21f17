/**
 * Bad-input catalogue: for every command, the inputs users get wrong — missing / non-SQLite / non-WAL
 * databases, read-only directories, invalid URLs, unknown schemes, an unreachable endpoint, wrong credentials,
 * a missing bucket, invalid TOML (line and column), unknown keys, zero or negative intervals, colliding names,
 * an existing output, a missing or read-only output directory, a full disk, a TXID or time before the first
 * backup. Each case checks: exactly one line on stderr naming the thing and what to do, the documented exit
 * code (`src/errors.ts`), and that nothing was written or changed (the working directory tree — database
 * bytes, replica, output directory — is byte-identical before and after).
 *
 * Read-only directories and full disks are real: small tmpfs mounts (`mount -t tmpfs -o size=…`, remounted
 * `ro`), because root ignores file modes. Where mounting is not allowed the test says so in its name.
 * `watch` and `snapshot` run as subprocesses (they take locks and open databases); the rest in-process.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createHash } from "node:crypto";
import { type CliResult, runInProcess, runProcess, spawnProcess } from "./support/cli.ts";
import { type S3rver, startS3rver } from "./support/s3rver.ts";
import { databaseDigest, integrityCheck } from "./support/sqlite_state.ts";
import { configureLogging } from "../src/observe/log.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";

configureLogging({ level: "error" });

// ---- helpers ------------------------------------------------------------------------------------------

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Every file and directory under `root` (symlinks not followed): relative path → sha256 or "dir". */
async function tree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) {
        out[r] = "dir";
        await walk(p, r);
      } else if (e.isFile) {
        out[r] = sha256(await Deno.readFile(p));
      } else out[r] = "other";
    }
  };
  await walk(root, "");
  return out;
}

/** Runs `fn` in a fresh temp dir that holds `app.db` (WAL mode, some rows) and removes it afterwards. */
async function withWorkdir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-bad-input-" });
  try {
    makeDb(`${dir}/app.db`, "wal");
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function makeDb(path: string, mode: "wal" | "delete", blobBytes = 20_000): void {
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA journal_mode=${mode}`);
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)");
    db.prepare("INSERT INTO t (b) VALUES (randomblob(?))").run(blobBytes);
  } finally {
    db.close();
  }
}

/** A replica of `app` in `<dir>/replica`: L9 1-4 and L0 5…8 (times from 2025-01-01 12:00:00 UTC, 1 s apart). */
async function makeReplica(dir: string): Promise<string> {
  const h = sampleHistory(dir, 8);
  const url = `${dir}/replica`;
  const client = new ReplicaClient(new FileObjectStore(url), "app");
  await putLtx(client, h, 9, 1, 4);
  await putL0Range(client, h, 5, 8);
  return url;
}

/**
 * Checks the result: exit `code`, exactly one stderr line that matches every pattern, nothing on stdout
 * (for failures), and the tree of `dir` unchanged.
 */
async function expectOneLine(
  r: CliResult,
  code: number,
  patterns: RegExp[],
  before: Record<string, string> | null,
  dir: string | null,
): Promise<void> {
  const ctx = `exit ${r.code}\nstderr: ${r.stderr}\nstdout: ${r.stdout}`;
  assert.equal(r.code, code, ctx);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `expected exactly one stderr line:\n${ctx}`);
  assert.match(lines[0], /^walrust: /, ctx);
  for (const p of patterns) assert.match(lines[0], p, ctx);
  if (before && dir) assert.deepEqual(await tree(dir), before, `something was written or changed:\n${ctx}`);
}

/** Case runner: snapshot of `dir`, run, checks. */
async function check(
  dir: string,
  run: () => Promise<CliResult>,
  code: number,
  patterns: RegExp[],
): Promise<void> {
  const before = await tree(dir);
  await expectOneLine(await run(), code, patterns, before, dir);
}

/** A port on 127.0.0.1 with nothing listening. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

let mountable: boolean | null = null;
/** Whether tmpfs can be mounted here (root in a container that allows it). */
async function canMount(): Promise<boolean> {
  if (mountable !== null) return mountable;
  const dir = await Deno.makeTempDir({ prefix: "walrust-mount-probe-" });
  try {
    const r = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
      stderr: "null",
    })
      .output();
    mountable = r.success;
    if (r.success) await umount(dir);
  } catch {
    mountable = false;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return mountable;
}

async function mountTmpfs(dir: string, size: string): Promise<void> {
  const r = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir] })
    .output();
  assert.ok(r.success, new TextDecoder().decode(r.stderr));
}

async function remount(dir: string, opts: string): Promise<void> {
  const r = await new Deno.Command("mount", { args: ["-o", `remount,${opts}`, dir] }).output();
  assert.ok(r.success, new TextDecoder().decode(r.stderr));
}

/** Unmounts `dir`, retrying while a just-killed child still holds it, then lazily as a last resort. */
async function umount(dir: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if ((await new Deno.Command("umount", { args: [dir], stderr: "null" }).output()).success) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Deno.Command("umount", { args: ["-l", dir], stderr: "null" }).output();
}

const MOUNT = await canMount();
const mountName = (name: string) => MOUNT ? name : `${name} (ignore: cannot mount tmpfs here)`;

/** One s3rver shared by the S3 cases, started on first use and stopped by the last test of the file. */
let s3: S3rver | null = null;
async function s3rver(): Promise<S3rver> {
  s3 ??= await startS3rver();
  return s3;
}
const S3_TEST = { sanitizeResources: false, sanitizeOps: false };

function s3Env(s: S3rver, key: string = s.accessKeyId): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: key, AWS_SECRET_ACCESS_KEY: s.secretAccessKey, AWS_REGION: s.region };
}

// ---- databases: missing, not SQLite, not WAL, read-only directory ----------------------------------------

Deno.test("bad input: watch a missing database → exit 3, names it, creates nothing", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () => runProcess(["watch", `${dir}/nope.db`, "-b", `${dir}/replica`, "--no-metrics"]),
      3,
      [
        /nope\.db does not exist/,
        /check the path/,
      ],
    );
  });
});

Deno.test("bad input: watch a file that is not SQLite → exit 3", async () => {
  await withWorkdir(async (dir) => {
    await Deno.writeTextFile(`${dir}/junk.db`, "this is not a database ".repeat(20));
    await check(
      dir,
      () => runProcess(["watch", `${dir}/junk.db`, "-b", `${dir}/replica`, "--no-metrics"]),
      3,
      [
        /junk\.db is not a SQLite database/,
      ],
    );
  });
});

Deno.test("bad input: watch a database not in WAL mode → exit 3, tells how to switch, does not switch it", async () => {
  await withWorkdir(async (dir) => {
    makeDb(`${dir}/del.db`, "delete");
    await check(
      dir,
      () => runProcess(["watch", `${dir}/del.db`, "-b", `${dir}/replica`, "--no-metrics"]),
      3,
      [
        /del\.db is not in WAL mode/,
        /journal_mode=WAL/,
      ],
    );
  });
});

Deno.test("bad input: snapshot a missing database → exit 3", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runProcess(["snapshot", `${dir}/gone.db`, "-b", `${dir}/replica`]), 3, [
      /gone\.db does not exist/,
    ]);
  });
});

Deno.test("bad input: snapshot a non-WAL database → exit 3", async () => {
  await withWorkdir(async (dir) => {
    makeDb(`${dir}/del.db`, "delete");
    await check(dir, () => runProcess(["snapshot", `${dir}/del.db`, "-b", `${dir}/replica`]), 3, [
      /not in WAL mode/,
    ]);
  });
});

Deno.test({
  name: mountName("bad input: watch a database in a read-only directory → exit 12 naming the directory"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir(async (dir) => {
      const ro = `${dir}/ro`;
      await Deno.mkdir(ro);
      await mountTmpfs(ro, "4m");
      try {
        await Deno.copyFile(`${dir}/app.db`, `${ro}/app.db`);
        await remount(ro, "ro");
        await check(
          dir,
          () => runProcess(["watch", `${ro}/app.db`, "-b", `${dir}/replica`, "--no-metrics"]),
          12,
          [
            /ro\/\.app\.db-walrust/,
            /read-only file system/,
          ],
        );
      } finally {
        await umount(ro);
      }
    });
  },
});

Deno.test({
  name: mountName("bad input: snapshot with a read-only database directory → exit 12"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir(async (dir) => {
      const ro = `${dir}/ro`;
      await Deno.mkdir(ro);
      await mountTmpfs(ro, "4m");
      try {
        await Deno.copyFile(`${dir}/app.db`, `${ro}/app.db`);
        await remount(ro, "ro");
        await check(dir, () => runProcess(["snapshot", `${ro}/app.db`, "-b", `${dir}/replica`]), 12, [
          /read-only file system/,
        ]);
      } finally {
        await umount(ro);
      }
    });
  },
});

// ---- replica URLs -------------------------------------------------------------------------------------

Deno.test("bad input: restore with an invalid S3 URL (no bucket) → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", "s3://"]), 2, [
      /s3:\/\//,
    ]);
  });
});

Deno.test("bad input: restore with an unknown scheme → exit 2 naming it", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", "ftp://host/x"]), 2, [
      /ftp/,
    ]);
  });
});

Deno.test("bad input: list with an unknown scheme → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["list", "-b", "gcs://bucket/x"]), 2, [/gcs/]);
  });
});

Deno.test("bad input: verify with an unknown scheme → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["verify", "app", "-b", "azure://c/x"]), 2, [/azure/]);
  });
});

Deno.test("bad input: watch with an unknown scheme → exit 2, nothing created beside the database", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runProcess(["watch", `${dir}/app.db`, "-b", "webdav://h/x", "--no-metrics"]), 2, [
      /webdav/,
    ]);
  });
});

Deno.test("bad input: list without any replica → exit 2 telling where to set one", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["list"], { WALRUST_REPLICA_URL: "" }), 2, [/-b\/--bucket/]);
  });
});

// ---- unreachable endpoint, wrong credentials, missing bucket ------------------------------------------

Deno.test("bad input: restore from an unreachable endpoint → exit 5", async () => {
  await withWorkdir(async (dir) => {
    const ep = `http://127.0.0.1:${closedPort()}`;
    await check(
      dir,
      () =>
        runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", "s3://b/p", "--endpoint", ep], {
          AWS_ACCESS_KEY_ID: "k",
          AWS_SECRET_ACCESS_KEY: "s",
        }),
      5,
      [/127\.0\.0\.1|unreachable|connect/i],
    );
  });
});

Deno.test("bad input: list from an unreachable endpoint → exit 5", async () => {
  await withWorkdir(async (dir) => {
    const ep = `http://127.0.0.1:${closedPort()}`;
    await check(
      dir,
      () =>
        runInProcess(["list", "-b", "s3://b/p", "--endpoint", ep], {
          AWS_ACCESS_KEY_ID: "k",
          AWS_SECRET_ACCESS_KEY: "s",
        }),
      5,
      [/127\.0\.0\.1|unreachable|connect/i],
    );
  });
});

Deno.test("bad input: verify against an unreachable endpoint → exit 5", async () => {
  await withWorkdir(async (dir) => {
    const ep = `http://127.0.0.1:${closedPort()}`;
    const before = await tree(dir);
    const r = await runInProcess(["verify", "app", "-b", "s3://b/p", "--endpoint", ep], {
      AWS_ACCESS_KEY_ID: "k",
      AWS_SECRET_ACCESS_KEY: "s",
    });
    // verify prints its report on stdout; the one stderr line is the verdict.
    await expectOneLine({ ...r, stdout: "" }, 5, [/127\.0\.0\.1|unreachable|connect/i], before, dir);
  });
});

Deno.test({
  name: "bad input: restore with wrong credentials → exit 4, nothing written",
  ...S3_TEST,
  async fn() {
    const s = await s3rver();
    await withWorkdir(async (dir) => {
      await check(
        dir,
        () =>
          runInProcess(
            ["restore", "app", "-o", `${dir}/out.db`, "-b", `s3://${s.bucket}/x`, "--endpoint", s.endpoint],
            s3Env(s, "WRONGKEY"),
          ),
        4,
        [/credential|access key|denied|auth/i],
      );
    });
  },
});

Deno.test({
  name: "bad input: list with wrong credentials → exit 4",
  ...S3_TEST,
  async fn() {
    const s = await s3rver();
    await withWorkdir(async (dir) => {
      await check(
        dir,
        () =>
          runInProcess(["list", "-b", `s3://${s.bucket}/x`, "--endpoint", s.endpoint], s3Env(s, "WRONGKEY")),
        4,
        [/credential|access key|denied|auth/i],
      );
    });
  },
});

Deno.test({
  name: "bad input: watch with wrong credentials → exit 4, the database file and the replica untouched",
  ...S3_TEST,
  async fn() {
    const s = await s3rver();
    await withWorkdir(async (dir) => {
      const db = sha256(await Deno.readFile(`${dir}/app.db`));
      const before = await tree(s.dir);
      const r = await runProcess(
        ["watch", `${dir}/app.db`, "-b", `s3://${s.bucket}/wc`, "--endpoint", s.endpoint, "--no-metrics"],
        { env: s3Env(s, "WRONGKEY") },
      );
      const errs = r.stderr.split("\n").filter((l) => l.startsWith("walrust: "));
      assert.equal(r.code, 4, r.stderr);
      assert.equal(errs.length, 1, r.stderr);
      assert.match(errs[0], /credential|access key|denied|auth/i);
      assert.equal(sha256(await Deno.readFile(`${dir}/app.db`)), db, "the database file changed");
      assert.deepEqual(await tree(s.dir), before);
      const queue = await tree(`${dir}/.app.db-walrust`).catch(() => ({}));
      assert.deepEqual(Object.keys(queue).filter((k) => k.endsWith(".ltx")), [], "no LTX file was queued");
    });
  },
});

Deno.test({
  name: "bad input: restore from a missing bucket → exit 6 naming the bucket",
  ...S3_TEST,
  async fn() {
    const s = await s3rver();
    await withWorkdir(async (dir) => {
      await check(
        dir,
        () =>
          runInProcess(
            [
              "restore",
              "app",
              "-o",
              `${dir}/out.db`,
              "-b",
              "s3://no-such-bucket/x",
              "--endpoint",
              s.endpoint,
            ],
            s3Env(s),
          ),
        6,
        [/no-such-bucket/],
      );
    });
  },
});

Deno.test({
  name: "bad input: verify a missing bucket → exit 6",
  ...S3_TEST,
  async fn() {
    const s = await s3rver();
    await withWorkdir(async (dir) => {
      const before = await tree(dir);
      const r = await runInProcess(
        ["verify", "app", "-b", "s3://no-such-bucket/x", "--endpoint", s.endpoint],
        s3Env(s),
      );
      await expectOneLine({ ...r, stdout: "" }, 6, [/no-such-bucket/], before, dir);
    });
  },
});

Deno.test("bad input: restore from a directory replica that does not exist → exit 10, nothing created", async () => {
  await withWorkdir(async (dir) => {
    // Reading a missing directory replica finds no backup (nothing to restore), and creates nothing.
    await check(
      dir,
      () => runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", `${dir}/no/such/dir`]),
      10,
      [
        /no backup of app/,
      ],
    );
  });
});

Deno.test({
  name: "bad input: stop the shared s3rver (cleanup of the S3 cases)",
  ...S3_TEST,
  async fn() {
    await s3?.stop();
    s3 = null;
  },
});

// ---- configuration ------------------------------------------------------------------------------------

Deno.test("bad input: invalid TOML → exit 2 with file, line and column", async () => {
  await withWorkdir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]\nurl = "${dir}/replica"\n[sync]\ninterval = = 1\n`,
    );
    await check(dir, () => runProcess(["watch", `${dir}/app.db`, "--config", `${dir}/walrust.toml`]), 2, [
      /walrust\.toml:4:\d+/,
    ]);
  });
});

Deno.test("bad input: unknown key in walrust.toml → exit 2 naming the key and its line", async () => {
  await withWorkdir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]\nurl = "${dir}/replica"\n\n[sync]\nintervall = "1s"\n`,
    );
    await check(dir, () => runInProcess(["explain", "--config", `${dir}/walrust.toml`]), 2, [
      /intervall/,
      /walrust\.toml:5/,
    ]);
  });
});

Deno.test("bad input: zero sync interval flag → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () =>
        runProcess([
          "watch",
          `${dir}/app.db`,
          "-b",
          `${dir}/replica`,
          "--sync-interval",
          "0",
          "--no-metrics",
        ]),
      2,
      [/--sync-interval/],
    );
  });
});

Deno.test("bad input: negative checkpoint interval flag → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () =>
        runProcess([
          "watch",
          `${dir}/app.db`,
          "-b",
          `${dir}/replica`,
          "--checkpoint-interval=-5s",
          "--no-metrics",
        ]),
      2,
      [/--checkpoint-interval/],
    );
  });
});

Deno.test("bad input: zero snapshot interval in walrust.toml → exit 2 with line and column", async () => {
  await withWorkdir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/walrust.toml`,
      `[replica]\nurl = "${dir}/replica"\n[sync]\nsnapshot_interval = "0s"\n`,
    );
    await check(dir, () => runProcess(["watch", `${dir}/app.db`, "--config", `${dir}/walrust.toml`]), 2, [
      /snapshot_interval/,
      /walrust\.toml:4/,
    ]);
  });
});

Deno.test("bad input: two databases with the same name → exit 2 naming both", async () => {
  await withWorkdir(async (dir) => {
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    makeDb(`${dir}/a/app.db`, "wal");
    makeDb(`${dir}/b/app.db`, "wal");
    await check(
      dir,
      () =>
        runProcess(["watch", `${dir}/a/app.db`, `${dir}/b/app.db`, "-b", `${dir}/replica`, "--no-metrics"]),
      2,
      [/a\/app\.db/, /b\/app\.db/, /name/],
    );
  });
});

Deno.test("bad input: unknown flag → exit 2 naming it and the command's help", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["restore", "app", "--frobnicate"]), 2, [/frobnicate/, /--help/]);
  });
});

// ---- restore targets and outputs ----------------------------------------------------------------------

Deno.test("bad input: restore to an output that exists → exit 11, the file untouched", async () => {
  await withWorkdir(async (dir) => {
    const url = await makeReplica(dir);
    await Deno.writeTextFile(`${dir}/out.db`, "mine");
    await check(dir, () => runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url]), 11, [
      /out\.db already exists/,
      /--force/,
    ]);
  });
});

Deno.test("bad input: restore into a path whose parent is a file → exit 12", async () => {
  await withWorkdir(async (dir) => {
    const url = await makeReplica(dir);
    await Deno.writeTextFile(`${dir}/plain`, "x");
    await check(dir, () => runInProcess(["restore", "app", "-o", `${dir}/plain/out.db`, "-b", url]), 12, [
      /plain/,
    ]);
  });
});

Deno.test({
  name: mountName("bad input: restore into a read-only output directory → exit 12, nothing left"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir(async (dir) => {
      const url = await makeReplica(dir);
      const ro = `${dir}/ro`;
      await Deno.mkdir(ro);
      await mountTmpfs(ro, "1m");
      try {
        await remount(ro, "ro");
        await check(dir, () => runInProcess(["restore", "app", "-o", `${ro}/out.db`, "-b", url]), 12, [
          /read-only file system/,
        ]);
      } finally {
        await umount(ro);
      }
    });
  },
});

Deno.test({
  name: mountName("bad input: disk full while restoring → exit 12, no partial output"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir(async (dir) => {
      const url = await makeReplica(dir);
      const small = `${dir}/small`;
      await Deno.mkdir(small);
      await mountTmpfs(small, "16k");
      try {
        await check(dir, () => runInProcess(["restore", "app", "-o", `${small}/out.db`, "-b", url]), 12, [
          /no space left on device/,
        ]);
        assert.deepEqual(await tree(small), {});
      } finally {
        await umount(small);
      }
    });
  },
});

/**
 * Runs `fn` with a 1.2 MB WAL database `big.db` on a 1600 KiB tmpfs at `<dir>/full`, then checks that the
 * database's content is unchanged and intact (walrust may have added its _walrust_seq table, as Litestream
 * adds _litestream_seq, but the user's data must be untouched).
 */
async function withBigDbOnFullDisk(dir: string, fn: (full: string) => Promise<void>): Promise<void> {
  const full = `${dir}/full`;
  await Deno.mkdir(full);
  await mountTmpfs(full, "1600k");
  try {
    makeDb(`${dir}/big.db`, "wal", 1_200_000);
    await Deno.copyFile(`${dir}/big.db`, `${full}/big.db`);
    const digest = databaseDigest(`${full}/big.db`);
    await fn(full);
    await Deno.remove(`${full}/filler`).catch(() => {});
    assert.equal(databaseDigest(`${full}/big.db`), digest);
    assert.equal(integrityCheck(`${full}/big.db`), "ok");
  } finally {
    await umount(full);
  }
}

Deno.test({
  name: mountName("bad input: disk full while snapshot writes its queue file → exit 12, no partial file"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir((dir) =>
      withBigDbOnFullDisk(dir, async (full) => {
        const r = await runProcess(["snapshot", `${full}/big.db`, "-b", `${dir}/replica`]);
        await expectOneLine(r, 12, [/big\.db-walrust/, /no space left on device/], null, null);
        const queue = await tree(`${full}/.big.db-walrust`).catch(() => ({}));
        assert.deepEqual(Object.keys(queue).filter((k) => k.endsWith(".ltx") || k.endsWith(".tmp")), []);
      })
    );
  },
});

Deno.test({
  name: mountName("bad input: the database's own disk full (SQLite cannot write) → exit 12, data unchanged"),
  ignore: !MOUNT,
  async fn() {
    await withWorkdir((dir) =>
      withBigDbOnFullDisk(dir, async (full) => {
        // Walrust's queue directory exists already; then every free byte is taken.
        await Deno.mkdir(`${full}/.big.db-walrust`);
        const filler = await Deno.open(`${full}/filler`, { write: true, create: true });
        try {
          const block = new Uint8Array(4096);
          for (;;) await filler.write(block);
        } catch {
          /* no space left */
        } finally {
          filler.close();
        }
        const r = await runProcess(["snapshot", `${full}/big.db`, "-b", `${dir}/replica`]);
        await expectOneLine(
          r,
          12,
          [/big\.db/, /disk I\/O error|no space left/i, /check free space/],
          null,
          null,
        );
      })
    );
  },
});

Deno.test({
  name: mountName(
    "bad input: disk full while watch writes its queue → one error line, no partial file, recovers when space returns",
  ),
  ignore: !MOUNT,
  sanitizeResources: false,
  async fn() {
    await withWorkdir(async (dir) => {
      const full = `${dir}/full`;
      await Deno.mkdir(full);
      await mountTmpfs(full, "1600k");
      let child: Deno.ChildProcess | null = null;
      try {
        makeDb(`${dir}/big.db`, "wal", 1_200_000);
        await Deno.copyFile(`${dir}/big.db`, `${full}/big.db`);
        child = spawnProcess([
          "watch",
          `${full}/big.db`,
          "-b",
          `${dir}/replica`,
          "--no-metrics",
          "--sync-interval",
          "100ms",
          "--log-level",
          "warn",
        ]);
        const chunks: Uint8Array[] = [];
        const reading = (async () => {
          for await (const c of child!.stderr) chunks.push(c);
        })();
        const text = () => new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
        const until = async (re: RegExp) => {
          for (let i = 0; i < 200 && !re.test(text()); i++) await new Promise((r) => setTimeout(r, 50));
          assert.match(text(), re);
        };
        await until(/no space left on device/);
        await new Promise((r) => setTimeout(r, 1000));
        const lines = text().split("\n").filter((l) => /no space left/.test(l));
        assert.equal(lines.length, 1, `the full disk is reported once, not on every retry:\n${text()}`);
        assert.match(lines[0], /big\.db-walrust.*free disk space/);
        const queue = await tree(`${full}/.big.db-walrust`);
        assert.deepEqual(Object.keys(queue).filter((k) => k.endsWith(".ltx") || k.endsWith(".tmp")), []);
        // Space comes back: replication proceeds without a restart.
        await remount(full, "size=16m");
        const replicaHas = async () =>
          (await tree(`${dir}/replica`).catch(() => ({}))) as Record<string, string>;
        for (let i = 0; i < 100 && !Object.keys(await replicaHas()).some((k) => k.endsWith(".ltx")); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(Object.keys(await replicaHas()).some((k) => k.endsWith(".ltx")), text());
        child.kill("SIGTERM");
        const st = await child.status;
        child = null;
        await reading;
        assert.equal(st.code, 0, text());
      } finally {
        if (child) {
          child.kill("SIGKILL");
          await child.status;
        }
        await umount(full);
      }
    });
  },
});

Deno.test("bad input: restore --txid before the first restorable point → exit 10 naming the earliest", async () => {
  await withWorkdir(async (dir) => {
    const url = await makeReplica(dir);
    await check(
      dir,
      () => runInProcess(["restore", "app", "-o", `${dir}/out.db`, "-b", url, "--txid", "2"]),
      10,
      [
        /TXID 2/,
        /earliest restorable TXID is 4/,
      ],
    );
  });
});

Deno.test("bad input: restore --timestamp before the first backup → exit 10 naming the first backup's time", async () => {
  await withWorkdir(async (dir) => {
    const url = await makeReplica(dir);
    await check(
      dir,
      () =>
        runInProcess([
          "restore",
          "app",
          "-o",
          `${dir}/out.db`,
          "-b",
          url,
          "--timestamp",
          "2020-01-01T00:00:00Z",
        ]),
      10,
      [/2020-01-01T00:00:00\.000Z/, /first backup is at 2025-01-01/],
    );
  });
});

Deno.test("bad input: restore --txid that is not a number → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () => runInProcess(["restore", "app", "-o", `${dir}/o.db`, "-b", dir, "--txid", "abc"]),
      2,
      [
        /--txid/,
        /abc/,
      ],
    );
  });
});

Deno.test("bad input: restore --timestamp that is not RFC 3339 → exit 2 with an example", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () => runInProcess(["restore", "app", "-o", `${dir}/o.db`, "-b", dir, "--timestamp", "yesterday"]),
      2,
      [/--timestamp/, /yesterday/, /2025-01-02T15:04:05Z/],
    );
  });
});

Deno.test("bad input: restore --txid and --timestamp together → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(
      dir,
      () =>
        runInProcess([
          "restore",
          "app",
          "-o",
          `${dir}/o.db`,
          "-b",
          dir,
          "--txid",
          "3",
          "--timestamp",
          "2025-01-01T00:00:00Z",
        ]),
      2,
      [/--txid and --timestamp/],
    );
  });
});

Deno.test("bad input: restore a name with no backup → exit 10 suggesting list", async () => {
  await withWorkdir(async (dir) => {
    const url = await makeReplica(dir);
    await check(dir, () => runInProcess(["restore", "other", "-o", `${dir}/o.db`, "-b", url]), 10, [
      /no backup of other/,
      /walrust list/,
    ]);
  });
});

Deno.test("bad input: verify --max-age that is not a duration → exit 2", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["verify", "app", "-b", dir, "--max-age", "soon"]), 2, [
      /--max-age/,
      /soon/,
    ]);
  });
});

Deno.test("bad input: ltx dump of a missing file → exit 10 naming it", async () => {
  await withWorkdir(async (dir) => {
    await check(dir, () => runInProcess(["ltx", "dump", `${dir}/none.ltx`]), 10, [/none\.ltx/]);
  });
});
