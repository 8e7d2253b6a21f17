import assert from "node:assert/strict";
import fc from "fast-check";
import { UsageError } from "../errors.ts";
import { FileObjectStore } from "../storage/file.ts";
import {
  classifyV3Key,
  formatV3SegmentName,
  formatV3SnapshotName,
  hasV3Data,
  isV3GenerationId,
  listV3Generations,
  MAX_V3_INDEX,
  normalizeV3Root,
  parseV3SegmentName,
  parseV3SnapshotName,
  v3GenerationsPrefix,
  v3SegmentKey,
  v3SnapshotKey,
} from "./v3_layout.ts";

Deno.test("v3 layout: names parse like Litestream v0.5 (v3_test.go vectors)", () => {
  assert.deepEqual(parseV3SegmentName("00000001_00001000.wal.lz4"), { index: 1, offset: 4096 });
  assert.deepEqual(parseV3SegmentName("00000001_0000000000001000.wal.lz4"), { index: 1, offset: 4096 });
  assert.deepEqual(parseV3SegmentName("7fffffff_00000000.wal.lz4"), { index: MAX_V3_INDEX, offset: 0 });
  assert.equal(parseV3SnapshotName("0000000a.snapshot.lz4"), 10);
  for (
    const bad of [
      "80000000_00000000.wal.lz4", // index past int32
      "0000001_00001000.wal.lz4", // 7 hex digits
      "00000001_0001000.wal.lz4",
      "00000001_00000000000010000.wal.lz4", // 17 hex digits
      "0000000A_00001000.wal.lz4", // upper case
      "00000001_00001000.wal",
      "00000001_00001000.wal.lz4.tmp",
      "00000001_ffffffffffffffff.wal.lz4", // offset past 2^53
    ]
  ) assert.equal(parseV3SegmentName(bad), null, bad);
  for (
    const bad of [
      "0000000a.snapshot",
      "000000a.snapshot.lz4",
      "80000000.snapshot.lz4",
      "0000000A.snapshot.lz4",
    ]
  ) {
    assert.equal(parseV3SnapshotName(bad), null, bad);
  }
  assert.ok(isV3GenerationId("0123456789abcdef"));
  assert.ok(!isV3GenerationId("0123456789ABCDEF"));
  assert.ok(!isV3GenerationId("0123456789abcde"));
});

Deno.test("v3 layout: format and parse round-trip for every index and offset", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_V3_INDEX }), fc.maxSafeNat(), (index, offset) => {
      assert.deepEqual(parseV3SegmentName(formatV3SegmentName(index, offset)), { index, offset });
      assert.equal(parseV3SnapshotName(formatV3SnapshotName(index)), index);
    }),
  );
});

Deno.test("v3 layout: keys and roots", () => {
  assert.equal(v3GenerationsPrefix(""), "generations/");
  assert.equal(v3GenerationsPrefix("/a/b/"), "a/b/generations/");
  assert.equal(
    v3SegmentKey("db", "0123456789abcdef", 2, 4152),
    "db/generations/0123456789abcdef/wal/00000002_00001038.wal.lz4",
  );
  assert.equal(
    v3SnapshotKey("", "0123456789abcdef", 2),
    "generations/0123456789abcdef/snapshots/00000002.snapshot.lz4",
  );
  for (const bad of ["a/../b", "a//b", "./a", "a\\b", "a\u0000b"]) {
    assert.throws(() => normalizeV3Root(bad), UsageError, bad);
  }
  const p = "x/generations/";
  assert.deepEqual(classifyV3Key(p, "x/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4"), {
    kind: "snapshot",
    generation: "0123456789abcdef",
    index: 0,
  });
  assert.equal(classifyV3Key(p, "x/generations/0123456789abcdef/wal/sub/00000000_00000000.wal.lz4"), null);
  assert.equal(classifyV3Key(p, "x/generations/0123456789abcdef/other/00000000.snapshot.lz4"), null);
  assert.equal(classifyV3Key(p, "x/generations/0123456789abcdeg/wal/00000000_00000000.wal.lz4"), null);
  assert.equal(classifyV3Key(p, "y/generations/0123456789abcdef/wal/00000000_00000000.wal.lz4"), null);
});

Deno.test("v3 layout: listV3Generations groups, sorts and ignores stray files (file store)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = new FileObjectStore(dir);
    const g1 = "00000000000000aa", g2 = "00000000000000bb";
    const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
    const put = (key: string, s: number, n = 3) => store.put(key, new Uint8Array(n), { mtime: t(s) });
    await put(v3SegmentKey("app", g2, 1, 0), 5);
    await put(v3SegmentKey("app", g2, 0, 4152), 4, 7);
    await put(v3SegmentKey("app", g2, 0, 0), 3);
    await put(v3SnapshotKey("app", g2, 0), 2);
    await put(v3SnapshotKey("app", g1, 0), 1);
    await put("app/generations/" + g1 + "/wal/junk.txt", 1);
    await put("app/generations/NOTAGENERATION/snapshots/00000000.snapshot.lz4", 1);
    await put("app/ltx/0/0000000000000001-0000000000000001.ltx", 1);
    const gens = await listV3Generations(store, "app");
    assert.deepEqual(gens.map((g) => g.id), [g1, g2]);
    assert.equal(gens[0].segments.length, 0);
    assert.deepEqual(gens[1].segments.map((s) => [s.index, s.offset, s.size]), [[0, 0, 3], [0, 4152, 7], [
      1,
      0,
      3,
    ]]);
    assert.equal(gens[1].snapshots[0].createdAt.getTime(), t(2).getTime());
    assert.equal(gens[1].segments[2].key, "app/generations/00000000000000bb/wal/00000001_00000000.wal.lz4");
    assert.ok(await hasV3Data(store, "app"));
    assert.ok(!(await hasV3Data(store, "")));
    assert.deepEqual(await listV3Generations(store, "missing"), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
