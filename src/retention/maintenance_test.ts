import assert from "node:assert/strict";
import { ConnectionError } from "../errors.ts";
import { EventBus, type WalrustEvent } from "../observe/events.ts";
import { configureLogging } from "../observe/log.ts";
import { putL0Range, putLtx, sampleHistory } from "../restore/testing.ts";
import { MemoryObjectStore } from "../storage/memory.ts";
import type { ListOptions, ObjectInfo } from "../storage/object_store.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { DEFAULTS } from "../config/types.ts";
import { FileObjectStore } from "../storage/file.ts";
import { RetryingObjectStore } from "../storage/retry.ts";
import {
  Compactor,
  createCompactionHook,
  enforceRetention,
  listForRetention,
  STALE_WRITE_MS,
} from "./maintenance.ts";

configureLogging({ level: "error" });

const POLICY = { hourly: 0, daily: 0, weekly: 0, monthly: 0 };

/** A memory store that counts listings. */
class CountingStore extends MemoryObjectStore {
  lists = 0;
  override list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    this.lists++;
    return super.list(prefix, options);
  }
}

async function setup(n: number) {
  const dir = await Deno.makeTempDir({ prefix: "walrust-maint-" });
  const start = Date.UTC(2025, 0, 1, 12, 0, 1);
  const h = sampleHistory(dir, n, { startMs: start }); // TXID t at 12:00:00 + t s
  await Deno.remove(dir, { recursive: true });
  const store = new CountingStore("file");
  const client = new ReplicaClient(store, "app");
  return { h, store, client };
}

Deno.test("retention run: a dry run deletes nothing; a real run deletes in plan order and emits one event", async () => {
  const { h, store, client } = await setup(8);
  await putLtx(client, h, 9, 1, 3);
  await putL0Range(client, h, 1, 8);
  await putLtx(client, h, 9, 1, 6);
  const now = h.times[8] + 3_600_000;
  const before = [...store.objects.keys()].sort();
  const dry = await enforceRetention(client, { retention: POLICY, now, dryRun: true });
  assert.equal(dry.deleted, 0);
  assert.deepEqual([...store.objects.keys()].sort(), before);
  assert.deepEqual(dry.plan.delete.map((d) => d.file.key), [
    "app/ltx/0/0000000000000006-0000000000000006.ltx",
    "app/ltx/0/0000000000000005-0000000000000005.ltx",
    "app/ltx/0/0000000000000004-0000000000000004.ltx",
    "app/ltx/0/0000000000000003-0000000000000003.ltx",
    "app/ltx/0/0000000000000002-0000000000000002.ltx",
    "app/ltx/0/0000000000000001-0000000000000001.ltx",
    "app/ltx/9/0000000000000001-0000000000000003.ltx",
  ]);
  const bus = new EventBus();
  const events: WalrustEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const deletedKeys: string[] = [];
  const del = store.delete.bind(store);
  store.delete = (keys: string[]) => {
    deletedKeys.push(...keys);
    return del(keys);
  };
  const r = await enforceRetention(client, { retention: POLICY, now, bus });
  assert.equal(r.deleted, 7);
  assert.deepEqual(deletedKeys, dry.plan.delete.map((d) => d.file.key));
  assert.deepEqual(events, [{ type: "retention", db: "app", deleted: 7, bytes: r.bytes }]);
  assert.ok(r.bytes > 0);
  assert.deepEqual((await client.allLtxFiles()).map((f) => `${f.level}:${f.minTXID}-${f.maxTXID}`), [
    "0:7-7",
    "0:8-8",
    "9:1-6",
  ]);
});

