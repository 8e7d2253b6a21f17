/**
 * Webhooks: POST a JSON payload to each configured receiver when something goes wrong (or recovers).
 *
 * Events: {@link WEBHOOK_EVENTS}; each receiver gets the ones in its `events` list (an empty list means all).
 * Payload: `{event, database, error, timestamp (RFC 3339), version, details}`. Headers: `Content-Type:
 * application/json`, `User-Agent: walrust/<version>`, `X-Walrust-Event`, `X-Walrust-Delivery` (one id per
 * event, the same on every retry, so receivers can de-duplicate) and, when the receiver has a secret,
 * `X-Walrust-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.
 *
 * Delivery never slows replication: the bus listener only serialises the payload and appends it to the
 * receiver's in-memory queue (bounded; when full the oldest entry is dropped with a warning), and returns.
 * One worker per receiver sends in order: 10 s timeout per try, 3 tries with backoff on network errors,
 * timeouts, 408, 429 and 5xx; other 4xx are not retried. A hanging receiver only delays its own queue.
 * `close()` stops listening and waits for the queues to drain, at most `flushTimeoutMs`, then aborts what is
 * in flight and reports what was dropped.
 *
 * `upload_failed` is not sent for every failed upload pass (one a second, then every 30 s, for as long as a
 * replica is down): per database, the first failure is sent, then only a failure with another message or the
 * first one {@link WebhookOptions.repeatAfterMs} after the last alert, with `details.suppressed` counting the
 * failures not sent in between; an upload that succeeds ends the episode. Metrics still count every failure.
 *
 * Receiver URLs often carry a token in their path (Slack, Discord), so logs show only the origin.
 *
 * @module
 */

import { createHmac } from "node:crypto";
import type { WebhookSettings } from "../config/types.ts";
import { messageOf, UsageError } from "../errors.ts";
import type { EventBus, WalrustEvent } from "./events.ts";
import { log as defaultLog, type Logger, registerSecret } from "./log.ts";
import { scrub } from "./scrub.ts";
import { VERSION } from "../version.ts";

import { WEBHOOK_EVENTS, type WebhookEventName } from "./webhook_events.ts";

export { WEBHOOK_EVENTS, type WebhookEventName };

/** The JSON body of one delivery. */
export interface WebhookPayload {
  /** Event name, one of {@link WEBHOOK_EVENTS}. */
  event: WebhookEventName;
  /** Database name, or null for process-wide events (circuit breaker). */
  database: string | null;
  /** One-line description of the problem (scrubbed), or null for recoveries. */
  error: string | null;
  /** When the event happened (RFC 3339). */
  timestamp: string;
  /** walrust version. */
  version: string;
  /**
   * Event-specific fields (error class, attempts and failures suppressed since the previous alert, object,
   * destination, WAL pages, exit code).
   */
  details: Record<string, string | number | boolean | null>;
}

/** Tuning knobs; the defaults are what `watch` uses. Tests shorten the delays. */
export interface WebhookOptions {
  /** Queue capacity per receiver (default 256). */
  maxQueue?: number;
  /** Tries per delivery, including the first (default 3). */
  attempts?: number;
  /** Delay before try 2, 3, ... in ms (default [1000, 5000]; the last value repeats). */
  retryDelaysMs?: number[];
  /** Timeout of one try in ms (default 10 000). */
  timeoutMs?: number;
  /** How long `close()` waits for queues to drain, ms (default 5000). */
  flushTimeoutMs?: number;
  /** A database's `upload_failed` with the same message is sent again after this long, ms (default 15 min). */
  repeatAfterMs?: number;
  /** Logger for warnings (default the process logger). */
  logger?: Logger;
}

/** Delivery counters, summed over all receivers. */
export interface WebhookStats {
  /** Deliveries that got a 2xx. */
  delivered: number;
  /** Deliveries given up after all tries or a non-retryable status. */
  failed: number;
  /** Entries dropped because a queue was full or close() timed out. */
  dropped: number;
  /** Entries waiting or in flight. */
  pending: number;
}

/** Running webhook delivery, returned by {@link startWebhooks}. */
export interface Webhooks {
  /** Stops listening and flushes queued deliveries, waiting at most `flushTimeoutMs`. */
  close(): Promise<void>;
  /** Delivery counters. */
  stats(): WebhookStats;
}

/**
 * Which `upload_failed` events become webhooks (see the module doc); stamps the ones that pass with the
 * number of failures suppressed since the previous alert of their database.
 */
class UploadFailureGate {
  readonly #repeatAfterMs: number;
  readonly #episodes = new Map<string, { message: string; sentAt: number; suppressed: number }>();

  constructor(repeatAfterMs: number) {
    this.#repeatAfterMs = repeatAfterMs;
  }

  /**
   * Null for an `upload_failed` to hold back; otherwise how many of its database's failures were held back
   * since its previous alert (0 for every other event; an `upload` ends the database's episode).
   */
  pass(event: WalrustEvent, at: number): number | null {
    if (event.type === "upload") {
      this.#episodes.delete(event.db);
      return 0;
    }
    if (event.type !== "upload_failed") return 0;
    const ep = this.#episodes.get(event.db);
    if (ep && ep.message === event.error && at - ep.sentAt < this.#repeatAfterMs) {
      ep.suppressed++;
      return null;
    }
    this.#episodes.set(event.db, { message: event.error, sentAt: at, suppressed: 0 });
    return ep?.suppressed ?? 0;
  }
}

