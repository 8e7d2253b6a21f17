/**
 * The monthly cost model behind `walrust explain`: request counts (PUT/GET/LIST/DELETE), storage after
 * retention, and egress, priced for AWS S3 Standard, Tigris and Cloudflare R2. Pure arithmetic, so the
 * numbers can be asserted in tests.
 *
 * The model, per database, for W writes (transactions) per second over a 30-day month:
 * - a file is uploaded for a level with interval I only when that interval saw a write:
 *   files/month = month × min(W, 1/I). So L0 at the sync interval, each compaction level at its interval;
 * - one snapshot per snapshot interval while there are writes;
 * - compaction of level i ≥ 2 downloads every level i−1 file once (GET; L1 is built from the local
 *   queue's L0 files), and every level lists once per tick (LIST);
 * - retention runs once per top compaction interval and lists every level plus snapshots; in steady state
 *   every uploaded file is eventually deleted (DELETE, free at all three providers);
 * - `verify` (validation interval) lists every level and downloads one restore chain;
 * - a file holds min(database pages, W × window × pages-per-write) pages; a snapshot is the whole database;
 *   sizes are uncompressed (LZ4 usually shrinks them: an upper bound);
 * - retained: the snapshots GFS keeps (simulated), the top level's files back to the oldest kept snapshot
 *   (point-in-time restore), lower levels until compacted up (one interval of the next level), L0 for
 *   one L1 interval plus 5 minutes;
 * - egress = everything downloaded (compaction inputs, verification), as if from outside the provider.
 *
 * @module
 */

import type { RetentionSettings } from "./types.ts";

/** Seconds in the 30-day month every estimate uses. */
export const MONTH_SECONDS = 30 * 86_400;

/** Bytes in one billed GB (the providers bill binary gigabytes). */
export const GB = 1024 ** 3;

/** Pages one write (transaction) is assumed to change: a table leaf and an index leaf. */
export const PAGES_PER_WRITE = 2;

/** One provider's list prices in USD. */
export interface ProviderPrice {
  /** Provider and storage class. */
  name: string;
  /** Storage, per GB-month. */
  storagePerGbMonth: number;
  /** PUT/COPY/POST/LIST ("class A" at R2 and Tigris), per 1 000 requests. */
  classAPer1000: number;
  /** GET/HEAD ("class B"), per 1 000 requests. */
  classBPer1000: number;
  /** DELETE, per 1 000 requests. */
  deletePer1000: number;
  /** Data transfer out to the internet, per GB. */
  egressPerGb: number;
  /** Where the numbers come from. */
  source: string;
}

/**
 * List prices, free tiers not included (they are per account, not per database).
 * Sources, as published in 2025:
 * - AWS S3 Standard, us-east-1: https://aws.amazon.com/s3/pricing/ — storage $0.023/GB-month (first 50 TB),
 *   PUT/COPY/POST/LIST $0.005 per 1 000, GET $0.0004 per 1 000, DELETE free, transfer out $0.09/GB (first
 *   10 TB; the first 100 GB/month are free).
 * - Tigris Standard: https://www.tigrisdata.com/docs/pricing/ — storage $0.02/GB-month, class A (PUT, COPY,
 *   POST, LIST) $0.005 per 1 000, class B (GET, HEAD, …) $0.0005 per 1 000, DELETE free, no egress fees.
 * - Cloudflare R2 Standard: https://developers.cloudflare.com/r2/pricing/ — storage $0.015/GB-month, class A
 *   (PUT, COPY, POST, LIST) $4.50 per million, class B (GET, HEAD) $0.36 per million, DELETE free, free egress.
 */
export const PRICES: readonly ProviderPrice[] = [
  {
    name: "AWS S3 Standard",
    storagePerGbMonth: 0.023,
    classAPer1000: 0.005,
    classBPer1000: 0.0004,
    deletePer1000: 0,
    egressPerGb: 0.09,
    source: "https://aws.amazon.com/s3/pricing/ (us-east-1)",
  },
  {
    name: "Tigris",
    storagePerGbMonth: 0.02,
    classAPer1000: 0.005,
    classBPer1000: 0.0005,
    deletePer1000: 0,
    egressPerGb: 0,
    source: "https://www.tigrisdata.com/docs/pricing/",
  },
  {
    name: "Cloudflare R2",
    storagePerGbMonth: 0.015,
    classAPer1000: 0.0045,
    classBPer1000: 0.00036,
    deletePer1000: 0,
    egressPerGb: 0,
    source: "https://developers.cloudflare.com/r2/pricing/",
  },
];

