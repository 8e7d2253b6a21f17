/** The local queue: atomic writes, crash leftovers, pending accounting, and the exclusive lock. */

import assert from "node:assert/strict";
import { ConflictError, ExitCode } from "../errors.ts";
import { acquireQueueLock, LocalQueue, MEMORY_FILE_MAX, MEMORY_QUEUE_MAX } from "./queue.ts";

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

function l0Names(dir: string): string[] {
  return [...Deno.readDirSync(`${dir}/ltx/0`)].map((e) => e.name).sort();
}

Deno.test("queue: memory files stay off the disk until persist(); persist() writes what is not uploaded", async () => {
  const dir = await tmp();
  try {
    const q = new LocalQueue(dir);
    await q.init();
    const content = (n: number) => new Uint8Array(100).fill(n);
    for (const t of [1, 2, 3]) {
      await q.write(0, t, t, 100 + t, (sink) => sink.write(content(t)), { memory: true });
    }
    assert.deepEqual(l0Names(dir), [], "nothing on disk");
    assert.deepEqual(q.files(0).map((f) => f.maxTXID), [1, 2, 3]);
    assert.deepEqual(await q.read(q.files(0)[1]), content(2));
    assert.equal(q.memoryBytes(1), 200, "TXIDs 2 and 3 are not uploaded");
    await q.remove(q.files(0)[0]); // shipped: dropped from memory, no file to delete
    await q.persist(2); // TXID 3 only: 2 is on the replica
    assert.deepEqual(l0Names(dir), ["0000000000000003-0000000000000003.ltx"]);
    const three = q.files(0).find((f) => f.maxTXID === 3)!;
    assert.equal(three.bytes, undefined, "the index now points at the disk copy");
    assert.deepEqual(await Deno.readFile(three.path), content(3));
    await q.persist(0); // everything, including TXID 2 (a position for the next start)
    assert.deepEqual(l0Names(dir), [
      "0000000000000002-0000000000000002.ltx",
      "0000000000000003-0000000000000003.ltx",
    ]);
    await q.remove(three);
    assert.deepEqual(l0Names(dir), ["0000000000000002-0000000000000002.ltx"], "a disk copy is deleted");
    // What a new process finds: the persisted files, with their content.
    const again = new LocalQueue(dir);
    await again.init();
    assert.deepEqual(again.files(0).map((f) => f.maxTXID), [2]);
    assert.deepEqual(await again.read(again.files(0)[0]), content(2));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue: a large file goes to disk even with memory; memory files above the limit are persisted", async () => {
  const dir = await tmp();
  try {
    const q = new LocalQueue(dir);
    await q.init();
    const big = await q.write(0, 1, 1, 1, async (sink) => {
      await sink.write(new Uint8Array(MEMORY_FILE_MAX).fill(1));
      await sink.write(new Uint8Array(10).fill(2)); // crosses the limit: spilled to a temp file
    }, { memory: true });
    assert.equal(big.bytes, undefined);
    const onDisk = await Deno.readFile(big.path);
    assert.equal(onDisk.length, MEMORY_FILE_MAX + 10);
    assert.equal(onDisk[MEMORY_FILE_MAX - 1], 1);
    assert.equal(onDisk[MEMORY_FILE_MAX], 2);
    // Pending memory files (none uploaded) beyond MEMORY_QUEUE_MAX are moved to disk by the write that
    // crosses it.
    const each = MEMORY_FILE_MAX;
    const n = Math.floor(MEMORY_QUEUE_MAX / each) + 1;
    for (let t = 2; t < 2 + n; t++) {
      await q.write(0, t, t, t, (sink) => sink.write(new Uint8Array(each)), {
        memory: true,
        uploadedTxid: 1,
      });
    }
    assert.equal(q.memoryBytes(1), 0);
    assert.equal(l0Names(dir).length, 1 + n);
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
