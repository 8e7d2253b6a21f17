import assert from "node:assert/strict";
import {
  AuthError,
  BucketNotFoundError,
  ConflictError,
  ConnectionError,
  NotFoundError,
  type WalrustError,
} from "../errors.ts";
import { mapS3Error, S3ObjectStore } from "./s3.ts";

const CTX = {
  op: "put",
  bucket: "bkt",
  key: "pre/app/0000/x.ltx",
  endpoint: "https://user:pw@s3.example.com:9000/p",
};

/** An error shaped like the SDK's service exceptions. */
function sdkError(name: string, status?: number, message = name): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status }, $fault: "client" });
}

function map(err: unknown): WalrustError {
  return mapS3Error(err, CTX);
}

Deno.test("mapS3Error: credentials problems are AuthError (not transient) with a hint", () => {
  const cases: [Error, RegExp][] = [
    [sdkError("InvalidAccessKeyId", 403), /AWS_ACCESS_KEY_ID/],
    [sdkError("SignatureDoesNotMatch", 403), /AWS_SECRET_ACCESS_KEY/],
    [sdkError("ExpiredToken", 400), /AWS_SESSION_TOKEN/],
    [sdkError("AccessDenied", 403), /bucket policy/],
    [sdkError("Forbidden", 403), /access denied/],
    [sdkError("UnknownError", 403), /HTTP 403|UnknownError/],
    [
      Object.assign(new Error("Could not load credentials from any providers"), {
        name: "CredentialsProviderError",
      }),
      /no S3 credentials/,
    ],
  ];
  for (const [err, re] of cases) {
    const m = map(err);
    assert.ok(m instanceof AuthError, err.name);
    assert.equal(m.transient, false);
    assert.match(m.message, re);
    assert.match(m.message, /s3:\/\/bkt\/pre\/app\/0000\/x\.ltx/);
    assert.ok(!m.message.includes("pw"), "endpoint credentials are never shown");
  }
});

Deno.test("mapS3Error: missing bucket, missing key, failed precondition", () => {
  const nb = map(sdkError("NoSuchBucket", 404));
  assert.ok(nb instanceof BucketNotFoundError);
  assert.equal(
    nb.message,
    "bucket 'bkt' does not exist at https://s3.example.com:9000; create it or fix the replica URL",
  );
  assert.ok(map(sdkError("NoSuchKey", 404)) instanceof NotFoundError);
  assert.ok(map(sdkError("NotFound", 404)) instanceof NotFoundError);
  assert.ok(map(sdkError("PreconditionFailed", 412)) instanceof ConflictError);
  assert.ok(map(sdkError("Unknown", 412)) instanceof ConflictError);
  assert.ok(map(sdkError("ConditionalRequestConflict", 409)) instanceof ConflictError);
});

Deno.test("mapS3Error: 5xx, 429, SlowDown, timeouts and network errors are transient ConnectionErrors", () => {
  const transient: unknown[] = [
    sdkError("InternalError", 500),
    sdkError("ServiceUnavailable", 503),
    sdkError("SlowDown", 503),
    sdkError("SlowDown", 429),
    sdkError("Whatever", 502),
    sdkError("TooManyRequests", 429),
    sdkError("RequestTimeout", 400),
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }),
    Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }),
    Object.assign(new Error("timed out"), { name: "TimeoutError" }),
    Object.assign(new Error("getaddrinfo ENOTFOUND nowhere"), { code: "ENOTFOUND" }),
    new Error("premature close"),
  ];
  for (const err of transient) {
    const m = map(err);
    assert.ok(m instanceof ConnectionError, String(err));
    assert.equal(m.transient, true, String(err));
  }
});

Deno.test("mapS3Error: wrong region and other 4xx are non-transient ConnectionErrors", () => {
  const region = map(sdkError("PermanentRedirect", 301));
  assert.ok(region instanceof ConnectionError);
  assert.equal(region.transient, false);
  assert.match(region.message, /--region/);
  const bad = map(sdkError("InvalidArgument", 400, "bad header"));
  assert.ok(bad instanceof ConnectionError);
  assert.equal(bad.transient, false);
  assert.match(bad.message, /InvalidArgument: bad header/);
});

Deno.test("mapS3Error: typed errors pass through unchanged", () => {
  const e = new NotFoundError("x");
  assert.equal(map(e), e);
});

Deno.test("S3ObjectStore: prefix normalisation, display URL and destination hide credentials", () => {
  const s = new S3ObjectStore({
    bucket: "b",
    prefix: "/a/b/",
    endpoint: "http://key:secret@127.0.0.1:9000",
    accessKeyId: "AKIA",
    secretAccessKey: "verysecretvalue",
  });
  try {
    assert.equal(s.prefix, "a/b");
    assert.equal(s.displayUrl, "s3://b/a/b");
    assert.equal(s.fullKey("x/y"), "a/b/x/y");
    assert.equal(s.destination, "http://127.0.0.1:9000 s3://b/a/b");
    assert.equal(new S3ObjectStore({ bucket: "b" }).fullKey("k"), "k");
  } finally {
    s.close();
  }
});
