/**
 * End-to-end tests of the S3 backend against a real s3rver (Node, spawned by the test).
 */

import assert from "node:assert/strict";
import {
  AuthError,
  BucketNotFoundError,
  ConnectionError,
  CorruptionError,
  LocalIoError,
  NotFoundError,
} from "../src/errors.ts";
import { crc64 } from "../src/ltx/checksum.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import type { ObjectStore } from "../src/storage/object_store.ts";
import { LazyS3ObjectStore, openObjectStore } from "../src/storage/open.ts";
import { listDatabases, ReplicaClient } from "../src/storage/replica_client.ts";
import { RetryingObjectStore } from "../src/storage/retry.ts";
import { MULTIPART_PART_BYTES, S3ObjectStore, type S3StoreOptions, sha256Hex } from "../src/storage/s3.ts";
import { startS3rver } from "./support/s3rver.ts";

const enc = new TextEncoder();

async function keys(store: ObjectStore, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

Deno.test("s3 backend against s3rver", async (t) => {
  const server = await startS3rver({ bucket: "walrust-e2e" });
  const stores: ObjectStore[] = [];
  const open = (o: Partial<S3StoreOptions> = {}): S3ObjectStore => {
    const s = new S3ObjectStore({
      bucket: server.bucket,
      endpoint: server.endpoint,
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      region: server.region,
      ...o,
    });
    stores.push(s);
    return s;
  };
  try {
    await t.step(
      "put/get/head/getStream/delete round trip below a prefix, with sha256 metadata",
      async () => {
        const store = open({ prefix: "team/backups/" });
        assert.equal(store.displayUrl, "s3://walrust-e2e/team/backups");
        const body = enc.encode("hello s3");
        const { etag } = await store.put("app/0000/x", body, {
          metadata: { "Litestream-Timestamp": "2024-01-02T03:04:05Z" },
        });
        assert.match(etag ?? "", /^"[0-9a-f]{32}"$/);
        assert.deepEqual(await store.get("app/0000/x"), body);
        const head = await store.head("app/0000/x");
        assert.equal(head?.size, body.byteLength);
        assert.equal(head?.etag, etag);
        assert.equal(head?.metadata["litestream-timestamp"], "2024-01-02T03:04:05Z");
        assert.equal(head?.metadata.sha256, await sha256Hex(body));
        const chunks: Uint8Array[] = [];
        for await (const c of await store.getStream("app/0000/x")) chunks.push(c);
        assert.deepEqual(new Uint8Array(chunks.flatMap((c) => [...c])), body);
        // The prefix is part of the real key.
        assert.deepEqual(await keys(open()), ["team/backups/app/0000/x"]);
        assert.equal(await store.head("app/0000/missing"), null);
        await assert.rejects(store.get("app/0000/missing"), (e: Error) => {
          assert.ok(e instanceof NotFoundError);
          assert.match(e.message, /s3:\/\/walrust-e2e\/team\/backups\/app\/0000\/missing not found/);
          return true;
        });
        await store.delete(["app/0000/x", "app/0000/never-existed"]);
        assert.equal(await store.head("app/0000/x"), null);
        await store.delete([]);
      },
    );

    await t.step("listing paginates (MaxKeys 3) in key order and honours startAfter", async () => {
      const store = open({ prefix: "paged", pageSize: 3 });
      const ks = Array.from({ length: 10 }, (_, i) => `db/0000/${String(i).padStart(4, "0")}`);
      await Promise.all(ks.map((k) => store.put(k, enc.encode(k))));
      await store.put("other/0000/0000", enc.encode("x"));
      assert.deepEqual(await keys(store, "db/"), ks);
      const after: string[] = [];
      for await (const o of store.list("db/", { startAfter: ks[6] })) after.push(o.key);
      assert.deepEqual(after, ks.slice(7));
      assert.deepEqual(await keys(store, "nothing/"), []);
      await store.delete([...ks, "other/0000/0000"]);
    });

    await t.step(
      "listing is in S3 byte order across directories, also when paginated (patched s3rver)",
      async () => {
        const store = open({ prefix: "order", pageSize: 2 });
        const ks = ["a/1", "a/2", "b/1", "a.x", "a/0", "a-b/1", "ab"];
        for (const k of ks) await store.put(k, enc.encode(k));
        assert.deepEqual(await keys(store), [...ks].sort());
        // Deleting many keys of one directory at once (s3rver raced here before the patch).
        await store.delete(ks);
        assert.deepEqual(await keys(store), []);
      },
    );

    await t.step(
      "ReplicaClient writes Litestream's S3 keys and metadata; accurate timestamps via HEAD",
      async () => {
        const store = open({ prefix: "ls" });
        const client = new ReplicaClient(store, "app");
        const ts = Date.UTC(2023, 10, 14, 22, 13, 20, 456);
        await client.writeLtxFile(9, 1, 0x2a, enc.encode("snapshot bytes"), { timestamp: ts });
        await client.writeLtxFile(0, 0x2b, 0x2b, enc.encode("l0"), { timestamp: ts + 1 });
        await client.writeLtxFile(1, 0x2b, 0x30, enc.encode("l1"), { timestamp: ts + 2 });
        assert.deepEqual(await keys(open()), [
          "ls/app/0000/000000000000002b-000000000000002b.ltx",
          "ls/app/0001/000000000000002b-0000000000000030.ltx",
          "ls/app/0009/0000000000000001-000000000000002a.ltx",
        ]);
        const head = await store.head("app/0009/0000000000000001-000000000000002a.ltx");
        assert.equal(head?.metadata["litestream-timestamp"], "2023-11-14T22:13:20.456Z");
        const fast = await client.ltxFiles(9);
        assert.notEqual(fast[0].createdAt.getTime(), ts, "LastModified (s3rver: now, 1 s precision)");
        const accurate = await client.ltxFiles(9, { accurateTimestamps: true });
        assert.equal(accurate[0].createdAt.getTime(), ts);
        assert.deepEqual((await client.allLtxFiles()).map((f) => [f.level, f.minTXID, f.maxTXID, f.size]), [
          [0, 0x2b, 0x2b, 2],
          [1, 0x2b, 0x30, 2],
          [9, 1, 0x2a, 14],
        ]);
        assert.deepEqual(await client.readLtxFile(9, 1, 0x2a), enc.encode("snapshot bytes"));
        await new ReplicaClient(store, "second").writeLtxFile(0, 1, 1, enc.encode("x"), { timestamp: ts });
        assert.deepEqual(await listDatabases(store), ["app", "second"]);
        await client.deleteLtxFiles(await client.allLtxFiles());
        assert.deepEqual(await client.allLtxFiles(), []);
      },
    );

    await t.step(
      "a body altered at rest fails the sha256 check (CorruptionError), never returned",
      async () => {
        const store = open({ prefix: "corrupt" });
        await store.put("db/obj", enc.encode("original content"));
        const file = `${server.dir}/${server.bucket}/corrupt/db/obj._S3rver_object`;
        const bytes = await Deno.readFile(file);
        bytes[3] ^= 0xff;
        await Deno.writeFile(file, bytes);
        await assert.rejects(store.get("db/obj"), (e: Error) => {
          assert.ok(e instanceof CorruptionError);
          assert.match(
            e.message,
            /s3:\/\/walrust-e2e\/corrupt\/db\/obj: sha256 [0-9a-f]{64} of the downloaded/,
          );
          return true;
        });
      },
    );

    await t.step("wrong credentials are AuthError naming the bucket, never the secret", async () => {
      const badKey = open({ accessKeyId: "NOT-A-KEY", secretAccessKey: "wrong-secret-value-123" });
      await assert.rejects(badKey.get("x"), (e: Error) => {
        assert.ok(e instanceof AuthError);
        assert.match(
          e.message,
          /s3:\/\/walrust-e2e\/x: access denied .*InvalidAccessKeyId.*AWS_ACCESS_KEY_ID/,
        );
        assert.ok(!e.message.includes("wrong-secret-value-123"));
        return true;
      });
      // s3rver does not verify SigV4 signatures, so a wrong *secret* cannot be tested here; the mapping of
      // SignatureDoesNotMatch/ExpiredToken/403 is unit-tested in src/storage/s3_test.ts.
      await assert.rejects(keys(badKey), AuthError);
      await assert.rejects(badKey.put("x", enc.encode("x")), AuthError);
    });

    await t.step("a missing bucket is BucketNotFoundError for list, get and put", async () => {
      const store = open({ bucket: "no-such-bucket" });
      for (const op of [() => keys(store), () => store.get("k"), () => store.put("k", enc.encode("x"))]) {
        await assert.rejects(op(), (e: Error) => {
          assert.ok(e instanceof BucketNotFoundError);
          assert.match(
            e.message,
            /bucket 'no-such-bucket' does not exist at http:\/\/127\.0\.0\.1:\d+; create it/,
          );
          return true;
        });
      }
    });

    await t.step("an unreachable endpoint is a transient ConnectionError", async () => {
      // Port 9 on 127.0.0.1 ("discard") refuses connections here; nothing listens on it.
      const store = open({ endpoint: "http://127.0.0.1:9", connectTimeoutMs: 2_000 });
      await assert.rejects(store.get("k"), (e: Error) => {
        assert.ok(e instanceof ConnectionError);
        assert.equal(e.transient, true);
        assert.match(e.message, /cannot reach http:\/\/127\.0\.0\.1:9/);
        return true;
      });
      const retrying = new RetryingObjectStore(store, {
        maxAttempts: 2,
        baseDelayMs: 1,
        maxDelayMs: 1,
        breakerThreshold: 0,
        breakerCooldownMs: 1,
      });
      await assert.rejects(retrying.head("k"), /gave up after 2 attempts/);
    });

    await t.step("region 'auto' (R2/Tigris) signs requests that work", async () => {
      const store = open({ region: "auto", prefix: "auto" });
      await store.put("k", enc.encode("v"));
      assert.deepEqual(await store.get("k"), enc.encode("v"));
    });

    await t.step(
      "putFile uploads a file in parts above 16 MiB and with one PUT below, sha256 metadata as given",
      async () => {
        const dir = await Deno.makeTempDir({ prefix: "walrust-s3-putfile-" });
        try {
          const store = open({ prefix: "files" });
          for (const size of [MULTIPART_PART_BYTES * 2 + 12_345, 300_000]) {
            const body = new Uint8Array(size);
            for (let i = 0; i < size; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
            const path = `${dir}/f${size}`;
            await Deno.writeFile(path, body);
            const sha256 = await sha256Hex(body);
            await store.putFile(`app/0009/${size}.ltx`, path, {
              size,
              sha256,
              crc64: crc64(body),
              metadata: { "litestream-timestamp": "2024-01-02T03:04:05Z" },
            });
            assert.deepEqual(await store.get(`app/0009/${size}.ltx`), body);
            const head = await store.head(`app/0009/${size}.ltx`);
            assert.equal(head?.size, size);
            assert.equal(head?.metadata.sha256, sha256);
            assert.equal(head?.metadata["litestream-timestamp"], "2024-01-02T03:04:05Z");
          }
          // A file whose size differs from the one given is refused, and nothing is left under its key.
          const path = `${dir}/short`;
          await Deno.writeFile(path, new Uint8Array(MULTIPART_PART_BYTES + 10));
          await assert.rejects(
            store.putFile("app/0009/short.ltx", path, {
              size: MULTIPART_PART_BYTES + 20,
              sha256: "0".repeat(64),
              crc64: 0n,
            }),
            (e: Error) => e instanceof LocalIoError && /changed while being uploaded/.test(e.message),
          );
          assert.equal(await store.head("app/0009/short.ltx"), null);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      },
    );

    await t.step("openObjectStore picks the backend from the URL", async () => {
      const s3 = openObjectStore({
        url: `s3://${server.bucket}/opened`,
        endpoint: server.endpoint,
        accessKeyId: server.accessKeyId,
        secretAccessKey: server.secretAccessKey,
      });
      stores.push(s3);
      // The S3 backend is loaded on first use (open.ts), behind a wrapper with the same identity.
      assert.ok(s3 instanceof LazyS3ObjectStore);
      assert.equal(s3.displayUrl, "s3://walrust-e2e/opened");
      await s3.put("k", enc.encode("v"));
      assert.deepEqual(await keys(open(), "opened/"), ["opened/k"]);
      const bare = openObjectStore({ url: `${server.bucket}/p`, endpoint: server.endpoint });
      stores.push(bare);
      assert.equal(bare.kind, "s3");
      const file = openObjectStore({ url: "/tmp/walrust-not-created" });
      assert.ok(file instanceof FileObjectStore);
      const wrapped = openObjectStore({ url: "./x" }, {
        retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, breakerThreshold: 0, breakerCooldownMs: 1 },
      });
      assert.ok(wrapped instanceof RetryingObjectStore);
    });
  } finally {
    for (const s of stores) s.close();
    await server.stop();
  }
});