/** `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Walrust-Signature`. */
export function signBody(secret: string, body: string): string {
  return "sha256=" + createHmac("sha256", secret).update(body).digest("hex");
}

/** Whether `name` is a webhook event. */
export function isWebhookEvent(name: string): name is WebhookEventName {
  return (WEBHOOK_EVENTS as readonly string[]).includes(name);
}

/**
 * The payload for `event` emitted at `at` (ms since epoch), or null when it is not a webhook event;
 * `suppressed`: for `upload_failed`, the failures of its database not sent since the previous alert.
 */
export function webhookPayload(event: WalrustEvent, at: number, suppressed = 0): WebhookPayload | null {
  const base = { timestamp: new Date(at).toISOString(), version: VERSION };
  const db = (name: string | undefined) => (name === undefined ? null : scrub(name));
  switch (event.type) {
    case "upload_failed":
      return {
        ...base,
        event: event.type,
        database: db(event.db),
        error: scrub(event.error),
        details: { errorClass: event.errorClass, attempts: event.attempts, suppressed },
      };
    case "auth_failure":
      return { ...base, event: event.type, database: db(event.db), error: scrub(event.error), details: {} };
    case "corruption_detected":
      return {
        ...base,
        event: event.type,
        database: db(event.db),
        error: scrub(event.error),
        details: { object: scrub(event.object) },
      };
    case "circuit_breaker_open":
      return {
        ...base,
        event: event.type,
        database: null,
        error: `circuit breaker open after ${event.failures} consecutive failures`,
        details: { destination: scrub(event.destination), failures: event.failures },
      };
    case "circuit_breaker_closed":
      return {
        ...base,
        event: event.type,
        database: null,
        error: null,
        details: { destination: scrub(event.destination) },
      };
    case "checkpoint_emergency":
      return {
        ...base,
        event: event.type,
        database: db(event.db),
        error: `WAL reached ${event.walPages} pages; running an emergency TRUNCATE checkpoint`,
        details: { walPages: event.walPages },
      };
    case "verify_failed":
      return {
        ...base,
        event: event.type,
        database: db(event.db),
        error: scrub(event.message),
        details: { exitCode: event.exitCode },
      };
    default:
      return null;
  }
}

