/**
 * Single writer per replica database: two `watch` processes must never write the same `<prefix>/<name>/`.
 *
 * **Object stores (S3):** a lease object `<name>/lease.json` = `{owner, pid, host, expiresAt, token}`.
 * - Acquire: PUT with `If-None-Match: *`. If it exists and has expired, take it over with a PUT conditional
 *   on its ETag (`If-Match`), so of two processes racing for an expired lease exactly one wins. If it is
 *   ours (same random token: our first PUT succeeded but the answer was lost and a retry got 412), keep it.
 * - Renew: PUT with `If-Match: <our ETag>` every `ttl/3` (automatic unless disabled). A 412/404 means
 *   someone took it over: the lease is `lost` and the writer must stop. A lease that could not be renewed
 *   before `expiresAt` is also reported as lost.
 * - Release: delete it if it still has our ETag (best effort; otherwise it simply expires).
 * - Requires a store that enforces conditional writes (AWS S3, R2, Tigris, MinIO do; s3rver does not —
 *   the tests put `fault_proxy.ts` in front of it).
 *
 * **File backend:** an OS lock (`flock`, via `Deno.FsFile.tryLock(true)`, non-blocking) on
 * `<root>/<name>/lease.lock`, holding the same JSON for messages. Chosen over a pid file because the kernel
 * drops the lock when the process dies (even on kill -9), so there is no stale lease to expire or take
 * over. The file is never deleted (deleting a locked file would let a third process lock a new inode while
 * a second still waits on the old one). `expiresAt` is empty: the lock lasts while the holder lives.
 * Works for processes on one host; network file systems may not honour flock across hosts.
 *
 * A second writer gets ConflictError "replica <url>/<name> is being written by <owner> (pid …, host …) until
 * …; stop it or wait".
 *
 * @module
 */

import { ConflictError, localIoError, NotFoundError, WalrustError } from "../errors.ts";
import type { ObjectStore } from "./object_store.ts";
import { validateDbName } from "./replica_client.ts";

/** The lease record stored in `lease.json` / `lease.lock`. */
export interface LeaseInfo {
  /** Who holds it (e.g. `walrust watch`), for messages. */
  owner: string;
  /** Process id of the holder. */
  pid: number;
  /** Host name of the holder. */
  host: string;
  /** RFC 3339 expiry (object leases); `""` for file locks (held while the process lives). */
  expiresAt: string;
  /** Random id of this acquisition; tells our own retried write from someone else's. */
  token: string;
}

/** A held lease. */
export interface Lease {
  /** Extends the lease by the TTL; ConflictError (and `lost`) if someone else took it over. */
  renew(): Promise<void>;
  /** Gives the lease up (idempotent, best effort). */
  release(): Promise<void>;
  /** True once the lease was taken over or could not be renewed before it expired. */
  readonly lost: boolean;
  /** What we wrote. */
  readonly info: LeaseInfo;
}

/** Options of {@link acquireLease}. */
export interface LeaseOptions {
  /** Automatic renewal period, ms (default `ttlMs / 3`; 0 = only explicit `renew()`). Object leases only. */
  renewIntervalMs?: number;
  /** Called once when automatic renewal finds the lease lost. */
  onLost?: (err: WalrustError) => void;
  /** Current time (tests). */
  now?: () => number;
}

/** The key of the lease object (object stores). */
export function leaseKey(dbName: string): string {
  return dbName === "" ? "lease.json" : `${dbName}/lease.json`;
}

/** The key of the lock file (file backend). */
export function lockKey(dbName: string): string {
  return dbName === "" ? "lease.lock" : `${dbName}/lease.lock`;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown-host";
  }
}

function newToken(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

function parseInfo(bytes: Uint8Array): Partial<LeaseInfo> | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes));
    return v && typeof v === "object" ? v as Partial<LeaseInfo> : null;
  } catch {
    return null;
  }
}

function heldMessage(where: string, info: Partial<LeaseInfo> | null, until: string): ConflictError {
  const who = info?.owner ?? "another process";
  return new ConflictError(
    `replica ${where} is being written by ${who} (pid ${info?.pid ?? "?"}, host ${info?.host ?? "?"}) ` +
      `until ${until}; stop it or wait`,
  );
}

/**
 * Takes the single-writer lease of `dbName` in `store` for `ttlMs` (see the module doc).
 * ConflictError if another live writer holds it.
 */
export async function acquireLease(
  store: ObjectStore,
  dbName: string,
  owner: string,
  ttlMs: number,
  opts: LeaseOptions = {},
): Promise<Lease> {
  validateDbName(dbName);
  const where = dbName === "" ? store.displayUrl : `${store.displayUrl.replace(/\/$/, "")}/${dbName}`;
  if (store.localPath) return await acquireFileLock(store, dbName, owner, where);
  return await acquireObjectLease(store, dbName, owner, ttlMs, where, opts);
}

