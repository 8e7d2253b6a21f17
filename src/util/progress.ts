/**
 * A one-line progress display for long commands (restore, verify, snapshot): bytes done, total, percentage,
 * rate and ETA, redrawn in place on stderr at most every `intervalMs`. Silent when stderr is not a terminal, so
 * logs, pipes and CI output never contain carriage returns or escape codes.
 *
 * @module
 */

import { formatDuration } from "./duration.ts";

/** Where the progress line goes: the command's IO (only `stderr` and `isTTY` are used). */
export interface ProgressSink {
  /** Writes text to standard error. */
  stderr(text: string): void;
  /** Whether stderr is a terminal; the display is silent when false. */
  isTTY: boolean;
}

/** Options of a {@link Progress}. */
export interface ProgressOptions {
  /** Shown at the start of the line: `restoring app`. */
  label: string;
  /** Total bytes when known (enables percentage and ETA). */
  total?: number;
  /** Minimum time between redraws, ms (default 100). */
  intervalMs?: number;
  /** Clock, for tests (default `performance.now`). */
  now?: () => number;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** Formats a byte count for humans: `512 B`, `1.5 KiB`, `12.3 MiB`. */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0
    ? `${Math.round(v)} B`
    : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${UNITS[u]}`;
}

/** The text of one progress line (no carriage return), exported so its content can be tested. */
export function formatProgressLine(
  label: string,
  done: number,
  total: number | undefined,
  elapsedMs: number,
): string {
  const parts = [
    label,
    total !== undefined && total > 0 ? `${formatBytes(done)} / ${formatBytes(total)}` : formatBytes(done),
  ];
  if (total !== undefined && total > 0) parts.push(`${Math.min(100, Math.floor((done / total) * 100))}%`);
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
  if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
  if (total !== undefined && total > done && rate > 0) {
    parts.push(`ETA ${formatDuration(((total - done) / rate) * 1000)}`);
  }
  return parts.join("  ");
}

/** A progress line on a terminal; every method is a no-op when the sink is not a TTY. */
export class Progress {
  readonly #sink: ProgressSink;
  readonly #label: string;
  readonly #interval: number;
  readonly #now: () => number;
  readonly #start: number;
  #total: number | undefined;
  #last = -Infinity;
  #drawn = false;
  #done = 0;

  /** Creates a display; nothing is drawn until the first {@link update}. */
  constructor(sink: ProgressSink, options: ProgressOptions) {
    this.#sink = sink;
    this.#label = options.label;
    this.#total = options.total;
    this.#interval = options.intervalMs ?? 100;
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
  }

  /** Whether anything will ever be drawn. */
  get active(): boolean {
    return this.#sink.isTTY;
  }

  /** Records progress (`done` bytes so far, optionally a new total) and redraws when the interval passed. */
  update(done: number, total?: number): void {
    this.#done = done;
    if (total !== undefined) this.#total = total;
    if (!this.#sink.isTTY) return;
    const t = this.#now();
    if (t - this.#last < this.#interval) return;
    this.#last = t;
    this.#draw(t);
  }

  #draw(t: number): void {
    const line = formatProgressLine(this.#label, this.#done, this.#total, t - this.#start);
    // \r + erase-to-end keeps it on one line however long the previous one was.
    this.#sink.stderr(`\r${line}\x1b[K`);
    this.#drawn = true;
  }

  /** Clears the line (the caller prints its own summary). Safe to call more than once. */
  finish(): void {
    if (this.#sink.isTTY && this.#drawn) this.#sink.stderr("\r\x1b[K");
    this.#drawn = false;
  }
}
