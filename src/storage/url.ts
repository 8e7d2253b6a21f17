/**
 * Parsing of replica URLs: where a database's backups live.
 *
 * Accepted forms:
 * - `s3://bucket/prefix` (S3, R2, Tigris, MinIO, …; the endpoint comes from settings, not the URL)
 * - `bucket/prefix` (walrust's historical `-b` spelling: same as `s3://bucket/prefix`)
 * - `file:///abs/dir`
 * - a directory path: absolute (`/backups`) or explicitly relative (`./backups`, `../backups`, `.`)
 *
 * A bare word such as `backups` is the S3 spelling (bucket `backups`), as in walrust; a local directory
 * relative to the working directory must start with `./`. Credentials never go in a URL (`user:pass@` is
 * rejected without echoing them): they come from the environment or the config file.
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** A parsed replica URL. */
export interface ReplicaUrl {
  /** `file` = a local directory; `s3` = an S3-compatible bucket. */
  kind: "file" | "s3";
  /** The bucket (s3 only). */
  bucket?: string;
  /** Key prefix inside the bucket, without leading or trailing slashes (`""` = bucket root; file: `""`). */
  prefix: string;
  /** The directory (file only), absolute, or relative as given (`./x`). */
  path?: string;
}

/** The accepted forms, quoted in every error message. */
export const ACCEPTED_REPLICA_URLS =
  "accepted forms: s3://bucket/prefix, bucket/prefix, file:///abs/dir, /abs/dir or ./relative/dir";

// Lenient on purpose: legacy AWS buckets and MinIO/R2 allow upper case and underscores; the server rejects
// what it does not accept with a clear error of its own.
const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

/** Removes a `user:pass@` part so an error message never shows it. */
function redactUserinfo(url: string): string {
  return url.replace(/^(\s*[A-Za-z][A-Za-z0-9+.-]*:\/\/|\s*)[^/@]*@/, "$1***@");
}

function normalisePrefix(raw: string, shown: string): string {
  const parts = raw.split("/").filter((p) => p !== "");
  for (const p of parts) {
    if (p === "." || p === "..") {
      throw new UsageError(`replica URL '${shown}': prefix must not contain '.' or '..' segments`);
    }
  }
  return parts.join("/");
}

function parseS3(rest: string, shown: string): ReplicaUrl {
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefixRaw = slash < 0 ? "" : rest.slice(slash + 1);
  if (bucket === "") {
    throw new UsageError(`replica URL '${shown}': the bucket name is empty; ${ACCEPTED_REPLICA_URLS}`);
  }
  if (!BUCKET_RE.test(bucket)) {
    throw new UsageError(
      `replica URL '${shown}': '${bucket}' is not a valid bucket name (letters, digits, '.', '-', '_'); ` +
        `for a local directory write ./${shown} or an absolute path; ${ACCEPTED_REPLICA_URLS}`,
    );
  }
  return { kind: "s3", bucket, prefix: normalisePrefix(prefixRaw, shown) };
}

/**
 * Parses a replica URL. Throws {@link UsageError} naming the URL (with any credentials masked) and the
 * accepted forms when it is empty, has an unknown scheme, an empty bucket, credentials, a query string,
 * or is otherwise malformed.
 */
export function parseReplicaUrl(url: string): ReplicaUrl {
  const shown = redactUserinfo(url);
  const u = url.trim();
  if (u === "") throw new UsageError(`replica URL is empty; ${ACCEPTED_REPLICA_URLS}`);
  if (u.includes("\0")) throw new UsageError(`replica URL '${shown}' contains a NUL byte`);
  if (/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)?[^/@]*@/.test(u)) {
    throw new UsageError(
      `replica URL '${shown}' contains credentials; remove them and set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ` +
        `(or the config file) instead`,
    );
  }

  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(u);
  // A one-letter "scheme" is a Windows drive (C:\…), which is not supported either; treat it as unknown.
  if (scheme) {
    const name = scheme[1].toLowerCase();
    const afterScheme = u.slice(scheme[0].length);
    if (!afterScheme.startsWith("//")) {
      throw new UsageError(
        `replica URL '${shown}' is malformed (expected '${name}://…'); ${ACCEPTED_REPLICA_URLS}`,
      );
    }
    const rest = afterScheme.slice(2);
    const authority = rest.split("/")[0];
    if (authority.includes("@")) {
      throw new UsageError(
        `replica URL '${shown}' contains credentials; remove them and set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ` +
          `(or the config file) instead`,
      );
    }
    if (/[?#]/.test(rest)) {
      throw new UsageError(
        `replica URL '${shown}': query strings and fragments are not supported; ` +
          `use --endpoint/--region/--force-path-style instead`,
      );
    }
    if (name === "s3") return parseS3(rest, shown);
    if (name === "file") {
      if (authority !== "" && authority !== "localhost") {
        throw new UsageError(
          `replica URL '${shown}': file URLs must be absolute (file:///abs/dir), not on host '${authority}'`,
        );
      }
      let path: string;
      try {
        path = decodeURIComponent(rest.slice(authority.length));
      } catch (err) {
        throw new UsageError(`replica URL '${shown}' has a bad %-escape`, { cause: err });
      }
      if (!path.startsWith("/")) {
        throw new UsageError(`replica URL '${shown}': file URLs must be absolute (file:///abs/dir)`);
      }
      return { kind: "file", prefix: "", path: trimTrailingSlash(path) };
    }
    throw new UsageError(`replica URL '${shown}': unsupported scheme '${name}'; ${ACCEPTED_REPLICA_URLS}`);
  }

  if (u.startsWith("/") || u === "." || u === ".." || u.startsWith("./") || u.startsWith("../")) {
    return { kind: "file", prefix: "", path: trimTrailingSlash(u) };
  }
  if (u.startsWith("~")) {
    throw new UsageError(`replica URL '${shown}': '~' is not expanded; write the absolute path`);
  }
  if (u.includes("@")) {
    throw new UsageError(
      `replica URL '${shown}' looks like it contains credentials; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead`,
    );
  }
  // walrust's `-b bucket/prefix`.
  return parseS3(u, shown);
}

function trimTrailingSlash(p: string): string {
  let out = p;
  while (out.length > 1 && out.endsWith("/")) out = out.slice(0, -1);
  return out;
}

/** The canonical display form of a parsed URL: `s3://bucket/prefix` or the directory path. */
export function formatReplicaUrl(u: ReplicaUrl): string {
  if (u.kind === "s3") return `s3://${u.bucket}${u.prefix ? "/" + u.prefix : ""}`;
  return u.path ?? "";
}
