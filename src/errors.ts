/**
 * Typed errors and the exit-code table shared by every command.
 *
 * Every failure a user can cause or meet (bad input, a missing bucket, a corrupt object) is one of these
 * classes. The CLI prints `error.message` as one line and exits with `error.exitCode`; a stack trace is
 * shown only for errors that are not a {@link WalrustError} (a bug).
 *
 * @module
 */

/** Exit codes, one per failure category. Documented in README.md and in `walrust --help`. */
export const ExitCode = {
  /** Success. */
  OK: 0,
  /** Unexpected internal error (a bug): the message includes a stack trace. */
  INTERNAL: 1,
  /** Bad command line or invalid configuration file. */
  USAGE: 2,
  /** The database is missing, not SQLite, not in WAL mode, or SQLite refused an operation. */
  DATABASE: 3,
  /** The replica rejected the credentials (wrong key, expired token, access denied). */
  AUTH: 4,
  /** The replica could not be reached (DNS, refused connection, timeout, repeated 5xx). */
  CONNECTION: 5,
  /** The bucket (or the local replica directory's parent) does not exist. */
  BUCKET_NOT_FOUND: 6,
  /** A backup object or local file is corrupt (bad checksum, bad header, truncated). */
  CORRUPTION: 7,
  /** The backup chain has a gap: TXIDs are missing between a snapshot and the target. */
  GAP: 8,
  /** The newest backup is older than the allowed age (`verify --max-age`). */
  STALE: 9,
  /** Nothing to restore: no backup, or the requested TXID/timestamp is not covered. */
  NOT_FOUND: 10,
  /** Refused to proceed: the output exists, or another process holds the replication lease/lock. */
  CONFLICT: 11,
  /** A local file could not be written: disk full, read-only directory, permission denied. */
  LOCAL_IO: 12,
  /** Interrupted by SIGINT/SIGTERM before the work was complete. */
  INTERRUPTED: 130,
} as const;

/** One of the values of {@link ExitCode}. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/** Short category names, used in logs (`class=`), metrics labels and JSON output. */
export type ErrorClass =
  | "internal"
  | "usage"
  | "database"
  | "auth"
  | "connection"
  | "bucket_not_found"
  | "corruption"
  | "gap"
  | "stale"
  | "not_found"
  | "conflict"
  | "local_io"
  | "interrupted";

/** Base class of every expected failure. The message is one line that names the thing and what to do. */
export class WalrustError extends Error {
  /** The process exit code for this failure. */
  readonly exitCode: ExitCodeValue;
  /** The category, for logs, metrics and JSON. */
  readonly errorClass: ErrorClass;
  /** Whether retrying the same operation may succeed (network blips, 5xx, throttling). */
  readonly transient: boolean;

  /** Creates an error of the given category. */
  constructor(
    message: string,
    exitCode: ExitCodeValue,
    errorClass: ErrorClass,
    options?: { cause?: unknown; transient?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.errorClass = errorClass;
    this.transient = options?.transient ?? false;
  }
}

/** A bad command line: unknown flag, missing argument, malformed value. Exit 2. */
export class UsageError extends WalrustError {
  /** Creates a usage error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.USAGE, "usage", options);
  }
}

/** An invalid configuration file or value (with file, line and column when known). Exit 2. */
export class ConfigError extends WalrustError {
  /** Creates a configuration error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.USAGE, "usage", options);
  }
}

/** The database is missing, not SQLite, not in WAL mode, or SQLite failed. Exit 3. */
export class DatabaseError extends WalrustError {
  /** Creates a database error. */
  constructor(message: string, options?: { cause?: unknown; transient?: boolean }) {
    super(message, ExitCode.DATABASE, "database", options);
  }
}

/** The replica refused the credentials. Never retried. Exit 4. */
export class AuthError extends WalrustError {
  /** Creates an authentication error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.AUTH, "auth", options);
  }
}

/** The replica is unreachable or failing (network, timeouts, 5xx, throttling). Usually retried. Exit 5. */
export class ConnectionError extends WalrustError {
  /** Creates a connection error; transient unless told otherwise. */
  constructor(message: string, options?: { cause?: unknown; transient?: boolean }) {
    super(message, ExitCode.CONNECTION, "connection", { transient: true, ...options });
  }
}

/** The bucket does not exist. Exit 6. */
export class BucketNotFoundError extends WalrustError {
  /** Creates a bucket-not-found error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.BUCKET_NOT_FOUND, "bucket_not_found", options);
  }
}

/** Corrupt or truncated data, with the object/file name and byte offset when known. Exit 7. */
export class CorruptionError extends WalrustError {
  /** The file path or object key that is corrupt, when known. */
  readonly object?: string;
  /** The byte offset in that object where the problem was found, when known. */
  readonly offset?: number;

