import assert from "node:assert/strict";
import { NotFoundError, UsageError } from "../errors.ts";
import { FileObjectStore } from "./file.ts";
import { MemoryObjectStore } from "./memory.ts";
import {
  formatRfc3339Nano,
  listDatabases,
  parseRfc3339,
  RecentFiles,
  ReplicaClient,
  TIMESTAMP_METADATA_KEY,
} from "./replica_client.ts";
import { sha256Hex } from "./digest.ts";

const enc = new TextEncoder();

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-replica-client-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ReplicaClient: file layout is <root>/<name>/ltx/<level decimal>/<min16>-<max16>.ltx", async () => {
  await withDir(async (dir) => {
    const client = new ReplicaClient(new FileObjectStore(dir), "app");
    const ts = 1_700_000_000_456;
    const info = await client.writeLtxFile(9, 1, 0x1f, enc.encode("snapshot"), { timestamp: ts });
    await client.writeLtxFile(0, 0x20, 0x20, enc.encode("l0"), { timestamp: ts + 1000 });
    await client.writeLtxFile(10, 1, 2, enc.encode("ten"), { timestamp: ts });
    assert.equal(info.key, "app/ltx/9/0000000000000001-000000000000001f.ltx");
    const st = await Deno.stat(`${dir}/app/ltx/9/0000000000000001-000000000000001f.ltx`);
    assert.equal(st.mtime?.getTime(), ts, "mtime = header timestamp (Litestream Chtimes)");
    assert.ok(await Deno.stat(`${dir}/app/ltx/0/0000000000000020-0000000000000020.ltx`));
    assert.ok(await Deno.stat(`${dir}/app/ltx/10/0000000000000001-0000000000000002.ltx`));
    assert.equal(client.displayUrl, `${dir}/app`);
    const l9 = await client.ltxFiles(9);
    assert.deepEqual(l9, [{
      level: 9,
      minTXID: 1,
      maxTXID: 0x1f,
      size: 8,
      createdAt: new Date(ts),
      key: "app/ltx/9/0000000000000001-000000000000001f.ltx",
    }]);
    assert.deepEqual((await client.allLtxFiles()).map((f) => [f.level, f.minTXID]), [[0, 0x20], [9, 1], [
      10,
      1,
    ]]);
    assert.deepEqual(await client.readLtxFile(9, 1, 0x1f), enc.encode("snapshot"));
  });
});

Deno.test("ReplicaClient: s3 layout is <name>/<level %04x>/<min16>-<max16>.ltx with timestamp + sha256 metadata", async () => {
  const store = new MemoryObjectStore("s3");
  const client = new ReplicaClient(store, "app");
  const ts = Date.UTC(2024, 0, 2, 3, 4, 5, 120);
  await client.writeLtxFile(9, 1, 5, enc.encode("s"), { timestamp: ts });
  await client.writeLtxFile(10, 6, 7, enc.encode("t"), { timestamp: ts });
  assert.deepEqual([...store.objects.keys()].sort(), [
    "app/0009/0000000000000001-0000000000000005.ltx",
    "app/000a/0000000000000006-0000000000000007.ltx",
  ]);
  const meta = store.objects.get("app/0009/0000000000000001-0000000000000005.ltx")!.metadata;
  assert.equal(meta[TIMESTAMP_METADATA_KEY], "2024-01-02T03:04:05.12Z");
  assert.equal(meta.sha256, await sha256Hex(enc.encode("s")));
});

Deno.test("ReplicaClient: listings ignore foreign names and sort by (level, min, max)", async () => {
  const store = new MemoryObjectStore("s3");
  const put = (k: string) => store.put(k, enc.encode(k));
  for (
    const k of [
      "app/0000/0000000000000003-0000000000000003.ltx",
      "app/0000/0000000000000002-0000000000000002.ltx",
      "app/0000/0000000000000002-0000000000000001.ltx",
      "app/0000/0000000000000001-0000000000000002.ltx",
      "app/0000/0000000000000004-0000000000000004.ltx.tmp",
      "app/0000/000000000000000A-000000000000000A.ltx", // upper case: not Litestream's name
      "app/0000/00000000000005-0000000000000005.ltx",
      "app/0000/sub/0000000000000006-0000000000000006.ltx",
      "app/0001/0000000000000001-0000000000000003.ltx",
      "app/ltx/0/0000000000000001-0000000000000001.ltx", // file layout inside an s3 store: ignored
      "app/lease.json",
      "app/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4",
      "apple/0000/0000000000000009-0000000000000009.ltx",
    ]
  ) await put(k);
  const client = new ReplicaClient(store, "app");
  assert.deepEqual(
    (await client.ltxFiles(0)).map((f) => [f.minTXID, f.maxTXID]),
    [[1, 2], [2, 1], [2, 2], [3, 3]],
  );
  assert.deepEqual(
    (await client.allLtxFiles()).map((f) => [f.level, f.minTXID, f.maxTXID]),
    [[0, 1, 2], [0, 2, 1], [0, 2, 2], [0, 3, 3], [1, 1, 3]],
  );
});

