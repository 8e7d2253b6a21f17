/**
 * A fault-injecting HTTP/1.1 proxy for S3 tests, in front of s3rver.
 *
 * It forwards each request byte for byte (so SigV4 signatures, which cover the Host header, stay valid) and
 * can, per rule, probability and seed:
 * - answer `500 InternalError`, `503 ServiceUnavailable`, `503 SlowDown` or `429 SlowDown` (XML bodies);
 * - answer `403 InvalidAccessKeyId` (`auth_invalid_key`) or `403 SignatureDoesNotMatch` (`auth_bad_signature`):
 *   wrong credentials, which s3rver itself does not check (it accepts any secret);
 * - `reset`: close the connection without answering;
 * - `reset_mid_body`: send the headers and half the body, then close;
 * - `truncate`: send the headers (full Content-Length) and all but the last bytes, then close;
 * - `short_body`: rewrite Content-Length to half and send that half (a *valid* but short HTTP response:
 *   only an end-to-end size/sha256 check notices);
 * - `latency`: wait `latencyMs`, then forward normally;
 * - `stall`: read the request and never answer; `stall_mid_body`: send half the body and then nothing.
 * Status faults and `reset` happen before the request reaches s3rver unless `afterUpstream` is set (then the
 * write happened but the client does not know).
 *
 * It also enforces conditional writes, which s3rver ignores: `PUT` with `If-None-Match: *` → 412 if the key
 * exists; `If-Match: <etag>` → 412 if the current ETag differs, 404 if the key is absent (as AWS does).
 * Conditional PUTs to one key are serialised so the check and the write are atomic.
 *
 * `stats` counts requests and injected faults by kind. Always `await proxy.stop()` in `finally`.
 *
 * @module
 */

/** The kinds of fault the proxy can inject. */
export type FaultKind =
  | "error_500"
  | "error_503"
  | "slowdown_503"
  | "throttle_429"
  | "auth_invalid_key"
  | "auth_bad_signature"
  | "reset"
  | "reset_mid_body"
  | "truncate"
  | "short_body"
  | "latency"
  | "stall"
  | "stall_mid_body";

/** One rule: requests that match may get the fault. The first matching rule that fires wins. */
export interface FaultRule {
  /** What to do. */
  kind: FaultKind;
  /** Only this HTTP method (`GET`, `PUT`, `HEAD`, `POST`, `DELETE`). */
  method?: string;
  /** Only request targets (path + query) containing this string or matching this regex. */
  path?: string | RegExp;
  /** Chance to fire per matching request, 0…1 (default 1). */
  probability?: number;
  /** Fire at most this many times (default: unlimited). */
  times?: number;
  /** For `latency`: added delay, ms (default 200). */
  latencyMs?: number;
  /** For status faults and `reset`: forward the request to s3rver first (the write happens). */
  afterUpstream?: boolean;
}

/** A set of rules and the seed of their randomness. */
export interface FaultPlan {
  /** Rules, checked in order. */
  rules: FaultRule[];
  /** Seed for `probability` (default 1): the same plan and request sequence inject the same faults. */
  seed?: number;
}

/** Live counters. */
export interface FaultStats {
  /** Requests received. */
  requests: number;
  /** Requests forwarded to s3rver. */
  forwarded: number;
  /** Faults injected, by kind. */
  injected: Partial<Record<FaultKind, number>>;
  /** Conditional writes refused (412/404). */
  preconditionFailed: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: use as the S3 endpoint. */
  endpoint: string;
  /** Replaces the fault plan (an empty plan = a clean proxy that only enforces conditionals). */
  setFaults(plan: FaultPlan): void;
  /** Counters (live object). */
  readonly stats: FaultStats;
  /** Total injected faults of every kind. */
  injectedTotal(): number;
  /** Closes the listener and every open connection. */
  stop(): Promise<void>;
}

