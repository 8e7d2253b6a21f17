import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DASHBOARD_CSP, DASHBOARD_HTML, dashboardResponse, statusResponse, statusView } from "./dashboard.ts";
import { DASHBOARD_JS } from "./dashboard_page.ts";
import { registerSecret } from "./log.ts";
import { fakeDbStatus, FakeStatusProvider } from "./testing.ts";

Deno.test("dashboard page: self-contained, no external assets, no innerHTML", () => {
  // Nothing is loaded from anywhere: no src/href attributes, no CSS imports or url() references.
  assert.doesNotMatch(DASHBOARD_HTML, /\b(src|href)\s*=/i);
  assert.doesNotMatch(DASHBOARD_HTML, /@import|url\(/i);
  assert.doesNotMatch(DASHBOARD_HTML, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  assert.doesNotMatch(DASHBOARD_JS, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
  assert.match(DASHBOARD_JS, /api\/status/);
  // The script compiles (a syntax error would leave the page blank).
  new Function(DASHBOARD_JS);
});

Deno.test("dashboard page: CSP allows exactly the inline script, by hash", async () => {
  const hash = createHash("sha256").update(DASHBOARD_JS).digest("base64");
  assert.ok(DASHBOARD_CSP.includes(`script-src 'sha256-${hash}'`));
  assert.ok(DASHBOARD_CSP.includes("default-src 'none'"));
  assert.ok(DASHBOARD_HTML.includes(`<script>${DASHBOARD_JS}</script>`));
  const res = dashboardResponse();
  assert.equal(res.headers.get("content-security-policy"), DASHBOARD_CSP);
  assert.match(res.headers.get("content-type")!, /^text\/html/);
  assert.equal(await res.text(), DASHBOARD_HTML);
});

Deno.test("dashboard api: one entry per database with health, lag, queue, snapshot and error", async () => {
  const secret = "dash-secret-value-xyz";
  registerSecret(secret);
  const p = new FakeStatusProvider([
    fakeDbStatus({ name: "app", txid: 5, replicatedTxid: 4, lagSeconds: 0.3, queueFiles: 1, queueBytes: 10 }),
    fakeDbStatus({
      name: "jobs",
      state: "error",
      replica: `s3://key:${secret}@bucket/p`,
      lastSnapshotAt: null,
      lastError: { message: `denied for ${secret}`, errorClass: "auth", at: Date.now() },
    }),
  ]);
  const v = statusView(p);
  assert.equal(v.status, "degraded");
  assert.deepEqual(v.databases.map((d) => d.name), ["app", "jobs"]);
  assert.equal(v.databases[0].health, "healthy");
  assert.equal(v.databases[0].txid, 5);
  assert.equal(v.databases[0].replicated_txid, 4);
  assert.equal(v.databases[0].queue_files, 1);
  assert.equal(v.databases[1].health, "degraded");
  assert.equal(v.databases[1].last_snapshot, null);
  assert.equal(v.databases[1].replica, "s3://bucket/p");
  assert.equal(v.databases[1].last_error?.message, "denied for ***");
  const text = await statusResponse(p).text();
  assert.ok(!text.includes(secret));
  assert.equal(JSON.parse(text).databases.length, 2);
});