Deno.test("retention run on a directory replica removes leftovers of killed writers (not on a dry run)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrust-maint-sweep-" });
  try {
    const h = sampleHistory(dir, 4);
    // As `watch` opens it: the file store behind the retrying wrapper.
    const store = new RetryingObjectStore(new FileObjectStore(`${dir}/replica`), DEFAULTS.retry);
    const client = new ReplicaClient(store, "app");
    await putLtx(client, h, 9, 1, 4);
    const leftover = `${dir}/replica/app/ltx/9/.0000000000000001-0000000000000005.ltx.77-abcdef01.tmp`;
    await Deno.writeFile(leftover, new Uint8Array(4096));
    const old = new Date(Date.now() - STALE_WRITE_MS - 60_000);
    await Deno.utime(leftover, old, old);
    const now = h.times[4] + 60_000;
    const dry = await enforceRetention(client, { retention: POLICY, now, dryRun: true });
    assert.equal(dry.swept, 0);
    assert.ok((await Deno.lstat(leftover)).isFile);
    const r = await enforceRetention(client, { retention: POLICY, now });
    assert.equal(r.swept, 1);
    await assert.rejects(Deno.lstat(leftover), Deno.errors.NotFound);
    // The backup itself is untouched and restorable.
    assert.deepEqual((await client.allLtxFiles()).map((f) => `${f.level}:${f.minTXID}-${f.maxTXID}`), [
      "9:1-4",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compactor: levels wait for their first boundary, ticks skip listing when nothing is due, never overlap", async () => {
  const { h, store, client } = await setup(12);
  await putL0Range(client, h, 1, 5);
  let clock = Date.UTC(2025, 0, 1, 12, 0, 6);
  const c = new Compactor(
    client,
    { name: "app", compactionIntervalsMs: [10_000, 60_000], retention: POLICY },
    undefined,
    {
      now: () => clock,
    },
  );
  const levels = (r: { compactions: { level: number; output: { minTXID: number; maxTXID: number } }[] }) =>
    r.compactions.map((x) => `${x.level}:${x.output.minTXID}-${x.output.maxTXID}`);
  // Two calls at once share one run. Started at 12:00:06, no level has reached a boundary yet (as
  // Litestream's per-level timers): nothing is compacted, retention runs on the first tick.
  const [a, b] = await Promise.all([c.maybeCompact(), c.maybeCompact()]);
  assert.equal(a, b);
  assert.deepEqual(levels(a), []);
  assert.ok(a.retention, "the first tick enforces retention");
  // 12:00:08: still no boundary, retention not due: no request at all.
  clock = Date.UTC(2025, 0, 1, 12, 0, 8);
  store.lists = 0;
  const idle = await c.maybeCompact();
  assert.deepEqual(idle, { compactions: [], retention: null });
  assert.equal(store.lists, 0);
  // 12:00:10: level 1's first boundary.
  clock = Date.UTC(2025, 0, 1, 12, 0, 10);
  const first = await c.maybeCompact();
  assert.deepEqual(levels(first), ["1:1-5"]);
  assert.equal(first.retention, null);
  // 12:00:15: level 1's slot is done: no request.
  clock = Date.UTC(2025, 0, 1, 12, 0, 15);
  store.lists = 0;
  assert.deepEqual(await c.maybeCompact(), { compactions: [], retention: null });
  assert.equal(store.lists, 0);
  // 12:00:20: level 1's next slot.
  await putL0Range(client, h, 6, 9);
  clock = Date.UTC(2025, 0, 1, 12, 0, 20);
  assert.deepEqual(levels(await c.maybeCompact()), ["1:6-9"]);
  // 12:01:00: level 2's first boundary merges both level-1 files.
  clock = Date.UTC(2025, 0, 1, 12, 1, 0);
  assert.deepEqual(levels(await c.maybeCompact()), ["2:1-9"]);
  // Five minutes after the first tick retention runs again (L0 1–8 and level 1 are covered by level 2).
  clock = Date.UTC(2025, 0, 1, 12, 6, 0);
  const later = await c.maybeCompact();
  assert.deepEqual(levels(later), []);
  assert.ok(later.retention);
  assert.deepEqual(
    (await client.allLtxFiles()).map((f) => `${f.level}:${f.minTXID}-${f.maxTXID}`),
    ["0:9-9", "1:6-9", "2:1-9"],
  );
});

Deno.test("compaction hook: one compactor per database; failures are reported and rethrown", async () => {
  const { h, store, client } = await setup(4);
  await putL0Range(client, h, 1, 4);
  const bus = new EventBus();
  const events: WalrustEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const hook = createCompactionHook(bus, { now: () => Date.UTC(2025, 0, 1, 12, 0, 30) });
  const db = {
    name: "app",
    client,
    settings: { name: "app", compactionIntervalsMs: [30_000], retention: POLICY },
  };
  await hook(db);
  assert.deepEqual(events.filter((e) => e.type === "compaction").length, 1);
  store.list = () => {
    throw new ConnectionError("replica unreachable");
  };
  await hook(db); // level 1's slot was evaluated and retention is not due: nothing is listed
  await assert.rejects(
    createCompactionHook(bus, { now: () => Date.UTC(2025, 0, 1, 12, 1, 0) })(db),
    ConnectionError,
  );
  const err = events.find((e) => e.type === "error");
  assert.deepEqual(err, {
    type: "error",
    db: "app",
    errorClass: "connection",
    message: "compaction: replica unreachable",
  });
});

Deno.test("retention listing on S3: snapshot times come from metadata, read once per snapshot", async () => {
  const { h } = await setup(3);
  const store = new MemoryObjectStore("s3");
  store.now = () => Date.UTC(2030, 0, 1); // LastModified: long after the snapshot was taken
  let heads = 0;
  const head = store.head.bind(store);
  store.head = (key: string) => {
    heads++;
    return head(key);
  };
  const client = new ReplicaClient(store, "app");
  await putL0Range(client, h, 1, 3);
  await putLtx(client, h, 9, 1, 2);
  const cache = new Map<string, Date>();
  let files = await listForRetention(client, cache);
  const snapAt = (fs: typeof files) => fs.find((f) => f.level === 9)!.createdAt.getTime();
  assert.equal(snapAt(files), h.times[2]);
  assert.equal(files.find((f) => f.level === 0)!.createdAt.getTime(), Date.UTC(2030, 0, 1));
  assert.equal(heads, 1);
  files = await listForRetention(client, cache);
  assert.equal(snapAt(files), h.times[2]);
  assert.equal(heads, 1, "cached");
  await client.deleteLtxFiles(files.filter((f) => f.level === 9));
  await listForRetention(client, cache);
  assert.equal(cache.size, 0);
});
