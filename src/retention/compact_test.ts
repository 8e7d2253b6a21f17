import assert from "node:assert/strict";
import { CorruptionError, UsageError } from "../errors.ts";
import { LtxDecoder, verifyLtx } from "../ltx/decoder.ts";
import { EventBus, type WalrustEvent } from "../observe/events.ts";
import { configureLogging } from "../observe/log.ts";
import { type DbHistory, putL0Range, putLtx, sampleHistory } from "../restore/testing.ts";
import { restoreDatabase } from "../restore/restore.ts";
import type { PlanFile } from "../restore/plan.ts";
import { sha256Hex } from "../storage/digest.ts";
import { FileObjectStore } from "../storage/file.ts";
import { MemoryObjectStore } from "../storage/memory.ts";
import { type LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import {
  compactionSchedule,
  type CompactionSkip,
  type CompactionStep,
  compactStep,
  planLevelCompaction,
  runCompaction,
  simulateCompaction,
} from "./compact.ts";

configureLogging({ level: "warn" });

const at = (iso: string) => Date.parse(iso);

function f(level: number, min: number, max: number, createdAt: number, size = 10) {
  return {
    level,
    minTXID: min,
    maxTXID: max,
    createdAt: new Date(createdAt),
    size,
    key: `L${level}/${min}-${max}`,
  };
}

function isSkip<F extends PlanFile>(s: CompactionStep<F> | CompactionSkip): s is CompactionSkip {
  return "skipped" in s;
}

Deno.test("compaction schedule: levels from intervals; invalid schedules are usage errors", () => {
  assert.deepEqual(compactionSchedule([30_000, 300_000]), [
    { level: 1, intervalMs: 30_000 },
    { level: 2, intervalMs: 300_000 },
  ]);
  assert.deepEqual(compactionSchedule([]), []);
  assert.throws(() => compactionSchedule([1, 2, 3, 4, 5, 6, 7, 8, 9]), UsageError);
  assert.throws(() => compactionSchedule([30_000, 0]), UsageError);
});

Deno.test("compaction plan: aligned to the wall clock; force skips the alignment", () => {
  const src = [f(0, 11, 11, at("2025-01-01T12:00:32Z")), f(0, 12, 12, at("2025-01-01T12:00:40Z"))];
  const now = at("2025-01-01T12:00:45Z"); // slot began 12:00:30
  const done = [f(1, 1, 10, at("2025-01-01T12:00:30.001Z"))];
  let s = planLevelCompaction(1, src, done, { intervalMs: 30_000, now });
  assert.ok(isSkip(s));
  assert.equal(s.skipped, "too_early");
  assert.match(s.reason, /after this 30s slot began \(2025-01-01T12:00:30\.000Z\)/);
  // The destination's newest file is exactly at the slot start: this slot is still open.
  s = planLevelCompaction(1, src, [f(1, 1, 10, at("2025-01-01T12:00:30Z"))], { intervalMs: 30_000, now });
  assert.ok(!isSkip(s));
  assert.deepEqual([s.minTXID, s.maxTXID, s.sources.length], [11, 12, 2]);
  assert.equal(s.createdAt.getTime(), at("2025-01-01T12:00:40Z"));
  assert.equal(s.reason, "merge 2 level-0 files (TXIDs 11–12) written after level 1 reached TXID 10");
  s = planLevelCompaction(1, src, done, { intervalMs: 30_000, now, force: true });
  assert.ok(!isSkip(s));
  // An empty destination always compacts.
  s = planLevelCompaction(1, src, [], { intervalMs: 30_000, now });
  assert.ok(!isSkip(s));
  assert.equal(s.reason, "merge 2 level-0 files (TXIDs 11–12) into empty level 1");
});

Deno.test("compaction plan: sources start after the level's max, stop at a gap, skip contained files, are capped", () => {
  const t = at("2025-01-01T00:00:00Z");
  const src = [
    f(0, 5, 5, t), // already in level 1
    f(0, 6, 6, t),
    f(0, 7, 9, t),
    f(0, 8, 8, t), // inside 7-9: adds nothing
    f(0, 10, 10, t),
    f(0, 12, 12, t), // after the gap at 11
  ];
  const dst = [f(1, 1, 5, t)];
  let s = planLevelCompaction(1, src, dst, { intervalMs: 30_000, now: t, force: true });
  assert.ok(!isSkip(s));
  assert.deepEqual(s.sources.map((x) => x.key), ["L0/6-6", "L0/7-9", "L0/10-10"]);
  // Next round: level 1 reaches 10, the gap is skipped over and 12 is merged alone.
  s = planLevelCompaction(1, src, [...dst, f(1, 6, 10, t)], { intervalMs: 30_000, now: t, force: true });
  assert.ok(!isSkip(s));
  assert.deepEqual(s.sources.map((x) => x.key), ["L0/12-12"]);
  s = planLevelCompaction(1, src, [f(1, 1, 12, t)], { intervalMs: 30_000, now: t, force: true });
  assert.ok(isSkip(s));
  assert.deepEqual(s, { level: 1, skipped: "nothing_new", reason: "level 0 has nothing after TXID 12" });
  s = planLevelCompaction(2, [], [], { intervalMs: 30_000, now: t });
  assert.ok(isSkip(s));
  assert.equal(s.reason, "level 1 has no files");
  s = planLevelCompaction(1, src, dst, { intervalMs: 30_000, now: t, force: true, maxSources: 2 });
  assert.ok(!isSkip(s));
  assert.deepEqual([s.minTXID, s.maxTXID], [6, 9]);
});

Deno.test("compaction simulation: each level sees the outputs of the level below", () => {
  const t = at("2025-01-01T00:00:00Z");
  const files = Array.from({ length: 10 }, (_, i) => f(0, i + 1, i + 1, t + i * 1000));
  const make = (level: number, min: number, max: number, createdAt: Date, size: number) => ({
    level,
    minTXID: min,
    maxTXID: max,
    createdAt,
    size,
    key: `L${level}/${min}-${max}`,
  });
  const sim = simulateCompaction(files, compactionSchedule([30_000, 300_000, 3_600_000]), {
    now: t + 60_000,
    maxSources: 4,
  }, make);
  assert.deepEqual(sim.steps.map((s) => `${s.level}:${s.minTXID}-${s.maxTXID}`), [
    "1:1-4",
    "1:5-8",
    "1:9-10",
    "2:1-10",
    "3:1-10",
  ]);
  const l3 = sim.files.find((x) => x.key === "L3/1-10")!;
  assert.equal(l3.size, 100); // the sum of its sources, an upper bound
  assert.equal(l3.createdAt.getTime(), t + 9000);
});

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-compact-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function restoreBytes(
  client: ReplicaClient,
  dir: string,
  target: { txid?: number },
): Promise<Uint8Array> {
  const out = `${dir}/r-${crypto.randomUUID()}.db`;
  await restoreDatabase(client, { output: out, ...target });
  return await Deno.readFile(out);
}

function stepFor(files: LtxFileInfo[], level: number): CompactionStep<LtxFileInfo> {
  const s = planLevelCompaction(
    level,
    files.filter((x) => x.level === level - 1),
    files.filter((x) => x.level === level),
    {
      intervalMs: 30_000,
      now: Date.now(),
      force: true,
    },
  );
  assert.ok(!isSkip(s));
  return s;
}

Deno.test("compaction step: merges, keeps the last input's timestamp, verifies, emits an event", async () => {
  await withDir(async (dir) => {
    const h: DbHistory = sampleHistory(dir, 14);
    const store = new MemoryObjectStore("file");
    const client = new ReplicaClient(store, "app");
    await putLtx(client, h, 9, 1, 4);
    await putL0Range(client, h, 5, 14);
    const bus = new EventBus();
    const events: WalrustEvent[] = [];
    bus.subscribe((e) => events.push(e));
    const r = await compactStep(client, stepFor(await client.allLtxFiles(), 1), { bus });
    assert.deepEqual([r.output.level, r.output.minTXID, r.output.maxTXID], [1, 5, 14]);
    assert.equal(r.output.createdAt.getTime(), h.times[14]);
    const l1 = await client.ltxFiles(1);
    assert.equal(l1.length, 1);
    assert.equal(l1[0].createdAt.getTime(), h.times[14]); // file mtime = the last input's timestamp
    const dec = new LtxDecoder(await client.readLtxFile(1, 5, 14), "L1");
    const header = await dec.readHeader();
    assert.deepEqual([header.minTXID, header.maxTXID, header.timestamp], [5, 14, h.times[14]]);
    assert.equal(events.length, 1);
    assert.deepEqual({ ...events[0], seconds: 0 }, {
      type: "compaction",
      db: "app",
      level: 1,
      minTXID: 5,
      maxTXID: 14,
      files: 10,
      seconds: 0,
    });
    // The snapshot plus the compacted file restore the newest state (the L0 files are no longer needed).
    await client.deleteLtxFiles((await client.ltxFiles(0)).slice(0, -1));
    assert.deepEqual(await restoreBytes(client, dir, {}), h.states[14]);
  });
});

Deno.test("compaction step: a corrupt source fails the step and writes nothing", async () => {
  await withDir(async (dir) => {
    const h = sampleHistory(dir, 6);
    const store = new MemoryObjectStore("file");
    const client = new ReplicaClient(store, "app");
    await putL0Range(client, h, 1, 6);
    const step = stepFor(await client.allLtxFiles(), 1);
    const victim = store.objects.get(client.ltxKey(0, 3, 3))!;
    victim.body[victim.body.length - 3] ^= 0x10; // the file checksum in the trailer
    // A process that did not write the sources (a restart, the compact command) reads the damaged copy.
    const restarted = new ReplicaClient(store, "app");
    await assert.rejects(compactStep(restarted, step), CorruptionError);
    assert.deepEqual(await client.ltxFiles(1), []);
    // The writer still holds the bytes it uploaded and merges those (the damaged L0 is then covered).
    const r = await compactStep(client, step);
    assert.equal(r.output.maxTXID, 6);
    await verifyLtx(await restarted.readLtxFile(1, 1, 6), "L1");
  });
});

Deno.test("compaction step: an output that reads back differently is deleted again", async () => {
  await withDir(async (dir) => {
    const h = sampleHistory(dir, 5);
    const store = new MemoryObjectStore("file");
    const client = new ReplicaClient(store, "app");
    await putL0Range(client, h, 1, 5);
    const step = stepFor(await client.allLtxFiles(), 1);
    const outKey = client.ltxKey(1, 1, 5);
    const get = store.get.bind(store);
    store.get = async (key: string) => {
      const b = await get(key);
      if (key === outKey) b[b.length - 1] ^= 1;
      return b;
    };
    await assert.rejects(compactStep(client, step), (err: unknown) => {
      assert.ok(err instanceof CorruptionError);
      assert.match(err.message, /read back different bytes/);
      return true;
    });
    assert.equal(store.objects.has(outKey), false);
  });
});

for (const backend of ["directory", "store without putFile"] as const) {
  Deno.test(`compaction step: a large output is merged into a temp file, uploaded and checked from it (${backend})`, async () => {
    await withDir(async (dir) => {
      const h = sampleHistory(dir, 14);
      const spillDir = `${dir}/spill`;
      await Deno.mkdir(spillDir);
      const store = backend === "directory"
        ? new FileObjectStore(`${dir}/replica`)
        : new MemoryObjectStore("file");
      const client = new ReplicaClient(store, "app");
      await putLtx(client, h, 9, 1, 4);
      await putL0Range(client, h, 5, 14);
      const step = stepFor(await client.allLtxFiles(), 1);
      // The same merge kept in memory, for comparison.
      const memory = new ReplicaClient(new MemoryObjectStore("file"), "app");
      for (const f of step.sources) {
        await memory.writeLtxFile(
          0,
          f.minTXID,
          f.maxTXID,
          await client.readLtxFile(0, f.minTXID, f.maxTXID),
          {
            timestamp: f.createdAt.getTime(),
          },
        );
      }
      await compactStep(memory, step);
      const expected = await memory.readLtxFile(1, 5, 14);
      assert.ok(expected.length > 1024);

      const r = await compactStep(client, step, { spillBytes: 1024, spillDir });
      assert.deepEqual([r.output.level, r.output.minTXID, r.output.maxTXID, r.output.size], [
        1,
        5,
        14,
        expected.length,
      ]);
      assert.deepEqual(await client.readLtxFile(1, 5, 14), expected);
      assert.equal((await store.head(client.ltxKey(1, 5, 14)))?.metadata.sha256, await sha256Hex(expected));
      assert.deepEqual([...Deno.readDirSync(spillDir)], [], "the temp file is gone");
      if (store instanceof FileObjectStore) {
        assert.equal((await Deno.stat(store.localPath(client.ltxKey(1, 5, 14)))).mode! & 0o777, 0o644);
      }
      await client.deleteLtxFiles((await client.ltxFiles(0)).slice(0, -1));
      assert.deepEqual(await restoreBytes(client, dir, {}), h.states[14]);
    });
  });
}

Deno.test("compaction step: a large output that reads back differently is deleted again", async () => {
  await withDir(async (dir) => {
    const h = sampleHistory(dir, 5);
    const spillDir = `${dir}/spill`;
    await Deno.mkdir(spillDir);
    const store = new FileObjectStore(`${dir}/replica`);
    const client = new ReplicaClient(store, "app");
    await putL0Range(client, h, 1, 5);
    const step = stepFor(await client.allLtxFiles(), 1);
    const outKey = client.ltxKey(1, 1, 5);
    const getStream = store.getStream.bind(store);
    store.getStream = async (key: string) => {
      const stream = await getStream(key);
      if (key !== outKey) return stream;
      let first = true;
      return stream.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, ctrl) {
            const c = chunk.slice();
            if (first && c.length > 200) c[200] ^= 1; // one page byte, as storage rot would change it
            first = false;
            ctrl.enqueue(c);
          },
        }),
      );
    };
    await assert.rejects(compactStep(client, step, { spillBytes: 64, spillDir }), (err: unknown) => {
      assert.ok(err instanceof CorruptionError);
      assert.match(err.message, /read back different bytes/);
      return true;
    });
    assert.equal(await store.head(outKey), null);
    assert.deepEqual([...Deno.readDirSync(spillDir)], [], "the temp file is gone");
  });
});

