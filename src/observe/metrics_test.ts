import assert from "node:assert/strict";
import fc from "fast-check";
import { EventBus } from "./events.ts";
import { registerSecret } from "./log.ts";
import {
  escapeLabelValue,
  formatValue,
  METRICS_CONTENT_TYPE,
  Registry,
  sanitizeLabelValue,
  WalrustMetrics,
} from "./metrics.ts";
import { fakeDbStatus, FakeStatusProvider } from "./testing.ts";

/** One parsed sample. */
interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition: families (HELP/TYPE) and samples. */
interface Parsed {
  help: Map<string, string>;
  type: Map<string, string>;
  samples: ParsedSample[];
}

function parseValue(s: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  assert.match(s, /^-?\d+(\.\d+)?(e[+-]?\d+)?$/, `bad value '${s}'`);
  return Number(s);
}

/** A deliberately strict parser of the 0.0.4 text format: it throws on anything it does not expect. */
function parseExposition(text: string): Parsed {
  const out: Parsed = { help: new Map(), type: new Map(), samples: [] };
  assert.ok(text.endsWith("\n"), "exposition must end with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      assert.ok(m, `bad HELP line: ${line}`);
      assert.ok(!out.help.has(m[1]), `duplicate HELP for ${m[1]}`);
      // HELP escapes: \\ and \n only.
      out.help.set(m[1], m[2].replace(/\\(\\|n)/g, (_x, c) => (c === "n" ? "\n" : "\\")));
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      assert.ok(m, `bad TYPE line: ${line}`);
      assert.ok(out.help.has(m[1]), `TYPE before HELP for ${m[1]}`);
      out.type.set(m[1], m[2]);
      continue;
    }
    assert.ok(!line.startsWith("#"), `unexpected comment: ${line}`);
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    assert.ok(nm, `bad sample line: ${line}`);
    const name = nm[0];
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === "{") {
      i++;
      while (line[i] !== "}") {
        const ln = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
        assert.ok(ln, `bad label name at ${i}: ${line}`);
        i += ln[0].length;
        assert.equal(line.slice(i, i + 2), '="', `expected =" at ${i}: ${line}`);
        i += 2;
        let v = "";
        for (;;) {
          const c = line[i++];
          assert.ok(c !== undefined, `unterminated label value: ${line}`);
          if (c === '"') break;
          if (c === "\\") {
            const n = line[i++];
            if (n === "n") v += "\n";
            else if (n === "\\" || n === '"') v += n;
            else assert.fail(`bad escape \\${n}: ${line}`);
          } else {
            v += c;
          }
        }
        assert.ok(!(ln[0] in labels), `duplicate label ${ln[0]}`);
        labels[ln[0]] = v;
        if (line[i] === ",") i++;
      }
      i++;
    }
    assert.equal(line[i], " ", `expected a space before the value: ${line}`);
    out.samples.push({ name, labels, value: parseValue(line.slice(i + 1)) });
  }
  // Every sample belongs to a declared family.
  for (const s of out.samples) {
    const fam = s.name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(out.type.has(s.name) || out.type.get(fam) === "histogram", `sample ${s.name} has no TYPE`);
  }
  return out;
}

function find(p: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  const s = p.samples.find((x) =>
    x.name === name && Object.keys(labels).length === Object.keys(x.labels).length &&
    Object.entries(labels).every(([k, v]) => x.labels[k] === v)
  );
  return s?.value;
}

Deno.test("registry: exposition parses back, with escaped label values and HELP", () => {
  const r = new Registry();
  const c = r.counter("t_total", 'help with \\ backslash\nand "quotes"', ["a", "b"]);
  const g = r.gauge("t_gauge", "a gauge");
  const h = r.histogram("t_seconds", "a histogram", ["db"], [0.1, 1, 10]);
  const nasty = 'quo"te \\ back\nslash';
  c.inc({ a: nasty, b: "x" }, 2);
  c.inc({ a: nasty, b: "x" });
  c.inc({ a: "plain" });
  g.set({}, -1.5);
  for (const v of [0.05, 0.1, 0.5, 5, 50]) h.observe({ db: "app" }, v);
  const p = parseExposition(r.render());
  assert.equal(p.help.get("t_total"), 'help with \\ backslash\nand "quotes"');
  assert.equal(p.type.get("t_total"), "counter");
  assert.equal(p.type.get("t_seconds"), "histogram");
  assert.equal(find(p, "t_total", { a: nasty, b: "x" }), 3);
  assert.equal(find(p, "t_total", { a: "plain", b: "" }), 1);
  assert.equal(find(p, "t_gauge"), -1.5);
  // Buckets are cumulative, +Inf equals the count.
  assert.equal(find(p, "t_seconds_bucket", { db: "app", le: "0.1" }), 2);
  assert.equal(find(p, "t_seconds_bucket", { db: "app", le: "1" }), 3);
  assert.equal(find(p, "t_seconds_bucket", { db: "app", le: "10" }), 4);
  assert.equal(find(p, "t_seconds_bucket", { db: "app", le: "+Inf" }), 5);
  assert.equal(find(p, "t_seconds_count", { db: "app" }), 5);
  assert.ok(Math.abs(find(p, "t_seconds_sum", { db: "app" })! - 55.65) < 1e-9);
});

