/**
 * The dashboard page as strings: one self-contained HTML document (inline CSS and JS, no external assets, works
 * offline) that polls `/api/status` every second. Kept apart from `dashboard.ts` so the page is easy to read.
 *
 * The script builds every element with `createElement`/`textContent`/`setAttribute`; it never assigns
 * `innerHTML` with data, so names and error messages cannot inject markup. The page is served with a CSP that
 * allows only this exact script (by hash) and inline styles.
 *
 * @module
 */

/** The page's stylesheet. */
export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #6e7781;
  --bg: #ffffff; --fg: #1f2328; --line: #d0d7de; --errbg: #ffebe9; --warnbg: #fff8c5; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --fg: #e6edf3; --line: #30363d;
  --errbg: #3c1618; --warnbg: #3b2e00; --muted: #8b949e; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg);
  color: var(--fg); }
header { display: flex; align-items: center; gap: 12px; padding: 12px 20px; border-bottom: 1px solid var(--line); }
header h1 { font-size: 18px; margin: 0; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; color: #fff;
  background: var(--muted); text-transform: uppercase; font-size: 12px; letter-spacing: .04em; }
.badge.healthy { background: var(--ok); } .badge.degraded { background: var(--warn); }
.badge.unhealthy, .badge.unreachable { background: var(--bad); }
.meta { color: var(--muted); margin-left: auto; font-size: 12px; }
#banner { display: none; padding: 8px 20px; background: var(--errbg); color: var(--bad); font-weight: 600; }
#banner.show { display: block; }
main { padding: 12px 20px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: middle;
  white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.err { white-space: normal; max-width: 40ch; color: var(--bad); }
tr.unhealthy td, tr.state-error td { background: var(--errbg); }
tr.degraded td { background: var(--warnbg); }
.state { font-weight: 600; }
.state.error { color: var(--bad); } .state.syncing { color: var(--ok); } .state.idle { color: var(--muted); }
.reasons { display: block; font-size: 11px; color: var(--muted); white-space: normal; }
.lag { display: inline-flex; align-items: center; gap: 8px; }
.lag svg { width: 90px; height: 22px; background: rgba(127, 127, 127, .12); border-radius: 3px; }
.lag polyline { fill: none; stroke: currentColor; stroke-width: 1.5; }
.lag circle { fill: currentColor; }
th.num { text-align: right; }
.empty { color: var(--muted); padding: 20px 0; }
`;

/** The page's script: polls /api/status every second and renders with DOM APIs only. */
export const DASHBOARD_JS = `
"use strict";
(function () {
  var HISTORY = 60;
  var history = new Map();
  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function ago(iso, now) {
    if (!iso) return "never";
    var s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function bytes(n) {
    if (n < 1024) return n + " B";
    var u = ["KiB", "MiB", "GiB", "TiB"], i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return n.toFixed(1) + " " + u[i];
  }
  function lagText(s) {
    return (s < 10 ? s.toFixed(1) : Math.round(s).toString()) + " s";
  }
  function sparkline(values) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 90 22");
    svg.setAttribute("aria-hidden", "true");
    var max = Math.max(1, Math.max.apply(null, values));
    var step = 90 / Math.max(1, HISTORY - 1);
    var off = HISTORY - values.length;
    var pts = values.map(function (v, i) {
      return ((off + i) * step).toFixed(1) + "," + (21 - (v / max) * 20).toFixed(1);
    });
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    if (pts.length) {
      var last = pts[pts.length - 1].split(",");
      var dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", last[0]);
      dot.setAttribute("cy", last[1]);
      dot.setAttribute("r", "1.8");
      svg.appendChild(dot);
    }
    return svg;
  }
  function setOverall(status, detail) {
    var badge = document.getElementById("overall");
    badge.textContent = status;
    badge.className = "badge " + status;
    document.title = "walrust \\u2014 " + status;
    document.getElementById("meta").textContent = detail;
  }
  function row(db, now) {
    var tr = el("tr", db.health + " state-" + db.state);
    tr.setAttribute("data-db", db.name);
    var name = el("td", "name");
    name.appendChild(el("strong", null, db.name));
    name.appendChild(el("span", "reasons", db.replica));
    tr.appendChild(name);
    var st = el("td");
    st.appendChild(el("span", "state " + db.state, db.state));
    tr.appendChild(st);
    var health = el("td", "health");
    health.appendChild(el("span", "badge " + db.health, db.health));
    if (db.reasons.length) health.appendChild(el("span", "reasons", db.reasons.join("; ")));
    tr.appendChild(health);
    var h = history.get(db.name) || [];
    h.push(db.lag_seconds);
    if (h.length > HISTORY) h.shift();
    history.set(db.name, h);
    var lag = el("td");
    var wrap = el("span", "lag");
    wrap.appendChild(el("span", "lag-text", lagText(db.lag_seconds)));
    wrap.appendChild(sparkline(h));
    lag.appendChild(wrap);
    tr.appendChild(lag);
    tr.appendChild(el("td", "num txid", db.txid));
    tr.appendChild(el("td", "num replicated", db.replicated_txid));
    tr.appendChild(el("td", "num queue", db.queue_files + " (" + bytes(db.queue_bytes) + ")"));
    tr.appendChild(el("td", "snapshot", ago(db.last_snapshot, now)));
    var err = el("td", "err");
    if (db.last_error) {
      err.textContent = db.last_error.message + " (" + db.last_error.class + ", " +
        ago(db.last_error.at, now) + ")";
    } else {
      err.textContent = "\\u2014";
      err.className = "noerr";
    }
    tr.appendChild(err);
    return tr;
  }
  function render(data) {
    var now = Date.parse(data.now) || Date.now();
    document.getElementById("banner").className = "";
    setOverall(data.status, "walrust " + data.version + " \\u00b7 up " + Math.round(data.uptime_seconds) +
      " s \\u00b7 replica " + (data.replica.reachable ? "reachable" : "unreachable"));
    var body = document.getElementById("rows");
    var rows = data.databases.map(function (db) { return row(db, now); });
    if (!rows.length) {
      var tr = el("tr");
      var td = el("td", "empty", "No databases are being replicated.");
      td.setAttribute("colspan", "9");
      tr.appendChild(td);
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    var seen = new Set(data.databases.map(function (d) { return d.name; }));
    history.forEach(function (_v, k) { if (!seen.has(k)) history.delete(k); });
  }
  function poll() {
    fetch("api/status", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(render)
      .catch(function (e) {
        var b = document.getElementById("banner");
        b.textContent = "Cannot reach walrust: " + (e && e.message ? e.message : String(e)) + " (retrying)";
        b.className = "show";
        setOverall("unreachable", "");
      })
      .finally(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
`;

/** The whole page. The script and styles are inlined; nothing is loaded from elsewhere. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walrust</title>
<style>${DASHBOARD_CSS}</style>
</head>
<body>
<header>
  <h1>walrust</h1>
  <span id="overall" class="badge">loading</span>
  <span id="meta" class="meta"></span>
</header>
<div id="banner" role="alert"></div>
<main>
<table>
  <thead><tr><th>Database</th><th>State</th><th>Health</th><th>Lag</th><th class="num">TXID</th>
  <th class="num">Replicated TXID</th><th>Queue</th><th>Last snapshot</th><th>Last error</th></tr></thead>
  <tbody id="rows"></tbody>
</table>
</main>
<script>${DASHBOARD_JS}</script>
</body>
</html>
`;