const CRLF = new Uint8Array([13, 10]);
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Small seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function indexOfSeq(buf: Uint8Array, seq: Uint8Array, from: number, to: number): number {
  outer: for (let i = from; i <= to - seq.length; i++) {
    for (let j = 0; j < seq.length; j++) if (buf[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}

/** Buffered reading from a connection. */
class BufReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(): Promise<boolean> {
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Bytes up to and including `delim`; null at a clean EOF before any byte. */
  async readUntil(delim: Uint8Array): Promise<Uint8Array | null> {
    // Bytes after #start already searched, kept relative to #start because #fill() moves the data.
    let scanned = 0;
    for (;;) {
      const from = this.#start + Math.max(0, scanned - delim.length + 1);
      const i = indexOfSeq(this.#buf, delim, from, this.#end);
      if (i >= 0) {
        const out = this.#buf.slice(this.#start, i + delim.length);
        this.#start = i + delim.length;
        return out;
      }
      scanned = this.#end - this.#start;
      const hadData = this.#end > this.#start;
      if (!(await this.#fill())) {
        if (hadData) throw new Error("connection closed in the middle of a message");
        return null;
      }
    }
  }

  /** Exactly `n` bytes. */
  async readN(n: number): Promise<Uint8Array> {
    while (this.#end - this.#start < n) {
      if (!(await this.#fill())) throw new Error("connection closed in the middle of a body");
    }
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Everything until EOF. */
  async readAll(): Promise<Uint8Array> {
    while (await this.#fill()) { /* keep reading */ }
    const out = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end;
    return out;
  }
}

interface Head {
  raw: Uint8Array;
  startLine: string;
  headers: [string, string][];
}

function parseHead(raw: Uint8Array): Head {
  const lines = dec.decode(raw).split("\r\n").filter((l) => l !== "");
  const headers: [string, string][] = [];
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.push([l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()]);
  }
  return { raw, startLine: lines[0] ?? "", headers };
}

function header(h: Head, name: string): string | undefined {
  return h.headers.find(([k]) => k === name)?.[1];
}

/** Reads a body framed by Content-Length or chunked encoding; returns its raw bytes (framing kept). */
async function readBody(r: BufReader, h: Head, untilClose: boolean): Promise<Uint8Array> {
  const te = header(h, "transfer-encoding");
  if (te && te.toLowerCase().includes("chunked")) {
    const parts: Uint8Array[] = [];
    for (;;) {
      const sizeLine = await r.readUntil(CRLF);
      if (!sizeLine) throw new Error("EOF in chunked body");
      parts.push(sizeLine);
      const size = parseInt(dec.decode(sizeLine).split(";")[0].trim(), 16);
      if (size === 0) {
        for (;;) { // trailers until an empty line
          const t = await r.readUntil(CRLF);
          if (!t) throw new Error("EOF in chunked trailers");
          parts.push(t);
          if (t.byteLength === 2) break;
        }
        return concat(parts);
      }
      parts.push(await r.readN(size + 2));
    }
  }
  const cl = header(h, "content-length");
  if (cl !== undefined) return await r.readN(Number(cl));
  return untilClose ? await r.readAll() : new Uint8Array(0);
}

function errorResponse(
  status: number,
  reason: string,
  code: string,
  message: string,
  isHead: boolean,
): Uint8Array {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
    `<RequestId>fault-proxy</RequestId></Error>`;
  const bytes = enc.encode(body);
  const head =
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/xml\r\nContent-Length: ${bytes.byteLength}\r\n` +
    `x-amz-request-id: fault-proxy\r\nConnection: keep-alive\r\n\r\n`;
  return isHead ? enc.encode(head) : concat([enc.encode(head), bytes]);
}

const STATUS_FAULTS: Partial<Record<FaultKind, [number, string, string, string]>> = {
  error_500: [
    500,
    "Internal Server Error",
    "InternalError",
    "We encountered an internal error. Please try again.",
  ],
  error_503: [503, "Service Unavailable", "ServiceUnavailable", "Service is unable to handle request."],
  slowdown_503: [503, "Slow Down", "SlowDown", "Please reduce your request rate."],
  throttle_429: [429, "Too Many Requests", "SlowDown", "Please reduce your request rate."],
  auth_invalid_key: [
    403,
    "Forbidden",
    "InvalidAccessKeyId",
    "The AWS Access Key Id you provided does not exist in our records.",
  ],
  auth_bad_signature: [
    403,
    "Forbidden",
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided.",
  ],
};

async function writeAllConn(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) off += await conn.write(data.subarray(off));
}

function safeClose(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

/** Starts the proxy on a free 127.0.0.1 port, forwarding to `upstream` (`http://127.0.0.1:<port>`). */
export function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const up = new URL(upstream);
  const upPort = Number(up.port || 80);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  const handlers = new Set<Promise<void>>();
  const stats: FaultStats = { requests: 0, forwarded: 0, injected: {}, preconditionFailed: 0 };
  let rules: (FaultRule & { fired: number })[] = [];
  let random = prng(1);
  const keyLocks = new Map<string, Promise<void>>();
  let stopping = false;

  const pick = (method: string, target: string): FaultRule | null => {
    for (const r of rules) {
      if (r.method && r.method.toUpperCase() !== method) continue;
      if (r.path !== undefined) {
        if (typeof r.path === "string" ? !target.includes(r.path) : !r.path.test(target)) continue;
      }
      if (r.times !== undefined && r.fired >= r.times) continue;
      if (random() >= (r.probability ?? 1)) continue;
      r.fired++;
      stats.injected[r.kind] = (stats.injected[r.kind] ?? 0) + 1;
      return r;
    }
    return null;
  };

  const forward = async (raw: Uint8Array, isHead: boolean): Promise<{ head: Head; body: Uint8Array }> => {
    const conn = await Deno.connect({ hostname: up.hostname, port: upPort });
    conns.add(conn);
    try {
      stats.forwarded++;
      await writeAllConn(conn, raw);
      const r = new BufReader(conn);
      for (;;) {
        const rawHead = await r.readUntil(enc.encode("\r\n\r\n"));
        if (!rawHead) throw new Error("upstream closed without answering");
        const head = parseHead(rawHead);
        const status = Number(head.startLine.split(" ")[1]);
        if (status >= 100 && status < 200) continue; // 100 Continue: we already sent the whole body
        const noBody = isHead || status === 204 || status === 304;
        const body = noBody ? new Uint8Array(0) : await readBody(r, head, true);
        return { head, body };
      }
    } finally {
      conns.delete(conn);
      safeClose(conn);
    }
  };

  /** The ETag of an object, by an anonymous HEAD (s3rver allows unsigned requests). */
  const currentEtag = async (path: string): Promise<string | null> => {
    const res = await fetch(`http://${up.hostname}:${upPort}${path}`, { method: "HEAD" });
    await res.body?.cancel();
    if (res.status === 404) return null;
    return res.headers.get("etag");
  };

  const withKeyLock = async <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const prev = keyLocks.get(key) ?? Promise.resolve();
    let release: () => void = () => {};
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    keyLocks.set(key, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (keyLocks.get(key) === chained) keyLocks.delete(key);
    }
  };

  /** Waits until the client goes away (a stalled request). */
  const holdUntilClosed = async (conn: Deno.Conn): Promise<void> => {
    const sink = new Uint8Array(4096);
    try {
      while (!stopping && (await conn.read(sink)) !== null) { /* discard */ }
    } catch { /* reset by the client */ }
  };

  const serveOne = async (conn: Deno.Conn, r: BufReader): Promise<boolean> => {
    const rawHead = await r.readUntil(enc.encode("\r\n\r\n"));
    if (!rawHead) return false;
    const head = parseHead(rawHead);
    const [method, target] = head.startLine.split(" ");
    const isHead = method === "HEAD";
    if (header(head, "expect")?.toLowerCase() === "100-continue") {
      await writeAllConn(conn, enc.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    const body = await readBody(r, head, false);
    stats.requests++;
    const raw = concat([rawHead, body]);
    const rule = pick(method, target);
    const kind = rule?.kind;

    if (kind === "stall") {
      await holdUntilClosed(conn);
      return false;
    }
    if (kind === "latency") await new Promise((res) => setTimeout(res, rule?.latencyMs ?? 200));
    if (kind && (STATUS_FAULTS[kind] || kind === "reset")) {
      if (rule?.afterUpstream) await forward(raw, isHead);
      if (kind === "reset") return false;
      const [status, reason, code, message] = STATUS_FAULTS[kind]!;
      await writeAllConn(conn, errorResponse(status, reason, code, message, isHead));
      return true;
    }

    const path = target.split("?")[0];
    const ifNoneMatch = method === "PUT" ? header(head, "if-none-match") : undefined;
    const ifMatch = method === "PUT" ? header(head, "if-match") : undefined;
    let answer: { head: Head; body: Uint8Array };
    if (ifNoneMatch !== undefined || ifMatch !== undefined) {
      const refused = await withKeyLock(path, async () => {
        const etag = await currentEtag(path);
        if (ifNoneMatch === "*" && etag !== null) {
          return errorResponse(
            412,
            "Precondition Failed",
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            isHead,
          );
        }
        if (ifMatch !== undefined && etag === null) {
          return errorResponse(404, "Not Found", "NoSuchKey", "The specified key does not exist.", isHead);
        }
        if (ifMatch !== undefined && ifMatch !== "*" && etag !== ifMatch) {
          return errorResponse(
            412,
            "Precondition Failed",
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            isHead,
          );
        }
        answer = await forward(raw, isHead);
        return null;
      });
      if (refused) {
        stats.preconditionFailed++;
        await writeAllConn(conn, refused);
        return true;
      }
    } else {
      answer = await forward(raw, isHead);
    }
    const { head: respHead, body: respBody } = answer!;

    if (kind === "reset_mid_body" || kind === "truncate" || kind === "stall_mid_body") {
      const cut = kind === "truncate"
        ? Math.max(0, respBody.byteLength - Math.max(1, Math.floor(respBody.byteLength / 10)))
        : Math.floor(respBody.byteLength / 2);
      await writeAllConn(conn, respHead.raw);
      await writeAllConn(conn, respBody.subarray(0, cut));
      if (kind === "stall_mid_body") await holdUntilClosed(conn);
      return false;
    }
    if (kind === "short_body" && header(respHead, "content-length") !== undefined) {
      const half = Math.floor(respBody.byteLength / 2);
      const lines = dec.decode(respHead.raw).split("\r\n").map((l) =>
        /^content-length:/i.test(l) ? `Content-Length: ${half}` : l
      );
      await writeAllConn(conn, enc.encode(lines.join("\r\n")));
      await writeAllConn(conn, respBody.subarray(0, half));
      return true;
    }
    await writeAllConn(conn, respHead.raw);
    await writeAllConn(conn, respBody);
    const close = header(respHead, "connection")?.toLowerCase() === "close" ||
      header(head, "connection")?.toLowerCase() === "close";
    return !close;
  };

  const handle = async (conn: Deno.Conn) => {
    conns.add(conn);
    const r = new BufReader(conn);
    try {
      while (!stopping && await serveOne(conn, r)) { /* keep-alive */ }
    } catch {
      // Client went away, or upstream failed: drop the connection (the client sees a reset).
    } finally {
      conns.delete(conn);
      safeClose(conn);
    }
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const p = handle(conn);
        handlers.add(p);
        p.finally(() => handlers.delete(p));
      }
    } catch { /* listener closed */ }
  })();

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    setFaults(plan: FaultPlan) {
      rules = plan.rules.map((r) => ({ ...r, fired: 0 }));
      random = prng(plan.seed ?? 1);
    },
    injectedTotal() {
      return Object.values(stats.injected).reduce((s, n) => s + (n ?? 0), 0);
    },
    async stop() {
      if (stopping) return;
      stopping = true;
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) safeClose(c);
      await accepting;
      await Promise.allSettled([...handlers]);
    },
  };
  return Promise.resolve(proxy);
}
