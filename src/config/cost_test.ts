import assert from "node:assert/strict";
import fc from "fast-check";
import { type CostInput, estimateMonthlyCost, GB, MONTH_SECONDS, PRICES, retainedSnapshots } from "./cost.ts";
import { DEFAULTS } from "./types.ts";

const base: CostInput = {
  writesPerSecond: 1,
  dbSizeBytes: 100 * 1024 * 1024,
  pageSize: 4096,
  syncIntervalMs: 1000,
  snapshotIntervalMs: 24 * 3_600_000,
  compactionIntervalsMs: [30_000, 300_000, 3_600_000],
  retention: { ...DEFAULTS.retention },
  validationIntervalMs: 0,
};

function close(actual: number, expected: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );
}

Deno.test("cost: 1 write/s at a 1 s sync interval = 2 592 000 L0 PUTs a month", () => {
  const c = estimateMonthlyCost(base);
  assert.equal(MONTH_SECONDS, 2_592_000);
  assert.equal(c.puts.l0, 2_592_000);
  assert.deepEqual(c.puts.compaction, [86_400, 8_640, 720]);
  assert.equal(c.puts.snapshot, 30);
  assert.equal(c.puts.total, 2_592_000 + 86_400 + 8_640 + 720 + 30);
  // L1 reads the local queue; L2 reads every L1 file, L3 every L2 file.
  assert.equal(c.gets.compaction, 86_400 + 8_640);
  // One LIST per compaction tick per level + one retention pass per hour over L0..L3 + L9.
  assert.equal(c.lists.compaction, 86_400 + 8_640 + 720);
  assert.equal(c.lists.retention, 720 * 5);
  assert.equal(c.lists.validation, 0);
  assert.equal(c.deletes, c.puts.total);
});

Deno.test("cost: provider prices are applied to the request counts", () => {
  const c = estimateMonthlyCost(base);
  const classA = c.puts.total + c.lists.total;
  const aws = c.providers.find((p) => p.name === "AWS S3 Standard")!;
  close(aws.classA, (classA / 1000) * 0.005, "S3 PUT+LIST");
  close(aws.classB, (c.gets.total / 1000) * 0.0004, "S3 GET");
  close(aws.storage, (c.storage.totalBytes / GB) * 0.023, "S3 storage");
  close(aws.egress, (c.egressBytes / GB) * 0.09, "S3 egress");
  close(aws.total, aws.classA + aws.classB + aws.storage + aws.egress, "S3 total");
  // 2 687 790 PUTs + 99 360 LISTs at $0.005 per 1 000.
  close(aws.classA, 13.93575, "S3 class A in dollars");
  const r2 = c.providers.find((p) => p.name === "Cloudflare R2")!;
  close(r2.classA, (classA / 1e6) * 4.5, "R2 class A");
  close(r2.classB, (c.gets.total / 1e6) * 0.36, "R2 class B");
  assert.equal(r2.egress, 0, "R2 has free egress");
  const tigris = c.providers.find((p) => p.name === "Tigris")!;
  close(tigris.classB, (c.gets.total / 1000) * 0.0005, "Tigris class B");
  assert.equal(tigris.egress, 0);
  assert.equal(c.providers.length, PRICES.length);
});

Deno.test("cost: fewer writes than sync intervals means one L0 file per write", () => {
  const c = estimateMonthlyCost({ ...base, writesPerSecond: 0.1 });
  close(c.puts.l0, 259_200, "L0");
  assert.deepEqual(c.puts.compaction, [86_400, 8_640, 720]);
  const fast = estimateMonthlyCost({ ...base, writesPerSecond: 50, syncIntervalMs: 200 });
  assert.equal(fast.puts.l0, 12_960_000, "5 syncs per second");
  const idle = estimateMonthlyCost({ ...base, writesPerSecond: 0 });
  assert.equal(idle.puts.total, 0);
  assert.equal(idle.gets.total, 0);
  assert.ok(idle.lists.total > 0, "compaction and retention still list");
});

Deno.test("cost: file sizes and storage after retention", () => {
  // 1 write/s × 2 pages × 4 KiB: L0 = 8 KiB, L1 = 30 s = 480 KiB, L2 = 4.7 MiB, L3 capped at the 100 MiB db.
  const c = estimateMonthlyCost(base);
  const l0 = 8192;
  const l1 = 30 * 8192;
  const l2 = 300 * 8192;
  const l3 = Math.min(3600 * 8192, base.dbSizeBytes);
  close(
    c.uploadBytes,
    2_592_000 * l0 + 86_400 * l1 + 8_640 * l2 + 720 * l3 + 30 * base.dbSizeBytes,
    "uploaded",
  );
  close(c.egressBytes, 86_400 * l1 + 8_640 * l2, "downloaded by compaction");
  assert.equal(c.storage.snapshots, 29);
  assert.equal(c.storage.snapshotBytes, 29 * base.dbSizeBytes);
  const keptTop = (330 * 86_400 / 3600) * l3; // L3 back to the oldest snapshot (330 days)
  const keptLower = (30 + 300) * l0 + (300 / 30) * l1 + (3600 / 300) * l2;
  close(c.storage.incrementalBytes, keptTop + keptLower, "incremental");
  const verified = estimateMonthlyCost({ ...base, validationIntervalMs: 86_400_000 });
  // 30 runs: snapshot + 24 L3 + 12 L2 + 10 L1 + 30 L0 files, and one LIST per level + L9.
  close(verified.gets.validation, 30 * (1 + 24 + 12 + 10 + 30), "verify GETs");
  assert.equal(verified.lists.validation, 30 * 5);
});

Deno.test("cost: GFS retention keeps the expected snapshots", () => {
  assert.deepEqual(retainedSnapshots(24 * 3_600_000, DEFAULTS.retention), {
    count: 29,
    oldestAgeMs: 330 * 86_400_000,
  });
  assert.deepEqual(retainedSnapshots(3_600_000, { hourly: 24, daily: 7, weekly: 0, monthly: 0 }), {
    count: 30,
    oldestAgeMs: 144 * 3_600_000,
  });
  assert.deepEqual(retainedSnapshots(3_600_000, { hourly: 0, daily: 0, weekly: 0, monthly: 0 }), {
    count: 1,
    oldestAgeMs: 0,
  });
});

Deno.test("cost: property: counts are bounded by both the write rate and the intervals, and monotonic in W", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 0, max: 1000, noNaN: true }),
      fc.double({ min: 0, max: 1000, noNaN: true }),
      fc.integer({ min: 100, max: 3_600_000 }),
      (w1, w2, syncMs) => {
        const lo = Math.min(w1, w2);
        const hi = Math.max(w1, w2);
        const a = estimateMonthlyCost({ ...base, writesPerSecond: lo, syncIntervalMs: syncMs });
        const b = estimateMonthlyCost({ ...base, writesPerSecond: hi, syncIntervalMs: syncMs });
        const eps = 1e-6;
        assert.ok(a.puts.l0 <= MONTH_SECONDS * lo + eps);
        assert.ok(a.puts.l0 <= (MONTH_SECONDS * 1000) / syncMs + eps);
        assert.ok(a.puts.total <= b.puts.total + eps);
        for (let i = 0; i < PRICES.length; i++) {
          assert.ok(a.providers[i].total <= b.providers[i].total + eps);
          assert.ok(a.providers[i].total >= 0);
        }
      },
    ),
    { numRuns: 200 },
  );
});
