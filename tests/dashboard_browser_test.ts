/**
 * The dashboard as a person sees it: Debian's chromium (driven by playwright-core) against a running observe
 * server with a fake status. Set `WALRUST_KEEP_SCREENSHOT=1` to keep the screenshot (its path is printed).
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { EventBus } from "../src/observe/events.ts";
import { startObserveServer } from "../src/observe/server.ts";
import { fakeDbStatus, FakeStatusProvider } from "../src/observe/testing.ts";

/**
 * The page's globals as seen from browser-side callbacks. The page's CSP forbids eval, so waits must be
 * functions, not strings; this keeps DOM types out of the Deno type check.
 */
type BrowserGlobals = {
  document: { title: string };
  getComputedStyle(e: unknown): { backgroundColor: string };
};

/** Waits until the page title is `walrust — <status>`. */
function waitForTitle(page: Page, status: string): Promise<unknown> {
  return page.waitForFunction(
    (want: string) => (globalThis as unknown as BrowserGlobals).document.title === want,
    `walrust \u2014 ${status}`,
    { timeout: 5000 },
  );
}

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: haveChromium
    ? "dashboard in chromium: rows, live lag, error state, escaping, offline banner"
    : "dashboard in chromium (skipped: /usr/bin/chromium not installed — apt-get install chromium)",
  ignore: !haveChromium,
  async fn() {
    const hostile = `<img src=x onerror="document.title='pwned'">`;
    const status = new FakeStatusProvider([
      fakeDbStatus({ name: "app", state: "syncing", txid: 41, replicatedTxid: 40, lagSeconds: 0.2 }),
      fakeDbStatus({ name: hostile, replica: "file:///backups" }),
    ]);
    const srv = await startObserveServer({ addr: "127.0.0.1:0", bus: new EventBus(), status });
    const dir = await Deno.makeTempDir({ prefix: "walrust-dashboard-" });
    const keep = Deno.env.get("WALRUST_KEEP_SCREENSHOT") === "1";
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
        ],
      });
      const page = await browser.newPage({ viewport: { width: 1280, height: 420 } });
      const problems: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
      await page.goto(`http://${srv.addr}/`);

      const row = page.locator('tr[data-db="app"]');
      await row.waitFor({ state: "visible", timeout: 10_000 });
      assert.match(await row.innerText(), /app[\s\S]*syncing[\s\S]*HEALTHY/);
      assert.equal(await row.locator(".txid").innerText(), "41");
      assert.equal(await row.locator(".replicated").innerText(), "40");
      assert.equal(await row.locator(".lag-text").innerText(), "0.2 s");
      await waitForTitle(page, "healthy");

      // The hostile name is shown as text; no element was injected and no script ran.
      const hostileRow = page.locator("tr", { hasText: hostile });
      await hostileRow.waitFor({ state: "visible" });
      assert.equal(await page.locator("#rows img").count(), 0);

      // Lag updates as the status changes (polled every second), and the sparkline accumulates points.
      status.update("app", { lagSeconds: 3.7 });
      await row.locator(".lag-text", { hasText: /^3\.7 s$/ }).waitFor({ timeout: 5000 });
      const points = await row.locator("polyline").getAttribute("points");
      assert.ok((points ?? "").trim().split(" ").length >= 2, `sparkline points: ${points}`);

      // Flip the fake into error: the row turns red, the error text appears, the title says unhealthy.
      status.update("app", {
        state: "error",
        lagSeconds: 95,
        lastError: {
          message: "connection refused by s3.example.com",
          errorClass: "connection",
          at: Date.now(),
        },
      });
      await waitForTitle(page, "unhealthy");
      assert.match(
        await row.locator(".err").innerText(),
        /connection refused by s3\.example\.com \(connection, /,
      );
      assert.match(await row.innerText(), /error[\s\S]*UNHEALTHY/);
      assert.equal(await page.locator("#overall").innerText(), "UNHEALTHY"); // CSS uppercases the badge
      const bg = await row.locator("td").first().evaluate((td) =>
        (globalThis as unknown as BrowserGlobals).getComputedStyle(td).backgroundColor
      );
      assert.notEqual(bg, "rgba(0, 0, 0, 0)", "an error row has a visible background");
      assert.equal(await row.locator(".lag-text").innerText(), "95 s");

      const shot = `${dir}/dashboard.png`;
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(Deno.statSync(shot).size > 1000);
      if (keep) console.log(`screenshot: ${shot}`);

      // The server goes away: the page says so instead of showing stale data as current.
      await srv.close();
      await page.locator("#banner").waitFor({ state: "visible", timeout: 5000 });
      assert.match(await page.locator("#banner").innerText(), /Cannot reach walrust/);
      await waitForTitle(page, "unreachable");

      // CSP violations, script errors and failed loads would show up here (the offline fetch errors aside).
      assert.deepEqual(problems.filter((p) => !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(p)), []);
    } finally {
      await browser?.close();
      await srv.close();
      if (!keep) await Deno.remove(dir, { recursive: true });
    }
  },
});
