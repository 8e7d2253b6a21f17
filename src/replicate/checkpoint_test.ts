/** The checkpoint policy (Litestream's thresholds and order) as a pure function, plus a property test. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type CheckpointPolicy, decideCheckpoint, framesBefore } from "./checkpoint.ts";

const policy: CheckpointPolicy = {
  minCheckpointPages: 1000,
  truncatePages: 121_359,
  checkpointIntervalMs: 60_000,
};
const base = { walFrames: 0, framesAtLastAttempt: 0, lastCheckpointAt: 0, activity: false, now: 1000 };

Deno.test("checkpoint policy: emergency, page threshold, interval with activity, nothing", () => {
  assert.deepEqual(decideCheckpoint(policy, { ...base, walFrames: 121_359 }), { mode: "EMERGENCY" });
  assert.deepEqual(decideCheckpoint(policy, { ...base, walFrames: 1000 }), {
    mode: "PASSIVE",
    reason: "pages",
  });
  assert.equal(decideCheckpoint(policy, { ...base, walFrames: 999 }), null);
  assert.deepEqual(
    decideCheckpoint(policy, { ...base, walFrames: 2, activity: true, now: 60_000 }),
    { mode: "PASSIVE", reason: "interval" },
  );
  assert.equal(decideCheckpoint(policy, { ...base, walFrames: 2, activity: false, now: 60_000 }), null);
  assert.equal(decideCheckpoint(policy, { ...base, walFrames: 1, activity: true, now: 60_000 }), null);
  assert.equal(decideCheckpoint(policy, { ...base, walFrames: 2, activity: true, now: 59_999 }), null);
});

Deno.test("checkpoint policy: a PASSIVE that could not restart the WAL waits for another threshold of pages", () => {
  assert.equal(decideCheckpoint(policy, { ...base, walFrames: 1500, framesAtLastAttempt: 1000 }), null);
  assert.deepEqual(
    decideCheckpoint(policy, { ...base, walFrames: 2000, framesAtLastAttempt: 1000 }),
    { mode: "PASSIVE", reason: "pages" },
  );
  // The emergency threshold is never throttled.
  assert.deepEqual(
    decideCheckpoint(policy, { ...base, walFrames: 121_400, framesAtLastAttempt: 121_000 }),
    { mode: "EMERGENCY" },
  );
});

Deno.test("checkpoint policy: zero thresholds disable their trigger", () => {
  const off: CheckpointPolicy = { minCheckpointPages: 0, truncatePages: 0, checkpointIntervalMs: 0 };
  assert.equal(decideCheckpoint(off, { ...base, walFrames: 10_000_000, activity: true, now: 1e12 }), null);
});

Deno.test("checkpoint policy (property): emergency exactly at or above truncatePages; never with an empty WAL", () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 300_000 }),
    fc.integer({ min: 0, max: 300_000 }),
    fc.boolean(),
    fc.integer({ min: 0, max: 200_000 }),
    (frames, attempt, activity, now) => {
      const d = decideCheckpoint(policy, {
        walFrames: frames,
        framesAtLastAttempt: attempt,
        lastCheckpointAt: 0,
        activity,
        now,
      });
      assert.equal(d?.mode === "EMERGENCY", frames >= policy.truncatePages);
      if (frames <= 1) assert.equal(d, null);
    },
  ));
});

Deno.test("framesBefore counts whole frames after the 32-byte header", () => {
  assert.equal(framesBefore(32, 4096), 0);
  assert.equal(framesBefore(0, 4096), 0);
  assert.equal(framesBefore(32 + 3 * 4120, 4096), 3);
  assert.equal(framesBefore(32 + 2 * 536, 512), 2);
});