/** A receiver URL as shown in logs: scheme, host and port only (paths often hold tokens). */
export function displayWebhookUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 || u.search ? "/…" : "/"}`;
  } catch {
    return "<invalid url>";
  }
}

interface QueueItem {
  event: WebhookEventName;
  id: string;
  body: string;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });

/** One receiver: its queue and its sequential sender. */
class Receiver {
  readonly queue: QueueItem[] = [];
  inFlight = false;
  #idle: (() => void)[] = [];
  #lastDropWarn = 0;
  #dropsSinceWarn = 0;

  constructor(
    readonly hook: WebhookSettings,
    readonly events: ReadonlySet<string>,
    readonly display: string,
    readonly opts: Required<Omit<WebhookOptions, "logger">> & { logger: Logger },
    readonly stats: WebhookStats,
    readonly abort: AbortSignal,
  ) {}

  enqueue(item: QueueItem): void {
    if (this.queue.length >= this.opts.maxQueue) {
      this.queue.shift();
      this.stats.dropped++;
      this.stats.pending--;
      this.#dropsSinceWarn++;
      const now = Date.now();
      // One warning per 10 s per receiver: a flood of drops must not flood the log too.
      if (now - this.#lastDropWarn >= 10_000) {
        this.opts.logger.warn("webhook queue full; dropped the oldest event(s)", {
          url: this.display,
          dropped: this.#dropsSinceWarn,
          capacity: this.opts.maxQueue,
        });
        this.#lastDropWarn = now;
        this.#dropsSinceWarn = 0;
      }
    }
    this.queue.push(item);
    this.stats.pending++;
    if (!this.inFlight) {
      this.inFlight = true;
      // Started on a later tick: emit() must return before any network work begins.
      setTimeout(() => void this.#run(), 0);
    }
  }

  /** Resolves when the queue is empty and nothing is in flight. */
  idle(): Promise<void> {
    if (!this.inFlight && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #run(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.abort.aborted) {
        const item = this.queue.shift()!;
        try {
          await this.#deliver(item);
        } finally {
          this.stats.pending--;
        }
      }
    } finally {
      this.inFlight = false;
      for (const r of this.#idle.splice(0)) r();
    }
  }

  async #deliver(item: QueueItem): Promise<void> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": `walrust/${VERSION}`,
      "x-walrust-event": item.event,
      "x-walrust-delivery": item.id,
    };
    if (this.hook.secret) headers["x-walrust-signature"] = signBody(this.hook.secret, item.body);
    let last = "";
    const { attempts, retryDelaysMs, timeoutMs, logger } = this.opts;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (this.abort.aborted) {
        // close() gave up waiting: this delivery is abandoned, not failed.
        this.stats.dropped++;
        return;
      }
      const ctrl = new AbortController();
      const onAbort = () => ctrl.abort();
      this.abort.addEventListener("abort", onAbort);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        ctrl.abort();
      }, timeoutMs);
      try {
        const res = await fetch(this.hook.url, {
          method: "POST",
          headers,
          body: item.body,
          signal: ctrl.signal,
        });
        await res.body?.cancel().catch(() => {});
        if (res.ok) {
          this.stats.delivered++;
          return;
        }
        last = `HTTP ${res.status}`;
        if (res.status < 500 && res.status !== 408 && res.status !== 429) {
          this.stats.failed++;
          logger.warn("webhook rejected the event; not retrying", {
            url: this.display,
            event: item.event,
            status: res.status,
          });
          return;
        }
      } catch (err) {
        last = timedOut
          ? `timed out after ${timeoutMs / 1000} s`
          : this.abort.aborted
          ? "aborted at shutdown"
          : scrub(messageOf(err).split(this.hook.url).join(this.display));
      } finally {
        clearTimeout(timer);
        this.abort.removeEventListener("abort", onAbort);
      }
      if (attempt < attempts) {
        await sleep(retryDelaysMs[Math.min(attempt - 1, retryDelaysMs.length - 1)] ?? 0, this.abort);
      }
    }
    if (this.abort.aborted) {
      this.stats.dropped++;
      return;
    }
    this.stats.failed++;
    logger.warn("webhook delivery failed", {
      url: this.display,
      event: item.event,
      attempts,
      error: last,
    });
  }
}

/**
 * Subscribes to `bus` and delivers failure events to `hooks`. Throws a {@link UsageError} for a receiver
 * URL that is not http(s) or an unknown event name. With no hooks it subscribes to nothing.
 */
export function startWebhooks(
  bus: EventBus,
  hooks: WebhookSettings[],
  options: WebhookOptions = {},
): Webhooks {
  const opts = {
    maxQueue: Math.max(1, options.maxQueue ?? 256),
    attempts: Math.max(1, options.attempts ?? 3),
    retryDelaysMs: options.retryDelaysMs ?? [1000, 5000],
    timeoutMs: options.timeoutMs ?? 10_000,
    flushTimeoutMs: options.flushTimeoutMs ?? 5000,
    repeatAfterMs: options.repeatAfterMs ?? 15 * 60_000,
    logger: options.logger ?? defaultLog,
  };
  const stats: WebhookStats = { delivered: 0, failed: 0, dropped: 0, pending: 0 };
  const abort = new AbortController();
  const receivers = hooks.map((hook, i) => {
    registerSecret(hook.secret);
    let url: URL;
    try {
      url = new URL(hook.url);
    } catch {
      throw new UsageError(
        `webhook ${i + 1}: '${scrub(hook.url)}' is not a valid URL; use http(s)://host/path`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new UsageError(
        `webhook ${i + 1}: ${url.protocol} URLs are not supported; use http(s)://host/path`,
      );
    }
    if (url.password) registerSecret(decodeURIComponent(url.password));
    const unknown = (hook.events ?? []).filter((e) => !isWebhookEvent(e));
    if (unknown.length) {
      throw new UsageError(
        `webhook ${i + 1}: unknown event '${unknown[0]}'; expected one of ${WEBHOOK_EVENTS.join(", ")}`,
      );
    }
    const events = new Set<string>(hook.events?.length ? hook.events : WEBHOOK_EVENTS);
    return new Receiver(hook, events, displayWebhookUrl(hook.url), opts, stats, abort.signal);
  });

  const gate = new UploadFailureGate(opts.repeatAfterMs);
  const unsubscribe = receivers.length === 0 ? () => {} : bus.subscribe((event, at) => {
    const suppressed = gate.pass(event, at);
    if (suppressed === null) return;
    const payload = webhookPayload(event, at, suppressed);
    if (!payload) return;
    const targets = receivers.filter((r) => r.events.has(payload.event));
    if (!targets.length) return;
    const item: QueueItem = { event: payload.event, id: crypto.randomUUID(), body: JSON.stringify(payload) };
    for (const r of targets) r.enqueue(item);
  });

  let closing: Promise<void> | null = null;
  return {
    stats: () => ({ ...stats }),
    close(): Promise<void> {
      closing ??= (async () => {
        unsubscribe();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = await Promise.race([
          Promise.all(receivers.map((r) => r.idle())).then(() => false),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), opts.flushTimeoutMs))),
        ]);
        clearTimeout(timer);
        if (timedOut) {
          const droppedBefore = stats.dropped;
          abort.abort();
          for (const r of receivers) {
            stats.dropped += r.queue.length;
            stats.pending -= r.queue.length;
            r.queue.length = 0;
          }
          await Promise.all(receivers.map((r) => r.idle()));
          opts.logger.warn("webhook deliveries not finished at shutdown were dropped", {
            dropped: stats.dropped - droppedBefore,
            timeout_ms: opts.flushTimeoutMs,
          });
        }
      })();
      return closing;
    },
  };
}
