import assert from "node:assert/strict";
import { bucketIndex, bucketLabel, type GfsSnapshot, selectGfs } from "./gfs.ts";

const at = (iso: string): number => Date.parse(iso);

interface Snap extends GfsSnapshot {
  name: string;
}

function snaps(...isos: string[]): Snap[] {
  return isos.map((iso, i) => ({ name: iso, maxTXID: (i + 1) * 10, createdAt: new Date(iso) }));
}

const NONE = { hourly: 0, daily: 0, weekly: 0, monthly: 0 };

/** Runs a selection and returns kept names → reasons, dropped names → reason. */
function run(list: Snap[], policy: Partial<typeof NONE>, now: string) {
  const sel = selectGfs(list, { ...NONE, ...policy }, at(now));
  return {
    keep: Object.fromEntries(sel.keep.map((d) => [d.snapshot.name, d.keptBy.join(", ")])),
    drop: Object.fromEntries(sel.drop.map((d) => [d.snapshot.name, d.dropReason])),
  };
}

Deno.test("gfs: hourly tier keeps the newest snapshot of each of the last N hours (UTC, boundaries inclusive)", () => {
  const r = run(
    snaps(
      "2025-03-10T09:59:59.999Z", // hour 09: outside the 3-hour window (10, 11, 12)
      "2025-03-10T10:00:00.000Z", // hour 10, superseded by 10:30
      "2025-03-10T10:30:00.000Z",
      "2025-03-10T11:59:59.999Z", // last millisecond of hour 11
      "2025-03-10T12:00:00.000Z", // first millisecond of hour 12, superseded by 12:20
      "2025-03-10T12:20:00.000Z",
    ),
    { hourly: 3 },
    "2025-03-10T12:30:00Z",
  );
  assert.deepEqual(r.keep, {
    "2025-03-10T10:30:00.000Z": "hourly 2025-03-10T10",
    "2025-03-10T11:59:59.999Z": "hourly 2025-03-10T11",
    "2025-03-10T12:20:00.000Z": "newest, hourly 2025-03-10T12",
  });
  assert.deepEqual(r.drop, {
    "2025-03-10T09:59:59.999Z": "older than every GFS tier keeps (3 hours)",
    "2025-03-10T10:00:00.000Z": "a newer snapshot represents hour 2025-03-10T10",
    "2025-03-10T12:00:00.000Z": "a newer snapshot represents hour 2025-03-10T12",
  });
});

Deno.test("gfs: daily tier at an exact midnight counts today and yesterday; empty days still count", () => {
  const list = snaps(
    "2025-03-07T12:00:00Z", // three days back: outside daily 2
    "2025-03-08T23:59:59.999Z",
    "2025-03-09T00:00:00.000Z",
    "2025-03-09T23:00:00.000Z",
    "2025-03-10T00:00:00.000Z",
  );
  const r = run(list, { daily: 2 }, "2025-03-10T00:00:00.000Z");
  assert.deepEqual(Object.keys(r.keep), ["2025-03-09T23:00:00.000Z", "2025-03-10T00:00:00.000Z"]);
  assert.equal(r.keep["2025-03-10T00:00:00.000Z"], "newest, daily 2025-03-10");
  assert.equal(r.drop["2025-03-09T00:00:00.000Z"], "a newer snapshot represents day 2025-03-09");
  assert.match(r.drop["2025-03-08T23:59:59.999Z"]!, /older than every GFS tier keeps \(2 days\)/);
  // One millisecond earlier, "today" is 03-09: the window is 03-08 and 03-09, and 03-10 is in the future.
  const earlier = run(list, { daily: 2 }, "2025-03-09T23:59:59.999Z");
  assert.deepEqual(Object.keys(earlier.keep), [
    "2025-03-08T23:59:59.999Z",
    "2025-03-09T23:00:00.000Z",
    "2025-03-10T00:00:00.000Z",
  ]);
});

Deno.test("gfs: weekly tier uses ISO weeks (Monday 00:00 UTC starts a week, across a year boundary)", () => {
  const r = run(
    snaps(
      "2024-12-29T12:00:00Z", // Sunday: 2024-W52
      "2024-12-30T00:00:00Z", // Monday: 2025-W01, superseded by Sunday 01-05
      "2025-01-05T23:59:59Z", // Sunday: still 2025-W01
      "2025-01-06T00:00:00Z", // Monday: 2025-W02, superseded by 01-07
      "2025-01-07T08:00:00Z",
    ),
    { weekly: 2 },
    "2025-01-08T10:00:00Z",
  );
  assert.deepEqual(r.keep, {
    "2025-01-05T23:59:59Z": "weekly 2025-W01",
    "2025-01-07T08:00:00Z": "newest, weekly 2025-W02",
  });
  assert.equal(r.drop["2024-12-29T12:00:00Z"], "older than every GFS tier keeps (2 weeks)");
  assert.equal(r.drop["2024-12-30T00:00:00Z"], "a newer snapshot represents week 2025-W01");
  assert.equal(r.drop["2025-01-06T00:00:00Z"], "a newer snapshot represents week 2025-W02");
});

