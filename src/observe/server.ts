/**
 * The observe HTTP server started by `watch`: `/metrics` (Prometheus), `/health` (JSON, 503 when
 * unhealthy), `/api/status` (the dashboard's JSON) and `/` (the dashboard page), on `Deno.serve`.
 *
 * It binds the host the address names, `127.0.0.1:16767` by default (loopback: nothing is exposed unless
 * the user asks, e.g. `--metrics-addr 0.0.0.0:16767` in a container). A port already in use is a one-line
 * {@link UsageError}, not a crash. Only GET and HEAD are served.
 *
 * @module
 */

import { DEFAULTS } from "../config/types.ts";
import { messageOf, UsageError } from "../errors.ts";
import { dashboardResponse, statusResponse } from "./dashboard.ts";
import type { EventBus, StatusProvider } from "./events.ts";
import { healthResponse } from "./health.ts";
import { log } from "./log.ts";
import { METRICS_CONTENT_TYPE, WalrustMetrics } from "./metrics.ts";
import { scrub } from "./scrub.ts";

/** Options of {@link startObserveServer}. */
export interface ObserveServerOptions {
  /** `host:port`, `[v6]:port`, `:port` or `port` to bind (port 0 picks a free port; host defaults to 127.0.0.1). */
  addr: string;
  /** The event bus to observe (metrics subscribe to it). */
  bus: EventBus;
  /** Live status of every database. */
  status: StatusProvider;
}

/** A running observe server. */
export interface ObserveServer {
  /** The bound address, `host:port` (`[v6]:port`), with the real port when port 0 was asked. */
  addr: string;
  /** Stops listening, finishes in-flight requests and unsubscribes from the bus. */
  close(): Promise<void>;
}

/** Splits a listen address into host and port; a {@link UsageError} names a malformed one. */
export function parseListenAddr(addr: string): { hostname: string; port: number } {
  const a = addr.trim();
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(a);
  if (v6) {
    [, host, port] = v6;
  } else if (/^\d+$/.test(a)) {
    host = "";
    port = a;
  } else {
    const i = a.lastIndexOf(":");
    if (i < 0 || a.indexOf(":") !== i) {
      throw new UsageError(
        `metrics address '${addr}' is not host:port; use e.g. ${DEFAULTS.metricsAddr} or 0.0.0.0:16767`,
      );
    }
    host = a.slice(0, i);
    port = a.slice(i + 1);
  }
  const n = Number(port);
  if (!/^\d+$/.test(port) || n > 65535) {
    throw new UsageError(`metrics address '${addr}': port must be 0-65535; use e.g. ${DEFAULTS.metricsAddr}`);
  }
  return { hostname: host || "127.0.0.1", port: n };
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatListenAddr(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } });
}

/** The request router, separate from the listener so it can be tested without a socket. */
export function observeHandler(
  metrics: WalrustMetrics,
  status: StatusProvider,
): (req: Request) => Response {
  return (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text("method not allowed\n", 405, { allow: "GET, HEAD" });
    }
    const path = new URL(req.url).pathname;
    try {
      switch (path) {
        case "/metrics":
          return new Response(metrics.render(), {
            headers: { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" },
          });
        case "/health":
        case "/healthz":
          return healthResponse(status);
        case "/api/status":
          return statusResponse(status);
        case "/":
        case "/index.html":
          return dashboardResponse();
        case "/favicon.ico":
          return new Response(null, { status: 204 });
        default:
          return text("not found; try /, /metrics, /health or /api/status\n", 404);
      }
    } catch (err) {
      // A bug in a status provider must not kill the server; say what failed, without secrets.
      const msg = scrub(messageOf(err));
      log.error("observe server request failed", { path, error: msg });
      return text(`internal error: ${msg}\n`, 500);
    }
  };
}

/**
 * Starts the server. Throws a {@link UsageError} when the address is malformed, in use, not local to this
 * machine, or not permitted, naming `--metrics-addr`/`--no-metrics` as the way out.
 */
export function startObserveServer(opts: ObserveServerOptions): Promise<ObserveServer> {
  const { hostname, port } = parseListenAddr(opts.addr);
  const shown = formatListenAddr(hostname, port);
  const metrics = new WalrustMetrics(opts.bus, opts.status);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port, onListen: () => {} }, observeHandler(metrics, opts.status));
  } catch (err) {
    metrics.close();
    const why = err instanceof Deno.errors.AddrInUse
      ? "is in use"
      : err instanceof Deno.errors.AddrNotAvailable
      ? "is not an address of this machine"
      : err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.NotCapable
      ? "cannot be bound (permission denied; ports below 1024 need privileges)"
      : `cannot be bound (${scrub(messageOf(err))})`;
    return Promise.reject(
      new UsageError(`metrics address ${shown} ${why}; pass --metrics-addr or --no-metrics`, { cause: err }),
    );
  }
  let closed: Promise<void> | null = null;
  return Promise.resolve({
    addr: formatListenAddr(server.addr.hostname, server.addr.port),
    close(): Promise<void> {
      closed ??= (async () => {
        metrics.close();
        await server.shutdown();
        await server.finished;
      })();
      return closed;
    },
  });
}
