import assert from "node:assert/strict";
import fc from "fast-check";
import { EventBus, type WalrustEvent } from "../observe/events.ts";
import { configureLogging } from "../observe/log.ts";
import { putL0Range, putLtx, sampleHistory } from "../restore/testing.ts";
import { MemoryObjectStore } from "../storage/memory.ts";
import { type LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { chainGaps, levelGaps, missingRanges, summariseLevels, verifyReplica } from "./verify.ts";

configureLogging({ level: "error" });

function fi(level: number, min: number, max: number, createdAt = 0, size = 10): LtxFileInfo {
  return {
    level,
    minTXID: min,
    maxTXID: max,
    size,
    createdAt: new Date(createdAt),
    key: `${level}/${min}-${max}`,
  };
}

Deno.test("missingRanges: exact holes, overlaps, bounds", () => {
  assert.deepEqual(missingRanges([], 1, 5), [{ from: 1, to: 5 }]);
  assert.deepEqual(missingRanges([{ minTXID: 1, maxTXID: 3 }, { minTXID: 6, maxTXID: 9 }], 1, 10), [
    { from: 4, to: 5 },
    { from: 10, to: 10 },
  ]);
  assert.deepEqual(missingRanges([{ minTXID: 2, maxTXID: 8 }, { minTXID: 1, maxTXID: 4 }], 1, 8), []);
  assert.deepEqual(missingRanges([{ minTXID: 1, maxTXID: 100 }], 5, 3), []);
});

Deno.test("missingRanges property: equals the brute-force set of uncovered TXIDs", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 10 })), { maxLength: 12 }),
      fc.integer({ min: 1, max: 45 }),
      fc.integer({ min: 0, max: 45 }),
      (raw, from, len) => {
        const files = raw.map(([a, l]) => ({ minTXID: a, maxTXID: a + l }));
        const to = from + len;
        const expected: number[] = [];
        for (let t = from; t <= to; t++) {
          if (!files.some((f) => f.minTXID <= t && t <= f.maxTXID)) expected.push(t);
        }
        const got = missingRanges(files, from, to).flatMap((r) => {
          assert.ok(r.from <= r.to);
          return Array.from({ length: r.to - r.from + 1 }, (_, i) => r.from + i);
        });
        assert.deepEqual(got, expected);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("chainGaps: from every snapshot to the newest TXID, across levels", () => {
  const files = [fi(9, 1, 10), fi(9, 1, 20), fi(1, 11, 14), fi(0, 17, 20), fi(0, 21, 21), fi(0, 23, 25)];
  assert.deepEqual(chainGaps(files), [
    { range: { from: 15, to: 16 }, after: "snapshot 1-10" },
    { range: { from: 22, to: 22 }, after: "snapshot 1-10" },
  ]);
  // Without a snapshot the chain must start at TXID 1.
  assert.deepEqual(chainGaps([fi(0, 3, 3), fi(0, 4, 4)]), [{
    range: { from: 1, to: 2 },
    after: "TXID 1 (there is no snapshot)",
  }]);
  assert.deepEqual(chainGaps([fi(0, 1, 1), fi(1, 1, 4), fi(0, 4, 4)]), []);
});

Deno.test("levelGaps: holes inside a level, covered or not by other levels", () => {
  const files = [fi(0, 1, 1), fi(0, 4, 4), fi(0, 8, 8), fi(1, 1, 5)];
  assert.deepEqual(levelGaps(files), [
    { level: 0, from: 2, to: 3, covered: true },
    { level: 0, from: 5, to: 7, covered: false },
  ]);
});

Deno.test("summariseLevels: per level range, count, bytes, newest", () => {
  const s = summariseLevels([fi(0, 5, 5, 50, 3), fi(0, 6, 7, 70, 4), fi(9, 1, 4, 40, 9)]);
  assert.deepEqual(s.map((l) => [l.level, l.minTXID, l.maxTXID, l.files, l.bytes, l.newest.getTime()]), [
    [0, 5, 7, 2, 7, 70],
    [9, 1, 4, 1, 9, 40],
  ]);
});

async function withReplica(
  fn: (c: ReplicaClient, store: MemoryObjectStore, times: number[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-" });
  try {
    const h = sampleHistory(dir, 10);
    const store = new MemoryObjectStore("s3");
    store.now = () => h.times[10]; // S3 LastModified: the upload time
    const client = new ReplicaClient(store, "app");
    await putLtx(client, h, 9, 1, 4);
    await putLtx(client, h, 1, 5, 7);
    await putL0Range(client, h, 5, 10);
    await fn(client, store, h.times);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("verifyReplica: a sound replica is ok, sha256 metadata checked, event emitted, restore reached", async () => {
  await withReplica(async (client, store, times) => {
    store.objects.set("app/lease.json", {
      body: new Uint8Array(2),
      metadata: {},
      lastModified: new Date(),
      etag: "x",
    });
    const bus = new EventBus();
    const events: WalrustEvent[] = [];
    bus.subscribe((e) => void events.push(e));
    const r = await verifyReplica(client, {
      bus,
      restore: true,
      now: () => times[10] + 1000,
      maxAgeMs: 60_000,
    });
    assert.equal(r.ok, true, r.message);
    assert.equal(r.exitCode, 0);
    assert.equal(r.files, 8);
    assert.equal(r.filesOk, 8);
    assert.equal(r.sha256Checked, 8);
    assert.equal(r.objects, 9);
    assert.deepEqual(r.otherObjects, ["app/lease.json"]);
    assert.equal(r.newestTxid, 10);
    assert.equal(r.restore?.txid, 10);
    assert.deepEqual(events.map((e) => e.type), ["verify"]);
  });
});

Deno.test("verifyReplica: corruption, sha256 mismatch, gaps and staleness each fail with their exit code", async () => {
  await withReplica(async (client, store, times) => {
    // Stale only.
    let r = await verifyReplica(client, { now: () => times[10] + 3_600_000, maxAgeMs: 60_000 });
    assert.equal(r.exitCode, 9);
    assert.equal(r.problems[0].kind, "stale");

    // A gap: delete L0 8 (L1 covers only 5-7).
    await client.deleteLtxFiles([{ level: 0, minTXID: 8, maxTXID: 8 }]);
    r = await verifyReplica(client);
    assert.equal(r.exitCode, 8);
    assert.deepEqual(r.gaps, [{ from: 8, to: 8 }]);
    assert.match(r.problems[0].message, /TXID 8 missing from the backup chain \(after snapshot 1-4/);

    // Corruption outranks the gap: flip a byte in the L1 file.
    const key = client.ltxKey(1, 5, 7);
    const e = store.objects.get(key)!;
    const bad = e.body.slice();
    bad[bad.length - 3] ^= 1;
    store.objects.set(key, { ...e, body: bad });
    const bus = new EventBus();
    const events: WalrustEvent[] = [];
    bus.subscribe((ev) => void events.push(ev));
    r = await verifyReplica(client, { bus });
    assert.equal(r.exitCode, 7);
    assert.equal(r.problems[0].object, key);
    assert.equal(r.filesOk, r.files - 1);
    assert.deepEqual(events.map((ev) => ev.type).sort(), ["corruption_detected", "verify", "verify_failed"]);
    const failed = events.find((ev) => ev.type === "verify_failed");
    assert.ok(failed && failed.type === "verify_failed" && failed.exitCode === 7 && failed.db === "app");

    // A body altered consistently with nothing but its sha256 metadata: the metadata check catches it.
    store.objects.set(key, { ...e, metadata: { ...e.metadata, sha256: "0".repeat(64) } });
    r = await verifyReplica(client);
    assert.equal(r.exitCode, 7);
    assert.match(r.problems[0].message, /sha256/);
  });
});

Deno.test("verifyReplica: nothing found is exit 10; a header/name mismatch is corruption", async () => {
  const store = new MemoryObjectStore("file");
  const r = await verifyReplica(new ReplicaClient(store, "nope"));
  assert.equal(r.exitCode, 10);
  await withReplica(async (client, s) => {
    const from = client.ltxKey(0, 10, 10);
    const e = s.objects.get(from)!;
    s.objects.delete(from);
    s.objects.set(client.ltxKey(0, 10, 11), e);
    const v = await verifyReplica(client);
    assert.equal(v.exitCode, 7);
    assert.match(v.problems[0].message, /header says TXIDs 10–10 but the name says 10–11/);
  });
});