Deno.test("gfs: monthly tier uses calendar months (UTC), including February's last day", () => {
  const r = run(
    snaps(
      "2024-12-31T23:59:59Z",
      "2025-01-01T00:00:00Z",
      "2025-01-31T23:59:59Z",
      "2025-02-28T23:00:00Z",
      "2025-03-01T00:00:00Z",
    ),
    { monthly: 3 },
    "2025-03-15T00:00:00Z",
  );
  assert.deepEqual(Object.keys(r.keep), [
    "2025-01-31T23:59:59Z",
    "2025-02-28T23:00:00Z",
    "2025-03-01T00:00:00Z",
  ]);
  assert.equal(r.keep["2025-02-28T23:00:00Z"], "monthly 2025-02");
  assert.equal(r.drop["2025-01-01T00:00:00Z"], "a newer snapshot represents month 2025-01");
  assert.equal(r.drop["2024-12-31T23:59:59Z"], "older than every GFS tier keeps (3 months)");
});

Deno.test("gfs: tiers combine; a snapshot kept by several tiers lists them all; newest always kept", () => {
  // Daily snapshots at 02:00 for 60 days up to 2025-03-01.
  const list: Snap[] = [];
  for (let d = 0; d < 60; d++) {
    const ms = Date.UTC(2025, 0, 1, 2) + d * 86_400_000;
    list.push({ name: new Date(ms).toISOString().slice(0, 10), maxTXID: d + 1, createdAt: new Date(ms) });
  }
  const now = "2025-03-01T12:00:00Z";
  const r = run(list, { hourly: 24, daily: 7, weekly: 4, monthly: 3 }, now);
  assert.deepEqual(Object.keys(r.keep), [
    "2025-01-31", // monthly 2025-01 (its newest)
    "2025-02-09", // weekly 2025-W06 (a Sunday)
    "2025-02-16", // weekly 2025-W07
    "2025-02-23", // daily window: 02-23 … 03-01
    "2025-02-24",
    "2025-02-25",
    "2025-02-26",
    "2025-02-27",
    "2025-02-28",
    "2025-03-01",
  ]);
  assert.equal(
    r.keep["2025-03-01"],
    "newest, hourly 2025-03-01T02, daily 2025-03-01, weekly 2025-W09, monthly 2025-03",
  );
  assert.equal(r.keep["2025-02-23"], "daily 2025-02-23, weekly 2025-W08");
  assert.equal(r.keep["2025-02-28"], "daily 2025-02-28, monthly 2025-02");
  // Zero counts keep only the newest.
  const zero = run(list, {}, now);
  assert.deepEqual(Object.keys(zero.keep), ["2025-03-01"]);
  assert.equal(zero.drop["2025-01-01"], "older than every GFS tier keeps (all tiers are 0)");
  assert.equal(Object.keys(zero.drop).length, 59);
});

Deno.test("gfs: a snapshot from the future (clock skew) is kept; ties in time are broken by TXID", () => {
  const list: Snap[] = [
    { name: "a", maxTXID: 5, createdAt: new Date("2025-03-10T12:10:00Z") },
    { name: "b", maxTXID: 7, createdAt: new Date("2025-03-10T12:10:00Z") },
    { name: "future", maxTXID: 9, createdAt: new Date("2025-03-10T15:00:00Z") },
  ];
  const r = run(list, { hourly: 1 }, "2025-03-10T12:30:00Z");
  assert.deepEqual(r.keep, { b: "hourly 2025-03-10T12", future: "newest, hourly 2025-03-10T15" });
  assert.deepEqual(Object.keys(r.drop), ["a"]);
  assert.deepEqual(selectGfs([], { ...NONE, hourly: 3 }, 0), { keep: [], drop: [] });
});

Deno.test("gfs: invalid counts are rejected", () => {
  assert.throws(() => selectGfs([], { ...NONE, daily: -1 }, 0), RangeError);
  assert.throws(() => selectGfs([], { ...NONE, weekly: 1.5 }, 0), RangeError);
});

Deno.test("gfs: bucket labels and indices (ISO week-years, 53-week years)", () => {
  const cases: [string, string, string, string, string][] = [
    ["2021-01-03T23:59:59Z", "2021-01-03T23", "2021-01-03", "2020-W53", "2021-01"],
    ["2021-01-04T00:00:00Z", "2021-01-04T00", "2021-01-04", "2021-W01", "2021-01"],
    ["2026-12-31T12:00:00Z", "2026-12-31T12", "2026-12-31", "2026-W53", "2026-12"],
    ["2027-01-01T00:00:00Z", "2027-01-01T00", "2027-01-01", "2026-W53", "2027-01"],
    ["2024-12-30T00:00:00Z", "2024-12-30T00", "2024-12-30", "2025-W01", "2024-12"],
    ["1970-01-01T00:00:00Z", "1970-01-01T00", "1970-01-01", "1970-W01", "1970-01"],
  ];
  for (const [iso, h, d, w, m] of cases) {
    const ms = at(iso);
    assert.deepEqual(
      [
        bucketLabel("hourly", ms),
        bucketLabel("daily", ms),
        bucketLabel("weekly", ms),
        bucketLabel("monthly", ms),
      ],
      [h, d, w, m],
      iso,
    );
  }
  assert.equal(
    bucketIndex("weekly", at("2025-01-05T23:59:59Z")) + 1,
    bucketIndex("weekly", at("2025-01-06T00:00Z")),
  );
  assert.equal(
    bucketIndex("monthly", at("2025-12-31T23:59:59Z")) + 1,
    bucketIndex("monthly", at("2026-01-01T00:00Z")),
  );
  assert.equal(
    bucketIndex("hourly", at("2025-01-01T00:59:59.999Z")) + 1,
    bucketIndex("hourly", at("2025-01-01T01:00Z")),
  );
});