Deno.test("ReplicaClient: accurateTimestamps reads litestream-timestamp metadata on S3", async () => {
  const store = new MemoryObjectStore("s3");
  store.now = () => Date.UTC(2030, 0, 1);
  const client = new ReplicaClient(store, "db");
  const ts = Date.UTC(2024, 5, 1, 12, 0, 0, 7);
  await client.writeLtxFile(0, 1, 1, enc.encode("x"), { timestamp: ts });
  // Written by Litestream with nanoseconds and no sha256.
  await store.put("db/0000/0000000000000002-0000000000000002.ltx", enc.encode("y"), {
    metadata: { "litestream-timestamp": "2024-06-01T12:00:01.123456789Z" },
  });
  await store.put("db/0000/0000000000000003-0000000000000003.ltx", enc.encode("z"), {
    metadata: { "litestream-timestamp": "garbage" },
  });
  const fast = await client.ltxFiles(0);
  assert.deepEqual(fast.map((f) => f.createdAt.getTime()), [
    Date.UTC(2030, 0, 1),
    Date.UTC(2030, 0, 1),
    Date.UTC(2030, 0, 1),
  ]);
  const accurate = await client.ltxFiles(0, { accurateTimestamps: true });
  assert.deepEqual(accurate.map((f) => f.createdAt.getTime()), [
    ts,
    Date.UTC(2024, 5, 1, 12, 0, 1, 123),
    Date.UTC(2030, 0, 1), // unparseable metadata: falls back to LastModified
  ]);
});

Deno.test("ReplicaClient: an empty name is the store root itself (Litestream single-database replica)", async () => {
  const s3 = new MemoryObjectStore("s3");
  const c = new ReplicaClient(s3, "");
  const info = await c.writeLtxFile(1, 1, 2, enc.encode("x"), { timestamp: 0 });
  assert.equal(info.key, "0001/0000000000000001-0000000000000002.ltx");
  assert.equal((await c.ltxFiles(1)).length, 1);
  await withDir(async (dir) => {
    const f = new ReplicaClient(new FileObjectStore(dir), "");
    assert.equal(
      (await f.writeLtxFile(0, 3, 3, enc.encode("y"), { timestamp: 0 })).key,
      "ltx/0/0000000000000003-0000000000000003.ltx",
    );
    assert.equal((await f.allLtxFiles()).length, 1);
  });
});

Deno.test("ReplicaClient: missing files are NotFoundError naming the file; delete ignores absent files", async () => {
  const store = new MemoryObjectStore("s3");
  const client = new ReplicaClient(store, "app");
  await assert.rejects(client.readLtxFile(0, 1, 1), (e: Error) => {
    assert.ok(e instanceof NotFoundError);
    assert.match(
      e.message,
      /level 0 0000000000000001-0000000000000001\.ltx not found in memory:\/\/test\/app/,
    );
    return true;
  });
  await assert.rejects(client.openLtxFile(0, 1, 1), NotFoundError);
  await client.writeLtxFile(0, 1, 1, enc.encode("x"), { timestamp: 0 });
  await client.writeLtxFile(0, 2, 2, enc.encode("x"), { timestamp: 0 });
  await client.deleteLtxFiles([{ level: 0, minTXID: 1, maxTXID: 1 }, { level: 3, minTXID: 9, maxTXID: 9 }]);
  assert.deepEqual((await client.ltxFiles(0)).map((f) => f.minTXID), [2]);
  const chunks: Uint8Array[] = [];
  for await (const c of await client.openLtxFile(0, 2, 2)) chunks.push(c);
  assert.deepEqual(chunks, [enc.encode("x")]);
});

Deno.test("ReplicaClient: database names must be one safe path segment", () => {
  const store = new MemoryObjectStore("s3");
  for (const bad of ["a/b", "..", ".hidden", "a b", "x\0"]) {
    assert.throws(() => new ReplicaClient(store, bad), UsageError, bad);
  }
  new ReplicaClient(store, "my_db-1.v2");
});

