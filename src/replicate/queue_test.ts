/** The local queue: atomic writes, crash leftovers, pending accounting, and the exclusive lock. */

import assert from "node:assert/strict";
import { ConflictError, ExitCode } from "../errors.ts";
import { acquireQueueLock, LocalQueue } from "./queue.ts";

async function tmp(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "walrust-queue-test-" });
}

Deno.test("queue: a file becomes visible only complete; a failed build leaves nothing behind", async () => {
  const dir = await tmp();
  try {
    const q = new LocalQueue(dir);
    await q.init();
    const f = await q.write(0, 1, 1, 123, async (sink) => {
      await sink.write(new Uint8Array(3000).fill(7));
      await sink.write(new Uint8Array(2 * 1024 * 1024).fill(8)); // larger than the buffer
    });
    assert.equal(f.size, 3000 + 2 * 1024 * 1024);
    assert.equal((await Deno.stat(f.path)).size, f.size);
    assert.equal(f.path, `${dir}/ltx/0/0000000000000001-0000000000000001.ltx`);
    await assert.rejects(() =>
      q.write(0, 2, 2, 124, async (sink) => {
        await sink.write(new Uint8Array(10));
        throw new Error("encoder failed");
      })
    );
    const names = [...Deno.readDirSync(`${dir}/ltx/0`)].map((e) => e.name);
    assert.deepEqual(names, ["0000000000000001-0000000000000001.ltx"], "no temp file, no partial file");
    assert.deepEqual(q.files(0).map((x) => x.maxTXID), [1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue: init removes temp files of a crashed process and indexes the rest in TXID order", async () => {
  const dir = await tmp();
  try {
    await Deno.mkdir(`${dir}/ltx/0`, { recursive: true });
    await Deno.mkdir(`${dir}/ltx/9`, { recursive: true });
    for (const t of [10, 2, 3]) {
      const h = t.toString(16).padStart(16, "0");
      await Deno.writeFile(`${dir}/ltx/0/${h}-${h}.ltx`, new Uint8Array(t));
    }
    await Deno.writeFile(
      `${dir}/ltx/0/.0000000000000004-0000000000000004.ltx.123-abcd.tmp`,
      new Uint8Array(5),
    );
    await Deno.writeFile(`${dir}/ltx/0/notes.txt`, new Uint8Array(1));
    await Deno.writeFile(`${dir}/ltx/9/0000000000000001-0000000000000003.ltx`, new Uint8Array(50));
    const q = new LocalQueue(dir);
    await q.init();
    assert.deepEqual(q.files(0).map((f) => f.minTXID), [2, 3, 10]);
    assert.equal(q.newestL0()?.maxTXID, 10);
    const names = [...Deno.readDirSync(`${dir}/ltx/0`)].map((e) => e.name).sort();
    assert.ok(!names.some((n) => n.endsWith(".tmp")), "temp file removed");
    assert.ok(names.includes("notes.txt"), "foreign files are left alone");
    const [, three, ten] = q.files(0);
    assert.deepEqual(q.pending(2), {
      files: 3,
      bytes: 3 + 10 + 50,
      oldest: Math.min(three.timestamp, ten.timestamp),
    });
    await q.remove(q.files(0)[0]);
    assert.deepEqual(q.files(0).map((f) => f.minTXID), [3, 10]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue lock: a second holder gets ConflictError naming the holder's pid; released on release()", async () => {
  const dir = await tmp();
  try {
    const a = await acquireQueueLock(dir, "database /x/app.db");
    assert.equal((await Deno.readTextFile(`${dir}/lock`)).trim(), String(Deno.pid));
    await assert.rejects(
      () => acquireQueueLock(dir, "database /x/app.db", "; stop it first"),
      (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.equal(err.exitCode, ExitCode.CONFLICT);
        assert.equal(
          err.message,
          `database /x/app.db is being replicated by process ${Deno.pid} (lock ${dir}/lock); stop it first`,
        );
        return true;
      },
    );
    a.release();
    const b = await acquireQueueLock(dir, "database /x/app.db");
    b.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