/** What the estimate depends on. Durations in ms. */
export interface CostInput {
  /** Write transactions per second (0 = idle). */
  writesPerSecond: number;
  /** Database file size in bytes. */
  dbSizeBytes: number;
  /** SQLite page size. */
  pageSize: number;
  /** Sync interval (one L0 file per interval with writes). */
  syncIntervalMs: number;
  /** Snapshot interval. */
  snapshotIntervalMs: number;
  /** Compaction level intervals (levels 1..n). */
  compactionIntervalsMs: number[];
  /** GFS snapshot retention. */
  retention: RetentionSettings;
  /** Verification interval (0 = off). */
  validationIntervalMs: number;
}

/** Request counts, storage and egress for one month, and the price at each provider. */
export interface CostEstimate {
  /** PUT requests. */
  puts: { l0: number; compaction: number[]; snapshot: number; total: number };
  /** GET requests. */
  gets: { compaction: number; validation: number; total: number };
  /** LIST requests. */
  lists: { compaction: number; retention: number; validation: number; total: number };
  /** DELETE requests (retention; free at every provider listed). */
  deletes: number;
  /** Bytes uploaded per month. */
  uploadBytes: number;
  /** Bytes stored in steady state after retention. */
  storage: {
    snapshots: number;
    oldestSnapshotAgeMs: number;
    snapshotBytes: number;
    incrementalBytes: number;
    totalBytes: number;
  };
  /** Bytes downloaded per month (priced as egress). */
  egressBytes: number;
  /** Monthly cost at each provider, USD. */
  providers: {
    name: string;
    storage: number;
    classA: number;
    classB: number;
    deletes: number;
    egress: number;
    total: number;
  }[];
}

/**
 * How many snapshots GFS retention keeps when one is taken every `snapshotIntervalMs`, and the age of the
 * oldest. Tiers are sliding windows (hour, day, 7 days, 30 days) ending now; each keeps the newest snapshot
 * in each of its last N windows; the newest snapshot is always kept.
 */
export function retainedSnapshots(
  snapshotIntervalMs: number,
  retention: RetentionSettings,
): { count: number; oldestAgeMs: number } {
  const kept = new Set<number>([0]);
  const tiers: [number, number][] = [
    [retention.hourly, 3_600_000],
    [retention.daily, 86_400_000],
    [retention.weekly, 7 * 86_400_000],
    [retention.monthly, 30 * 86_400_000],
  ];
  for (const [count, period] of tiers) {
    for (let k = 0; k < count; k++) {
      // Snapshot j was taken j intervals ago; the newest one in window k is the first at or after k periods.
      const j = Math.ceil((k * period) / snapshotIntervalMs);
      if (j * snapshotIntervalMs < (k + 1) * period) kept.add(j);
    }
  }
  return { count: kept.size, oldestAgeMs: Math.max(...kept) * snapshotIntervalMs };
}