Deno.test("listDatabases: names with LTX files in either layout or v0.3 generations, sorted", async () => {
  const store = new MemoryObjectStore("s3");
  for (
    const k of [
      "zeta/0009/0000000000000001-0000000000000001.ltx",
      "alpha/ltx/0/0000000000000001-0000000000000001.ltx",
      "legacy/generations/0123456789abcdef/wal/00000000_00000000.wal.lz4",
      "empty/lease.json",
      "junk/0000/notes.txt",
      "top.ltx",
      "alpha/0000/0000000000000002-0000000000000002.ltx",
    ]
  ) await store.put(k, enc.encode("x"));
  assert.deepEqual(await listDatabases(store), ["alpha", "legacy", "zeta"]);
  await withDir(async (dir) => {
    const fs = new FileObjectStore(dir);
    assert.deepEqual(await listDatabases(fs), []);
    await new ReplicaClient(fs, "one").writeLtxFile(0, 1, 1, enc.encode("x"), { timestamp: 0 });
    await new ReplicaClient(fs, "two").writeLtxFile(9, 1, 4, enc.encode("x"), { timestamp: 0 });
    assert.deepEqual(await listDatabases(fs), ["one", "two"]);
  });
});

Deno.test("RFC3339Nano timestamps match Go's formatting and parse back", () => {
  assert.equal(formatRfc3339Nano(Date.UTC(2024, 0, 2, 3, 4, 5, 0)), "2024-01-02T03:04:05Z");
  assert.equal(formatRfc3339Nano(Date.UTC(2024, 0, 2, 3, 4, 5, 100)), "2024-01-02T03:04:05.1Z");
  assert.equal(formatRfc3339Nano(Date.UTC(2024, 0, 2, 3, 4, 5, 123)), "2024-01-02T03:04:05.123Z");
  assert.equal(parseRfc3339("2024-01-02T03:04:05.123456789Z")?.getTime(), Date.UTC(2024, 0, 2, 3, 4, 5, 123));
  assert.equal(parseRfc3339("2024-01-02T05:04:05+02:00")?.getTime(), Date.UTC(2024, 0, 2, 3, 4, 5));
  assert.equal(parseRfc3339("yesterday"), null);
  for (const ms of [0, 1, 999, 1_700_000_000_001, 1_700_000_000_010]) {
    assert.equal(parseRfc3339(formatRfc3339Nano(ms))?.getTime(), ms);
  }
});

Deno.test("ReplicaClient: level-0 files just written are read from memory only when asked (compaction), and forgotten on delete", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const client = new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app");
    const bytes = new TextEncoder().encode("an L0 file's bytes");
    await client.writeLtxFile(0, 5, 5, bytes, { timestamp: 1_700_000_000_000 });
    await client.writeLtxFile(1, 1, 5, bytes, { timestamp: 1_700_000_000_000 });
    // Gone from the store behind the client's back: plain reads see the store, preferRecent the memory.
    await Deno.remove(`${dir}/replica/app/ltx/0/0000000000000005-0000000000000005.ltx`);
    await assert.rejects(client.readLtxFile(0, 5, 5), NotFoundError);
    assert.deepEqual(await client.readLtxFile(0, 5, 5, { preferRecent: true }), bytes);
    // Only level 0 is kept: a compacted output is always read back from the store.
    await Deno.remove(`${dir}/replica/app/ltx/1/0000000000000001-0000000000000005.ltx`);
    await assert.rejects(client.readLtxFile(1, 1, 5, { preferRecent: true }), NotFoundError);
    // Deleting through the client forgets it.
    await client.deleteLtxFiles([{ level: 0, minTXID: 5, maxTXID: 5 }]);
    await assert.rejects(client.readLtxFile(0, 5, 5, { preferRecent: true }), NotFoundError);
    // Another replica with the same database name has its own entries.
    const other = new ReplicaClient(new FileObjectStore(`${dir}/other`), "app");
    await client.writeLtxFile(0, 6, 6, bytes, { timestamp: 1_700_000_000_000 });
    await assert.rejects(other.readLtxFile(0, 6, 6, { preferRecent: true }), NotFoundError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RecentFiles: holds at most its budget, oldest out first, never a file over the size limit", () => {
  const c = new RecentFiles(10, 6);
  const b = (n: number, v: number) => new Uint8Array(n).fill(v);
  c.set("a", b(4, 1));
  c.set("b", b(4, 2));
  assert.equal(c.bytes, 8);
  c.set("c", b(4, 3)); // 12 > 10: "a" goes
  assert.equal(c.get("a"), undefined);
  assert.deepEqual(c.get("b"), b(4, 2));
  assert.equal(c.bytes, 8);
  c.set("big", b(7, 4)); // over the per-file limit: not kept
  assert.equal(c.get("big"), undefined);
  c.set("b", b(2, 5)); // replaced: counted once
  assert.equal(c.bytes, 6);
  const shared = new Uint8Array(100);
  c.set("view", shared.subarray(10, 13)); // a view is copied, not the whole buffer kept
  assert.equal(c.get("view")!.buffer.byteLength, 3);
  c.delete("c");
  c.delete("missing");
  assert.equal(c.bytes, 5);
});
