/**
 * Retries with full-jitter exponential backoff and a circuit breaker, around any {@link ObjectStore}.
 *
 * - Delay before retry n (n = 1, 2, …): `random(0 … min(maxDelayMs, baseDelayMs · 2^(n−1)))` ("full jitter").
 * - Only transient errors (`WalrustError.transient`: network, timeouts, 5xx, 429/SlowDown, truncated
 *   responses) are retried. Auth, not-found, conflict, corruption and bugs fail at once.
 * - The breaker opens after `breakerThreshold` consecutive transient failures of any request to the same
 *   destination; while open, requests fail fast with ConnectionError. After `breakerCooldownMs` one trial
 *   request is let through (half-open): success closes it, failure re-opens it for another cool-down.
 *   Stores of the same destination (same endpoint, bucket and prefix, or the same directory) share one
 *   breaker, so N databases on one bucket see one outage, and the webhook fires once.
 * - Listings resume after the last key already yielded, so a reset in the middle of a long listing costs
 *   one page, not the whole listing, and never yields a key twice.
 * - Emits `retry`, `circuit_breaker_open` and `circuit_breaker_closed` on the bus.
 *
 * Clock, sleep and randomness are injectable for tests.
 *
 * @module
 */

import type { RetrySettings } from "../config/types.ts";
import { ConnectionError, WalrustError } from "../errors.ts";
import type { EventBus } from "../observe/events.ts";
import type {
  ListOptions,
  ObjectHead,
  ObjectInfo,
  ObjectStore,
  PutFileOptions,
  PutOptions,
  SweepResult,
} from "./object_store.ts";

/** Time and randomness, injectable for tests. */
export interface RetryClock {
  /** Current time, ms. */
  now(): number;
  /** Waits `ms`. */
  sleep(ms: number): Promise<void>;
  /** Uniform random number in [0, 1). */
  random(): number;
}

/** The real clock. */
export const systemClock: RetryClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: () => Math.random(),
};

/** Circuit-breaker states, as shown in `DbStatus.circuit`. */
export type CircuitState = "closed" | "open" | "half_open";

/** Full-jitter backoff delay before retry number `retry` (1 = the first retry). */
export function backoffDelay(settings: RetrySettings, retry: number, random: () => number): number {
  const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** Math.min(retry - 1, 40));
  return Math.floor(random() * ceiling);
}

/** A circuit breaker for one destination. */
export class CircuitBreaker {
  /** The destination, for messages and events. */
  readonly destination: string;
  #threshold: number;
  #cooldownMs: number;
  #clock: RetryClock;
  #state: CircuitState = "closed";
  #failures = 0;
  #openedAt = 0;
  #trialInFlight = false;

  /** `threshold` 0 disables the breaker. */
  constructor(destination: string, threshold: number, cooldownMs: number, clock: RetryClock = systemClock) {
    this.destination = destination;
    this.#threshold = threshold;
    this.#cooldownMs = cooldownMs;
    this.#clock = clock;
  }