async function acquireFileLock(
  store: ObjectStore,
  dbName: string,
  owner: string,
  where: string,
): Promise<Lease> {
  const key = lockKey(dbName);
  const path = store.localPath!(key);
  const info: LeaseInfo = { owner, pid: Deno.pid, host: hostName(), expiresAt: "", token: newToken() };
  // Create the file through the store so its directory rules apply (a missing root parent is an error).
  try {
    await store.put(key, new Uint8Array(0), { ifNoneMatch: "*" });
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true, write: true });
  } catch (err) {
    throw localIoError(err, path, "open lock file");
  }
  let locked = false;
  try {
    locked = await f.tryLock(true);
    if (!locked) {
      const current = parseInfo(await Deno.readFile(path).catch(() => new Uint8Array(0)));
      throw heldMessage(where, current, "it exits");
    }
    await f.truncate(0);
    const bytes = new TextEncoder().encode(JSON.stringify(info) + "\n");
    let off = 0;
    while (off < bytes.length) off += await f.write(bytes.subarray(off));
    await f.sync();
  } catch (err) {
    if (locked) await f.unlock().catch(() => {});
    f.close();
    throw err instanceof WalrustError ? err : localIoError(err, path, "lock");
  }
  let released = false;
  return {
    info,
    get lost() {
      return false;
    },
    renew: () => Promise.resolve(),
    release: async () => {
      if (released) return;
      released = true;
      try {
        await f.unlock();
      } catch { /* closing drops the lock anyway */ }
      f.close();
    },
  };
}

async function acquireObjectLease(
  store: ObjectStore,
  dbName: string,
  owner: string,
  ttlMs: number,
  where: string,
  opts: LeaseOptions,
): Promise<Lease> {
  const now = opts.now ?? (() => Date.now());
  const key = leaseKey(dbName);
  const token = newToken();
  const base = { owner, pid: Deno.pid, host: hostName(), token };
  const record = (): { info: LeaseInfo; body: Uint8Array } => {
    const info = { ...base, expiresAt: new Date(now() + ttlMs).toISOString() };
    return { info, body: new TextEncoder().encode(JSON.stringify(info)) };
  };
  const etagNow = async (): Promise<string | undefined> => (await store.head(key))?.etag;

  let state: { info: LeaseInfo; etag: string | undefined } | null = null;
  for (let tries = 0; tries < 5 && !state; tries++) {
    const r = record();
    try {
      const put = await store.put(key, r.body, { ifNoneMatch: "*" });
      state = { info: r.info, etag: put.etag ?? await etagNow() };
      break;
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
    }
    const head = await store.head(key);
    if (!head) continue; // released meanwhile: try to create it again
    let current: Partial<LeaseInfo> | null;
    try {
      current = parseInfo(await store.get(key));
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw err;
    }
    if (current?.token === token) {
      state = { info: { ...base, expiresAt: current.expiresAt ?? r.info.expiresAt }, etag: head.etag };
      break;
    }
    const expires = current?.expiresAt ? Date.parse(current.expiresAt) : NaN;
    // A lease we cannot read is treated as expired: it cannot name a live holder, and takeover is conditional.
    if (!Number.isNaN(expires) && expires > now()) throw heldMessage(where, current, current!.expiresAt!);
    if (!head.etag) throw heldMessage(where, current, current?.expiresAt ?? "its lease expires");
    try {
      const put = await store.put(key, r.body, { ifMatch: head.etag });
      state = { info: r.info, etag: put.etag ?? await etagNow() };
    } catch (err) {
      if (!(err instanceof ConflictError) && !(err instanceof NotFoundError)) throw err;
      // Someone else took it over or released it first: look again.
    }
  }
  if (!state) {
    throw new ConflictError(`replica ${where}: could not take the lease after several attempts; try again`);
  }

  let lost = false;
  let released = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const cur = state;

  const renew = async (): Promise<void> => {
    if (released) throw new ConflictError(`lease on ${where} was already released`);
    if (lost) throw new ConflictError(`lease on ${where} was lost; stop writing`);
    const r = record();
    try {
      const put = await store.put(key, r.body, { ifMatch: cur.etag });
      cur.info = r.info;
      cur.etag = put.etag ?? await etagNow();
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) {
        // A retried renewal whose first try succeeded (answer lost) also gets 412: check whose it is.
        const head = await store.head(key);
        const current = head ? parseInfo(await store.get(key).catch(() => new Uint8Array(0))) : null;
        if (head && current?.token === token && current.expiresAt === r.info.expiresAt) {
          cur.info = r.info;
          cur.etag = head.etag;
          return;
        }
        lost = true;
        throw new ConflictError(
          `lease on ${where} was lost: another writer took it over or it was deleted; stop writing`,
          { cause: err },
        );
      }
      throw err;
    }
  };

  const interval = opts.renewIntervalMs ?? Math.max(1, Math.floor(ttlMs / 3));
  if (interval > 0) {
    let busy = false;
    timer = setInterval(async () => {
      if (busy || released || lost) return;
      busy = true;
      try {
        await renew();
      } catch (caught) {
        let err = caught;
        if (!lost && !released && now() >= Date.parse(cur.info.expiresAt)) {
          // Could not renew before expiry: another process may take it over now, so stop writing.
          lost = true;
          err = new ConflictError(
            `lease on ${where} expired at ${cur.info.expiresAt}: it could not be renewed (${
              err instanceof Error ? err.message : String(err)
            }); stop writing`,
            { cause: err },
          );
        }
        if (lost && !released) {
          clearInterval(timer);
          opts.onLost?.(err as WalrustError);
        }
        // Other (transient) failures: try again next period.
      } finally {
        busy = false;
      }
    }, interval);
    Deno.unrefTimer(timer as unknown as number);
  }

  return {
    get info() {
      return cur.info;
    },
    get lost() {
      return lost || now() >= Date.parse(cur.info.expiresAt);
    },
    renew,
    release: async () => {
      if (released) return;
      released = true;
      clearInterval(timer);
      if (lost) return;
      try {
        const head = await store.head(key);
        if (head && head.etag === cur.etag) await store.delete([key]);
      } catch {
        // Best effort: an undeleted lease expires after its TTL.
      }
    },
  };
}