/** Estimates one database's month. */
export function estimateMonthlyCost(
  input: CostInput,
  prices: readonly ProviderPrice[] = PRICES,
): CostEstimate {
  const W = Math.max(0, input.writesPerSecond);
  const M = MONTH_SECONDS;
  const dbPages = Math.max(1, Math.ceil(input.dbSizeBytes / input.pageSize));
  const sec = (ms: number) => ms / 1000;
  /** Files per second written for a level with this interval (one per interval that saw a write). */
  const rate = (intervalMs: number) => (W > 0 ? Math.min(W, 1 / sec(intervalMs)) : 0);
  /** Bytes of one file covering one interval (at least one write). */
  const fileBytes = (intervalMs: number) => {
    if (W === 0) return 0;
    const window = Math.max(sec(intervalMs), 1 / W);
    return Math.min(dbPages, Math.max(1, W * window * PAGES_PER_WRITE)) * input.pageSize;
  };
  const levels = input.compactionIntervalsMs;
  const n = levels.length;
  const intervals = [input.syncIntervalMs, ...levels]; // index 0 = L0
  const puts = intervals.map((iv) => M * rate(iv));
  const bytes = intervals.map((iv) => fileBytes(iv));
  const snapshotPuts = W > 0 ? M / sec(input.snapshotIntervalMs) : 0;
  const snapshotBytes = W > 0 ? input.dbSizeBytes : 0;

  // Compaction: level i reads every level i-1 file once and lists once per tick. L1 is built from the
  // local queue's L0 files (as Litestream does), so only levels 2.. download.
  let compactionGets = 0;
  let egress = 0;
  for (let i = 2; i <= n; i++) {
    compactionGets += puts[i - 1];
    egress += puts[i - 1] * bytes[i - 1];
  }
  const compactionLists = levels.reduce((s, iv) => s + M / sec(iv), 0);
  // Retention: one pass per top-level interval (or per hour without compaction) over every level + L9.
  const retentionEvery = n > 0 ? levels[n - 1] : 3_600_000;
  const retentionLists = (M / sec(retentionEvery)) * (n + 2);

  // Verification: one restore chain per run: snapshot + top level since it + one interval of each level below.
  let validationGets = 0;
  let validationLists = 0;
  if (input.validationIntervalMs > 0) {
    const runs = M / sec(input.validationIntervalMs);
    let chainFiles = 1;
    let chainBytes = input.dbSizeBytes;
    for (let i = 0; i <= n; i++) {
      const window = i === n ? input.snapshotIntervalMs : intervals[i + 1];
      const files = rate(intervals[i]) * sec(window);
      chainFiles += files;
      chainBytes += files * bytes[i];
    }
    validationGets = runs * chainFiles;
    validationLists = runs * (n + 2);
    egress += runs * chainBytes;
  }

  // Storage after retention.
  const snaps = retainedSnapshots(input.snapshotIntervalMs, input.retention);
  const keptSnapshotBytes = snaps.count * input.dbSizeBytes;
  let incremental = 0;
  for (let i = 0; i <= n; i++) {
    const keepMs = i === n
      ? Math.max(snaps.oldestAgeMs, input.snapshotIntervalMs)
      : intervals[i + 1] + (i === 0 ? 300_000 : 0);
    incremental += rate(intervals[i]) * sec(keepMs) * bytes[i];
  }
  const totalBytes = keptSnapshotBytes + incremental;

  const putTotal = puts.reduce((s, x) => s + x, 0) + snapshotPuts;
  const listTotal = compactionLists + retentionLists + validationLists;
  const getTotal = compactionGets + validationGets;
  const deletes = putTotal;
  const uploadBytes = puts.reduce((s, x, i) => s + x * bytes[i], 0) + snapshotPuts * snapshotBytes;
  return {
    puts: { l0: puts[0], compaction: puts.slice(1), snapshot: snapshotPuts, total: putTotal },
    gets: { compaction: compactionGets, validation: validationGets, total: getTotal },
    lists: {
      compaction: compactionLists,
      retention: retentionLists,
      validation: validationLists,
      total: listTotal,
    },
    deletes,
    uploadBytes,
    storage: {
      snapshots: snaps.count,
      oldestSnapshotAgeMs: snaps.oldestAgeMs,
      snapshotBytes: keptSnapshotBytes,
      incrementalBytes: incremental,
      totalBytes,
    },
    egressBytes: egress,
    providers: prices.map((p) => {
      const storage = (totalBytes / GB) * p.storagePerGbMonth;
      const classA = ((putTotal + listTotal) / 1000) * p.classAPer1000;
      const classB = (getTotal / 1000) * p.classBPer1000;
      const del = (deletes / 1000) * p.deletePer1000;
      const eg = (egress / GB) * p.egressPerGb;
      return {
        name: p.name,
        storage,
        classA,
        classB,
        deletes: del,
        egress: eg,
        total: storage + classA + classB + del + eg,
      };
    }),
  };
}