  /** Creates a corruption error; the message should already name what is wrong. */
  constructor(message: string, options?: { cause?: unknown; object?: string; offset?: number }) {
    super(
      options?.object !== undefined
        ? `${options.object}${options.offset !== undefined ? ` at byte ${options.offset}` : ""}: ${message}`
        : message,
      ExitCode.CORRUPTION,
      "corruption",
      options,
    );
    this.object = options?.object;
    this.offset = options?.offset;
  }
}

/** The backup chain is missing TXIDs. Exit 8. */
export class GapError extends WalrustError {
  /** First missing TXID. */
  readonly fromTxid: number;
  /** Last missing TXID. */
  readonly toTxid: number;

  /** Creates a gap error naming the missing range. */
  constructor(message: string, fromTxid: number, toTxid: number, options?: { cause?: unknown }) {
    super(message, ExitCode.GAP, "gap", options);
    this.fromTxid = fromTxid;
    this.toTxid = toTxid;
  }
}

/** The newest backup is older than allowed. Exit 9. */
export class StaleBackupError extends WalrustError {
  /** Creates a stale-backup error. */
  constructor(message: string) {
    super(message, ExitCode.STALE, "stale");
  }
}

/** Nothing matches: no backup, no such object, or the target TXID/time is not covered. Exit 10. */
export class NotFoundError extends WalrustError {
  /** Creates a not-found error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.NOT_FOUND, "not_found", options);
  }
}

/** Refused: output exists, lease/lock held by another process, conditional write lost. Exit 11. */
export class ConflictError extends WalrustError {
  /** Creates a conflict error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.CONFLICT, "conflict", options);
  }
}

/** A local write failed: disk full, read-only file system, permission denied. Exit 12. */
export class LocalIoError extends WalrustError {
  /** Creates a local I/O error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.LOCAL_IO, "local_io", options);
  }
}

/** The operation was interrupted by a signal. Exit 130. */
export class InterruptedError extends WalrustError {
  /** Creates an interrupted error. */
  constructor(message = "interrupted") {
    super(message, ExitCode.INTERRUPTED, "interrupted");
  }
}

/** The exit code for any thrown value: typed errors carry theirs; anything else is internal (1). */
export function exitCodeOf(err: unknown): number {
  return err instanceof WalrustError ? err.exitCode : ExitCode.INTERNAL;
}

/** The error class for any thrown value. */
export function errorClassOf(err: unknown): ErrorClass {
  return err instanceof WalrustError ? err.errorClass : "internal";
}

/** A readable message for any thrown value, including strings thrown by wasm modules. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/**
 * Maps a local file-system failure to a typed error naming the path: disk full and permission problems become
 * {@link LocalIoError}, a missing file {@link NotFoundError}; anything else is returned unchanged.
 */
export function localIoError(err: unknown, path: string, action: string): unknown {
  if (err instanceof WalrustError) return err;
  const code = (err as { code?: string })?.code;
  if (err instanceof Deno.errors.NotFound || code === "ENOENT") {
    return new NotFoundError(`${action} ${path}: no such file or directory`, { cause: err });
  }
  if (err instanceof Deno.errors.NotCapable) {
    return new LocalIoError(
      `${action} ${path}: Deno did not grant access; run with --allow-read/--allow-write covering this path`,
      { cause: err },
    );
  }
  if (err instanceof Deno.errors.PermissionDenied || code === "EACCES" || code === "EPERM") {
    return new LocalIoError(`${action} ${path}: permission denied; check the directory's owner and mode`, {
      cause: err,
    });
  }
  if (err instanceof Deno.errors.NotADirectory || code === "ENOTDIR") {
    return new LocalIoError(
      `${action} ${path}: a component of the path is a file, not a directory; fix the path`,
      {
        cause: err,
      },
    );
  }
  if (code === "EROFS" || /read-only file system/i.test(messageOf(err))) {
    return new LocalIoError(`${action} ${path}: read-only file system`, { cause: err });
  }
  if (code === "ENOSPC" || /no space left/i.test(messageOf(err))) {
    return new LocalIoError(`${action} ${path}: no space left on device; free disk space and retry`, {
      cause: err,
    });
  }
  return err;
}