Deno.test("compaction run: levels in order on a clock; a level waits for its next slot", async () => {
  await withDir(async (dir) => {
    const start = at("2025-01-01T12:00:01Z");
    const h = sampleHistory(dir, 12, { startMs: start }); // TXID t at 12:00:00 + t seconds
    const store = new MemoryObjectStore("file");
    const client = new ReplicaClient(store, "app");
    const schedule = compactionSchedule([10_000, 60_000]);
    await putL0Range(client, h, 1, 5);
    let done = await runCompaction(client, schedule, { now: at("2025-01-01T12:00:06Z") });
    assert.deepEqual(done.map((d) => d.output.key), [
      "app/ltx/1/0000000000000001-0000000000000005.ltx",
      "app/ltx/2/0000000000000001-0000000000000005.ltx",
    ]);
    await putL0Range(client, h, 6, 12);
    // 12:00:08: L1's newest file is from 12:00:05, within the 12:00:00 slot → too early; L2 has nothing new.
    done = await runCompaction(client, schedule, { now: at("2025-01-01T12:00:08Z") });
    assert.deepEqual(done, []);
    // 12:00:10: a new L1 slot: 6–12 merged; L2's slot (12:00:00) is taken.
    done = await runCompaction(client, schedule, { now: at("2025-01-01T12:00:10Z") });
    assert.deepEqual(done.map((d) => `${d.level}:${d.output.minTXID}-${d.output.maxTXID}`), ["1:6-12"]);
    done = await runCompaction(client, schedule, { now: at("2025-01-01T12:01:00Z") });
    assert.deepEqual(done.map((d) => `${d.level}:${d.output.minTXID}-${d.output.maxTXID}`), ["2:6-12"]);
    assert.deepEqual(await restoreBytes(client, dir, { txid: 12 }), h.states[12]);
  });
});
