import assert from "node:assert/strict";
import { formatBytes, formatProgressLine, Progress } from "./progress.ts";

Deno.test("progress: byte formatting", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(50 * 1024 * 1024), "50.0 MiB");
  assert.equal(formatBytes(300 * 1024 * 1024), "300 MiB");
});

Deno.test("progress: the line shows bytes, total, percentage, rate and ETA", () => {
  const mib = 1024 * 1024;
  const line = formatProgressLine("restoring app", 10 * mib, 40 * mib, 2000);
  assert.equal(line, "restoring app  10.0 MiB / 40.0 MiB  25%  5.00 MiB/s  ETA 6s");
  assert.equal(formatProgressLine("x", 1024, undefined, 1000), "x  1.00 KiB  1.00 KiB/s");
});

Deno.test("progress: silent when stderr is not a terminal", () => {
  let out = "";
  const p = new Progress({ stderr: (t) => void (out += t), isTTY: false }, { label: "x", total: 100 });
  p.update(50);
  p.finish();
  assert.equal(out, "");
  assert.equal(p.active, false);
});

Deno.test("progress: on a terminal it redraws in place, throttled, and clears on finish", () => {
  let out = "";
  let now = 0;
  const p = new Progress({ stderr: (t) => void (out += t), isTTY: true }, {
    label: "r",
    total: 1000,
    intervalMs: 100,
    now: () => now,
  });
  now = 1000;
  p.update(100);
  now = 1050;
  p.update(200); // within the interval: not drawn
  now = 1200;
  p.update(600);
  p.finish();
  const draws = out.split("\r").filter((s) => s.length > 0);
  assert.equal(draws.length, 3, JSON.stringify(out));
  assert.match(draws[0], /^r {2}100 B \/ 1000 B {2}10%/);
  assert.match(draws[1], /600 B \/ 1000 B {2}60%/);
  assert.equal(draws[2], "\x1b[K");
});
