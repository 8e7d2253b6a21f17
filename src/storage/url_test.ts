import assert from "node:assert/strict";
import { UsageError } from "../errors.ts";
import { formatReplicaUrl, parseReplicaUrl } from "./url.ts";

Deno.test("parseReplicaUrl: s3:// with and without prefix", () => {
  assert.deepEqual(parseReplicaUrl("s3://bucket/some/prefix"), {
    kind: "s3",
    bucket: "bucket",
    prefix: "some/prefix",
  });
  assert.deepEqual(parseReplicaUrl("s3://bucket"), { kind: "s3", bucket: "bucket", prefix: "" });
  assert.deepEqual(parseReplicaUrl("s3://bucket/"), { kind: "s3", bucket: "bucket", prefix: "" });
  assert.deepEqual(parseReplicaUrl("s3://b/p//q/"), { kind: "s3", bucket: "b", prefix: "p/q" });
  assert.deepEqual(parseReplicaUrl("S3://b/p"), { kind: "s3", bucket: "b", prefix: "p" });
});

Deno.test("parseReplicaUrl: walrust's bare bucket/prefix spelling is S3", () => {
  assert.deepEqual(parseReplicaUrl("my-bucket/backups"), {
    kind: "s3",
    bucket: "my-bucket",
    prefix: "backups",
  });
  assert.deepEqual(parseReplicaUrl("my-bucket"), { kind: "s3", bucket: "my-bucket", prefix: "" });
});

Deno.test("parseReplicaUrl: file URLs and plain paths", () => {
  assert.deepEqual(parseReplicaUrl("file:///var/backups/"), {
    kind: "file",
    prefix: "",
    path: "/var/backups",
  });
  assert.deepEqual(parseReplicaUrl("file://localhost/x%20y"), { kind: "file", prefix: "", path: "/x y" });
  assert.deepEqual(parseReplicaUrl("/abs/dir"), { kind: "file", prefix: "", path: "/abs/dir" });
  assert.deepEqual(parseReplicaUrl("./rel/dir/"), { kind: "file", prefix: "", path: "./rel/dir" });
  assert.deepEqual(parseReplicaUrl("../up"), { kind: "file", prefix: "", path: "../up" });
  assert.deepEqual(parseReplicaUrl("."), { kind: "file", prefix: "", path: "." });
  assert.deepEqual(parseReplicaUrl("/"), { kind: "file", prefix: "", path: "/" });
});

function usage(url: string): string {
  try {
    parseReplicaUrl(url);
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected UsageError for ${url}, got ${err}`);
    return err.message;
  }
  assert.fail(`expected ${url} to be rejected`);
}

Deno.test("parseReplicaUrl: bad URLs are UsageErrors naming the URL and the accepted forms", () => {
  for (
    const bad of [
      "",
      "   ",
      "gs://bucket/x",
      "s3://",
      "s3:///prefix",
      "s3:bucket",
      "file://host/x",
      "file:rel",
    ]
  ) {
    const msg = usage(bad);
    assert.ok(msg.includes("replica URL"), msg);
  }
  assert.match(usage("gs://bucket/x"), /unsupported scheme 'gs'.*s3:\/\/bucket\/prefix/);
  assert.match(usage("s3:///prefix"), /bucket name is empty/);
  assert.match(usage("s3://b/p?endpoint=x"), /query strings/);
  assert.match(usage("s3://b/../x"), /'\.\.'/);
  assert.match(usage("bad bucket/x"), /not a valid bucket name.*\.\/bad bucket/);
  assert.match(usage("~/backups"), /'~' is not expanded/);
});

Deno.test("parseReplicaUrl: credentials in a URL are rejected and never echoed", () => {
  for (const url of ["s3://AKIAXXXX:sup3rs3cret@bucket/p", "AKIAXXXX:sup3rs3cret@bucket/p"]) {
    const msg = usage(url);
    assert.ok(!msg.includes("sup3rs3cret"), msg);
    assert.match(msg, /credentials/);
  }
});

Deno.test("formatReplicaUrl: canonical forms", () => {
  assert.equal(formatReplicaUrl(parseReplicaUrl("bucket/p/q/")), "s3://bucket/p/q");
  assert.equal(formatReplicaUrl(parseReplicaUrl("s3://bucket")), "s3://bucket");
  assert.equal(formatReplicaUrl(parseReplicaUrl("file:///x/")), "/x");
});