Deno.test("registry: any label value round-trips through render and parse (property)", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), fc.double({ noNaN: true }), (label, value) => {
      const r = new Registry();
      r.gauge("g", "h", ["l"]).set({ l: label }, value);
      const p = parseExposition(r.render());
      assert.equal(p.samples.length, 1);
      // Labels are scrubbed of URL credentials; compare with what the registry publishes.
      assert.equal(p.samples[0].labels.l, sanitizeLabelValue(label));
      assert.equal(p.samples[0].value, value === 0 ? 0 : value);
    }),
    { numRuns: 200 },
  );
});

Deno.test("registry: value formatting and escaping helpers", () => {
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(NaN), "NaN");
  assert.equal(formatValue(3), "3");
  assert.equal(formatValue(0.25), "0.25");
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("registry: rejects invalid names, unknown labels, decreasing counters, duplicates", () => {
  const r = new Registry();
  assert.throws(() => r.counter("bad-name", "x"));
  assert.throws(() => r.gauge("ok", "x", ["bad-label"]));
  assert.throws(() => r.histogram("h", "x", ["le"]));
  const c = r.counter("c_total", "x", ["a"]);
  assert.throws(() => c.inc({ nope: "1" }));
  assert.throws(() => c.inc({ a: "1" }, -1));
  assert.throws(() => r.counter("c_total", "again"));
});

Deno.test("registry: a throwing collector does not break rendering", () => {
  const r = new Registry();
  r.gauge("g", "h").set({}, 7);
  r.onCollect(() => {
    throw new Error("boom");
  });
  assert.equal(find(parseExposition(r.render()), "g"), 7);
});

const REQUIRED = [
  "walrust_replication_lag_seconds",
  "walrust_last_sync_timestamp_seconds",
  "walrust_current_txid",
  "walrust_replicated_txid",
  "walrust_wal_size_bytes",
  "walrust_queue_files",
  "walrust_queue_bytes",
  "walrust_uploads_total",
  "walrust_uploaded_bytes_total",
  "walrust_upload_duration_seconds",
  "walrust_errors_total",
  "walrust_retries_total",
  "walrust_circuit_breaker_state",
  "walrust_checkpoints_total",
  "walrust_checkpoint_duration_seconds",
  "walrust_snapshots_total",
  "walrust_snapshot_duration_seconds",
  "walrust_compactions_total",
  "walrust_compaction_duration_seconds",
  "walrust_validations_total",
  "walrust_databases",
  "walrust_uptime_seconds",
  "process_resident_memory_bytes",
];

Deno.test("walrust metrics: every contracted family is declared with HELP and TYPE", () => {
  const m = new WalrustMetrics(new EventBus(), new FakeStatusProvider());
  try {
    const p = parseExposition(m.render());
    for (const name of REQUIRED) {
      assert.ok(p.help.get(name), `${name} has HELP`);
      assert.ok(p.type.get(name), `${name} has TYPE`);
    }
    assert.equal(p.type.get("walrust_upload_duration_seconds"), "histogram");
    assert.equal(p.type.get("walrust_uploads_total"), "counter");
    assert.equal(p.type.get("walrust_replication_lag_seconds"), "gauge");
    assert.ok(find(p, "process_resident_memory_bytes")! > 0);
  } finally {
    m.close();
  }
});

Deno.test("walrust metrics: counters and histograms follow the events", () => {
  const bus = new EventBus();
  const m = new WalrustMetrics(bus, new FakeStatusProvider());
  try {
    const before = parseExposition(m.render());
    assert.equal(find(before, "walrust_uploads_total", { db: "app", level: "0" }), undefined);
    bus.emit({
      type: "upload",
      db: "app",
      level: 0,
      minTXID: 1,
      maxTXID: 1,
      bytes: 100,
      seconds: 0.02,
      readAt: 0,
    });
    bus.emit({
      type: "upload",
      db: "app",
      level: 0,
      minTXID: 2,
      maxTXID: 3,
      bytes: 50,
      seconds: 3,
      readAt: 0,
    });
    bus.emit({
      type: "upload",
      db: "app",
      level: 9,
      minTXID: 1,
      maxTXID: 3,
      bytes: 4096,
      seconds: 1,
      readAt: 0,
    });
    bus.emit({ type: "upload_failed", db: "app", error: "x", errorClass: "connection", attempts: 5 });
    bus.emit({ type: "auth_failure", db: "app", error: "denied" });
    bus.emit({ type: "corruption_detected", db: "app", object: "k", error: "bad" });
    bus.emit({ type: "error", db: "app", errorClass: "connection", message: "reset" });
    bus.emit({ type: "retry", operation: "put", errorClass: "connection", attempt: 1, delayMs: 10 });
    bus.emit({ type: "checkpoint", db: "app", mode: "passive", seconds: 0.01, walPagesBefore: 10 });
    bus.emit({ type: "checkpoint", db: "app", mode: "truncate", seconds: 0.2, walPagesBefore: 10 });
    bus.emit({ type: "checkpoint_emergency", db: "app", walPages: 200_000 });
    bus.emit({ type: "snapshot", db: "app", txid: 3, bytes: 4096, seconds: 0.5 });
    bus.emit({ type: "compaction", db: "app", level: 1, minTXID: 1, maxTXID: 3, files: 3, seconds: 0.1 });
    bus.emit({ type: "verify", db: "app", ok: true, exitCode: 0, message: "ok" });
    bus.emit({ type: "verify", db: "app", ok: false, exitCode: 8, message: "gap" });
    bus.emit({ type: "verify_failed", db: "app", exitCode: 8, message: "gap" });
    bus.emit({ type: "circuit_breaker_open", destination: "s3://other", failures: 10 });
    const p = parseExposition(m.render());
    assert.equal(find(p, "walrust_uploads_total", { db: "app", level: "0" }), 2);
    assert.equal(find(p, "walrust_uploads_total", { db: "app", level: "9" }), 1);
    assert.equal(find(p, "walrust_uploaded_bytes_total", { db: "app" }), 4246);
    assert.equal(find(p, "walrust_upload_duration_seconds_count", { db: "app" }), 3);
    assert.equal(find(p, "walrust_upload_duration_seconds_bucket", { db: "app", le: "0.025" }), 1);
    assert.equal(find(p, "walrust_errors_total", { db: "app", class: "connection" }), 2);
    assert.equal(find(p, "walrust_errors_total", { db: "app", class: "auth" }), 1);
    assert.equal(find(p, "walrust_errors_total", { db: "app", class: "corruption" }), 1);
    assert.equal(find(p, "walrust_retries_total", { operation: "put" }), 1);
    assert.equal(find(p, "walrust_checkpoints_total", { db: "app", mode: "passive" }), 1);
    assert.equal(find(p, "walrust_checkpoints_total", { db: "app", mode: "truncate" }), 1);
    assert.equal(find(p, "walrust_checkpoint_duration_seconds_count", { db: "app", mode: "truncate" }), 1);
    assert.equal(find(p, "walrust_checkpoint_emergencies_total", { db: "app" }), 1);
    assert.equal(find(p, "walrust_snapshots_total", { db: "app" }), 1);
    assert.equal(find(p, "walrust_snapshot_duration_seconds_sum", { db: "app" }), 0.5);
    assert.equal(find(p, "walrust_compactions_total", { db: "app", level: "1" }), 1);
    assert.equal(find(p, "walrust_compaction_duration_seconds_count", { db: "app", level: "1" }), 1);
    // verify_failed accompanies a failed verify and is not counted twice.
    assert.equal(find(p, "walrust_validations_total", { db: "app", result: "ok" }), 1);
    assert.equal(find(p, "walrust_validations_total", { db: "app", result: "failure" }), 1);
    assert.equal(find(p, "walrust_circuit_breaker_state", { destination: "s3://other" }), 2);
    bus.emit({ type: "circuit_breaker_closed", destination: "s3://other" });
    assert.equal(
      find(parseExposition(m.render()), "walrust_circuit_breaker_state", { destination: "s3://other" }),
      0,
    );
  } finally {
    m.close();
  }
  // After close() the bus no longer reaches the metrics.
  bus.emit({ type: "snapshot", db: "app", txid: 4, bytes: 1, seconds: 1 });
  assert.equal(find(parseExposition(m.render()), "walrust_snapshots_total", { db: "app" }), 1);
});

Deno.test("walrust metrics: status gauges are read at scrape time and follow the provider", () => {
  const status = new FakeStatusProvider([
    fakeDbStatus({
      name: "app",
      txid: 42,
      replicatedTxid: 40,
      lagSeconds: 1.5,
      queueFiles: 2,
      queueBytes: 8192,
    }),
    fakeDbStatus({ name: "other", replica: "s3://b2", circuit: "half_open", lastSyncAt: 1_700_000_000_000 }),
  ], 90_000);
  const m = new WalrustMetrics(new EventBus(), status);
  try {
    let p = parseExposition(m.render());
    assert.equal(find(p, "walrust_current_txid", { db: "app" }), 42);
    assert.equal(find(p, "walrust_replicated_txid", { db: "app" }), 40);
    assert.equal(find(p, "walrust_replication_lag_seconds", { db: "app" }), 1.5);
    assert.equal(find(p, "walrust_queue_files", { db: "app" }), 2);
    assert.equal(find(p, "walrust_queue_bytes", { db: "app" }), 8192);
    assert.equal(find(p, "walrust_wal_size_bytes", { db: "app" }), 4096);
    assert.equal(find(p, "walrust_last_sync_timestamp_seconds", { db: "other" }), 1_700_000_000);
    assert.equal(find(p, "walrust_circuit_breaker_state", { destination: "s3://bucket/backups" }), 0);
    assert.equal(find(p, "walrust_circuit_breaker_state", { destination: "s3://b2" }), 1);
    assert.equal(find(p, "walrust_databases"), 2);
    assert.ok(find(p, "walrust_uptime_seconds")! >= 90);
    status.update("app", { txid: 43, circuit: "open" });
    status.dbs.pop();
    p = parseExposition(m.render());
    assert.equal(find(p, "walrust_current_txid", { db: "app" }), 43);
    assert.equal(find(p, "walrust_circuit_breaker_state", { destination: "s3://bucket/backups" }), 2);
    assert.equal(find(p, "walrust_current_txid", { db: "other" }), undefined, "a removed db disappears");
    assert.equal(find(p, "walrust_databases"), 1);
  } finally {
    m.close();
  }
});

Deno.test("walrust metrics: no credentials or registered secrets in labels", () => {
  const secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
  registerSecret(secret);
  const status = new FakeStatusProvider([
    fakeDbStatus({ replica: `https://AKIDEXAMPLE:${secret}@s3.example.com/bucket?X-Amz-Signature=abc123` }),
  ]);
  const bus = new EventBus();
  const m = new WalrustMetrics(bus, status);
  try {
    bus.emit({ type: "circuit_breaker_open", destination: `s3://u:hunter22pw@h/b?token=zzz`, failures: 3 });
    bus.emit({ type: "retry", operation: `put ${secret}`, errorClass: "connection", attempt: 1, delayMs: 1 });
    const text = m.render();
    for (const bad of [secret, "AKIDEXAMPLE", "hunter22pw", "abc123", "zzz"]) {
      assert.ok(!text.includes(bad), `metrics leak '${bad}'`);
    }
    const p = parseExposition(text);
    assert.equal(
      find(p, "walrust_circuit_breaker_state", { destination: "https://s3.example.com/bucket" }),
      0,
    );
    assert.equal(find(p, "walrust_circuit_breaker_state", { destination: "s3://h/b" }), 2);
  } finally {
    m.close();
  }
});

Deno.test("walrust metrics: a failing status provider still renders event metrics", () => {
  const status = new FakeStatusProvider([fakeDbStatus()]);
  status.failWith = new Error("provider bug");
  const bus = new EventBus();
  const m = new WalrustMetrics(bus, status);
  try {
    bus.emit({ type: "snapshot", db: "app", txid: 1, bytes: 1, seconds: 1 });
    const p = parseExposition(m.render());
    assert.equal(find(p, "walrust_snapshots_total", { db: "app" }), 1);
    assert.equal(find(p, "walrust_databases"), 0);
  } finally {
    m.close();
  }
});