  /** Current state (an open breaker whose cool-down has passed reports `half_open`). */
  get state(): CircuitState {
    if (this.#state === "open" && this.#clock.now() - this.#openedAt >= this.#cooldownMs) return "half_open";
    return this.#state;
  }

  /** Consecutive transient failures so far. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Called before each request: throws ConnectionError while open (or while the half-open trial is running);
   * returns true when this request is the half-open trial.
   */
  acquire(): boolean {
    if (this.#threshold <= 0 || this.#state === "closed") return false;
    const waited = this.#clock.now() - this.#openedAt;
    if (this.#state === "open" && waited >= this.#cooldownMs && !this.#trialInFlight) {
      this.#state = "half_open";
      this.#trialInFlight = true;
      return true;
    }
    const left = Math.max(0, this.#cooldownMs - waited);
    throw new ConnectionError(
      `circuit breaker open for ${this.destination} after ${this.#failures} failures; retrying in ${
        Math.ceil(left / 1000)
      }s`,
    );
  }

  /** The destination answered (success or a definite answer such as 404). */
  success(bus?: EventBus): void {
    this.#failures = 0;
    this.#trialInFlight = false;
    if (this.#state !== "closed") {
      this.#state = "closed";
      bus?.emit({ type: "circuit_breaker_closed", destination: this.destination });
    }
  }

  /** A transient failure. */
  failure(bus?: EventBus): void {
    this.#failures++;
    if (this.#threshold <= 0) return;
    const wasTrial = this.#state === "half_open";
    this.#trialInFlight = false;
    if (wasTrial || (this.#state === "closed" && this.#failures >= this.#threshold)) {
      this.#state = "open";
      this.#openedAt = this.#clock.now();
      bus?.emit({ type: "circuit_breaker_open", destination: this.destination, failures: this.#failures });
    } else if (this.#state === "open") {
      this.#openedAt = this.#clock.now();
    }
  }

  /** The trial ended without telling anything (a bug, or the caller stopped early). */
  release(): void {
    if (this.#state === "half_open") {
      this.#state = "open";
      this.#trialInFlight = false;
    }
  }
}

const sharedBreakers = new Map<string, CircuitBreaker>();

/** The process-wide breaker of a destination (created with `settings` on first use). */
export function breakerFor(destination: string, settings: RetrySettings): CircuitBreaker {
  let b = sharedBreakers.get(destination);
  if (!b) {
    b = new CircuitBreaker(destination, settings.breakerThreshold, settings.breakerCooldownMs);
    sharedBreakers.set(destination, b);
  }
  return b;
}

/** Test and wiring hooks for {@link RetryingObjectStore}. */
export interface RetryDeps {
  /** Clock/sleep/random; when given (and no breaker), the store gets a private breaker on that clock. */
  clock?: RetryClock;
  /** A breaker to use instead of the shared one of the destination. */
  breaker?: CircuitBreaker;
}

function isTransient(err: unknown): boolean {
  return err instanceof WalrustError && err.transient;
}

/** Wraps a store with retries and a circuit breaker (see the module doc). */
export class RetryingObjectStore implements ObjectStore {
  /** Same as the inner store's. */
  readonly kind: "file" | "s3";
  /** Same as the inner store's. */
  readonly displayUrl: string;
  /** The wrapped store. */
  readonly inner: ObjectStore;
  /** Local backends: forwards to the inner store (see {@link ObjectStore.localPath}). */
  readonly localPath?: (key: string) => string;
  /** Local backends: forwards to the inner store (see {@link ObjectStore.sweepStale}). */
  readonly sweepStale?: (prefix: string, olderThan: Date) => Promise<SweepResult>;
  /** Uploads a local file with retries, when the inner store can (see {@link ObjectStore.putFile}). */
  readonly putFile?: (key: string, path: string, options: PutFileOptions) => Promise<{ etag?: string }>;
  readonly #settings: RetrySettings;
  readonly #bus?: EventBus;
  readonly #db?: string;
  readonly #clock: RetryClock;
  readonly #breaker: CircuitBreaker;

  /** Wraps `inner`; `bus`/`db` label the events. */
  constructor(inner: ObjectStore, settings: RetrySettings, bus?: EventBus, db?: string, deps?: RetryDeps) {
    this.inner = inner;
    this.kind = inner.kind;
    this.displayUrl = inner.displayUrl;
    this.#settings = settings;
    this.#bus = bus;
    this.#db = db;
    this.#clock = deps?.clock ?? systemClock;
    const destination = (inner as { destination?: string }).destination ?? inner.displayUrl;
    this.#breaker = deps?.breaker ??
      (deps?.clock
        ? new CircuitBreaker(
          inner.displayUrl,
          settings.breakerThreshold,
          settings.breakerCooldownMs,
          deps.clock,
        )
        : breakerFor(destination, settings));
    if (inner.localPath) {
      const lp = inner.localPath.bind(inner);
      this.localPath = (key) => lp(key);
    }
    if (inner.putFile) {
      const putFile = inner.putFile.bind(inner);
      this.putFile = (key, path, options) => this.#run("upload", () => putFile(key, path, options));
    }
    if (inner.sweepStale) {
      const sweep = inner.sweepStale.bind(inner);
      this.sweepStale = (prefix, olderThan) => sweep(prefix, olderThan);
    }
  }

  /** The breaker's state, for `DbStatus.circuit`. */
  get circuitState(): CircuitState {
    return this.#breaker.state;
  }

  /** The breaker (shared by every store of the destination unless injected). */
  get breaker(): CircuitBreaker {
    return this.#breaker;
  }

  /**
   * Handles one failed attempt: rethrows what must not be retried, otherwise returns the delay to wait.
   * `attempt` counts tries of this request so far.
   */
  #onError(operation: string, err: unknown, attempt: number): number {
    if (!isTransient(err)) {
      if (err instanceof WalrustError) this.#breaker.success(this.#bus);
      else this.#breaker.release();
      throw err;
    }
    this.#breaker.failure(this.#bus);
    if (attempt >= this.#settings.maxAttempts) {
      const e = err as WalrustError;
      if (e instanceof ConnectionError && attempt > 1) {
        throw new ConnectionError(`${e.message} (gave up after ${attempt} attempts)`, { cause: e });
      }
      throw err;
    }
    const delayMs = backoffDelay(this.#settings, attempt, this.#clock.random);
    this.#bus?.emit({
      type: "retry",
      db: this.#db,
      operation,
      errorClass: (err as WalrustError).errorClass,
      attempt,
      delayMs,
    });
    return delayMs;
  }

  async #run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      this.#breaker.acquire();
      let result: T;
      try {
        result = await fn();
      } catch (err) {
        const delay = this.#onError(operation, err, attempt);
        await this.#clock.sleep(delay);
        continue;
      }
      this.#breaker.success(this.#bus);
      return result;
    }
  }

  /** Lists with retries; an interrupted listing resumes after the last key it yielded. */
  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    let last = options?.startAfter;
    let attempt = 1;
    for (;;) {
      this.#breaker.acquire();
      let answered = false;
      try {
        for await (
          const o of this.inner.list(prefix, last === undefined ? undefined : { startAfter: last })
        ) {
          if (!answered) {
            answered = true;
            attempt = 1; // progress: a later failure starts a fresh series of tries
            this.#breaker.success(this.#bus);
          }
          if (last !== undefined && o.key <= last) continue;
          last = o.key;
          yield o;
        }
        if (!answered) this.#breaker.success(this.#bus);
        return;
      } catch (err) {
        const delay = this.#onError("list", err, attempt);
        attempt++;
        await this.#clock.sleep(delay);
      } finally {
        if (!answered) this.#breaker.release();
      }
    }
  }

  /** Reads an object with retries. */
  get(key: string): Promise<Uint8Array> {
    return this.#run("download", () => this.inner.get(key));
  }

  /** Opens a stream with retries (a failure after the first bytes is the caller's to handle). */
  getStream(key: string): Promise<ReadableStream<Uint8Array>> {
    return this.#run("download", () => this.inner.getStream(key));
  }

  /** HEAD with retries. */
  head(key: string): Promise<ObjectHead | null> {
    return this.#run("head", () => this.inner.head(key));
  }

  /**
   * Writes with retries. A conditional write that really succeeded but whose answer was lost may come back
   * as ConflictError on the retry: callers of `ifNoneMatch` must check whether the object is theirs.
   */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag?: string }> {
    return this.#run("upload", () => this.inner.put(key, body, options));
  }

  /** Deletes with retries (deleting is idempotent). */
  delete(keys: string[]): Promise<void> {
    return this.#run("delete", () => this.inner.delete(keys));
  }

  /** Closes the inner store. */
  close(): void {
    this.inner.close();
  }
}
