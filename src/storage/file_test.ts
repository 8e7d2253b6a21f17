import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BucketNotFoundError,
  ConflictError,
  CorruptionError,
  LocalIoError,
  NotFoundError,
  UsageError,
} from "../errors.ts";
import { sha256Hex } from "./digest.ts";
import {
  absolutePath,
  FileObjectStore,
  isValidFileKey,
  recordedDigests,
  recordedSha256,
  sidecarPath,
} from "./file.ts";
import { crc64 } from "../ltx/checksum.ts";
import type { ObjectInfo } from "./object_store.ts";

const enc = new TextEncoder();

async function withStore(fn: (store: FileObjectStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-file-store-" });
  try {
    await fn(new FileObjectStore(`${dir}/replica`), dir);
  } finally {
    await Deno.chmod(dir, 0o755).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

async function collect(it: AsyncIterable<ObjectInfo>): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of it) keys.push(o.key);
  return keys;
}

Deno.test("file store: put/get/head/getStream round trip with mtime and nested directories", async () => {
  await withStore(async (store, dir) => {
    const mtime = new Date(1_700_000_000_123);
    const { etag } = await store.put("app/ltx/0/a.ltx", enc.encode("hello"), { mtime });
    assert.ok(etag);
    assert.deepEqual(await store.get("app/ltx/0/a.ltx"), enc.encode("hello"));
    const st = await Deno.stat(`${dir}/replica/app/ltx/0/a.ltx`);
    assert.equal(st.mtime?.getTime(), mtime.getTime());
    const head = await store.head("app/ltx/0/a.ltx");
    assert.equal(head?.size, 5);
    assert.equal(head?.lastModified.getTime(), mtime.getTime());
    assert.equal(head?.etag, etag);
    const chunks: Uint8Array[] = [];
    for await (const c of await store.getStream("app/ltx/0/a.ltx")) chunks.push(c);
    assert.equal(new TextDecoder().decode(chunks[0]), "hello");
    assert.equal(store.displayUrl, `${dir}/replica`);
  });
});

Deno.test("file store: a missing root reads as empty; missing keys are NotFoundError/null", async () => {
  await withStore(async (store) => {
    assert.deepEqual(await collect(store.list("")), []);
    assert.equal(await store.head("x/y"), null);
    await assert.rejects(store.get("x/y"), NotFoundError);
    await assert.rejects(store.getStream("x/y"), NotFoundError);
    await store.delete(["x/y"]); // absent keys are not an error
  });
});

Deno.test("file store: the root's parent must exist (BucketNotFoundError), the root itself is created", async () => {
  await withStore(async (_store, dir) => {
    const deep = new FileObjectStore(`${dir}/missing-parent/replica`);
    await assert.rejects(deep.put("a/b", enc.encode("x")), (e: Error) => {
      assert.ok(e instanceof BucketNotFoundError);
      assert.match(e.message, /missing-parent does not exist/);
      return true;
    });
    assert.equal(await Deno.stat(`${dir}/missing-parent`).catch(() => null), null);
    const ok = new FileObjectStore(`${dir}/new-root`);
    await ok.put("a/b", enc.encode("x"));
    assert.deepEqual(await ok.get("a/b"), enc.encode("x"));
  });
});

Deno.test("file store: listing is recursive, in exact key (byte) order, filtered by prefix and startAfter", async () => {
  await withStore(async (store) => {
    const keys = ["a/1", "a/2", "a.x", "a-b/1", "a/0", "b", "a/sub/z", "ab"];
    for (const k of keys) await store.put(k, enc.encode(k));
    const sorted = [...keys].sort();
    assert.deepEqual(await collect(store.list("")), sorted);
    assert.deepEqual(await collect(store.list("a/")), ["a/0", "a/1", "a/2", "a/sub/z"]);
    assert.deepEqual(await collect(store.list("a")), sorted.filter((k) => k.startsWith("a")));
    assert.deepEqual(await collect(store.list("a/s")), ["a/sub/z"]);
    assert.deepEqual(await collect(store.list("", { startAfter: "a/1" })), sorted.filter((k) => k > "a/1"));
    assert.deepEqual(await collect(store.list("zzz/")), []);
  });
});

Deno.test("file store: property: listing order equals sorted keys for random key sets", async () => {
  const seg = fc.stringMatching(/^[a-c.\-_0-9]{1,3}$/).filter((s) =>
    s !== "." && s !== ".." && !s.endsWith(".tmp")
  );
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.array(seg, { minLength: 1, maxLength: 3 }), { maxLength: 12 }),
      async (paths) => {
        await withStore(async (store) => {
          const written: string[] = [];
          for (const p of paths) {
            const key = p.join("/");
            try {
              await store.put(key, enc.encode(key));
              written.push(key);
            } catch {
              // A file where a directory is needed (or vice versa): not a valid key set; skip it.
            }
          }
          const listed = await collect(store.list(""));
          const existing: string[] = [];
          for (const k of written) if (await store.head(k)) existing.push(k);
          assert.deepEqual(listed, [...new Set(existing)].sort());
        });
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("file store: keys are validated before any path is built", async () => {
  await withStore(async (store, dir) => {
    for (const bad of ["", "/abs", "a/../../etc/passwd", "..", "a//b", "a/./b", "a\0b", "a b", "a/", "ü"]) {
      assert.equal(isValidFileKey(bad), false, bad);
      await assert.rejects(store.put(bad, enc.encode("x")), UsageError, bad);
      await assert.rejects(store.get(bad), UsageError, bad);
      await assert.rejects(store.head(bad), UsageError, bad);
      await assert.rejects(store.delete([bad]), UsageError, bad);
    }
    assert.equal(await Deno.stat(`${dir}/etc`).catch(() => null), null);
    assert.ok(isValidFileKey("app/ltx/9/0000000000000001-0000000000000005.ltx"));
  });
});

Deno.test("file store: listing skips temp files, invalid names and symlinks (never leaves the root)", async () => {
  await withStore(async (store, dir) => {
    await store.put("db/ltx/0/a.ltx", enc.encode("a"));
    const root = `${dir}/replica`;
    await Deno.writeTextFile(`${root}/db/ltx/0/.a.ltx.123-abc.tmp`, "partial");
    await Deno.writeTextFile(`${root}/db/ltx/0/b.ltx.tmp`, "partial");
    await Deno.writeTextFile(`${root}/db/ltx/0/has space`, "x");
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeTextFile(`${dir}/outside/secret`, "x");
    await Deno.symlink(`${dir}/outside`, `${root}/db/link`);
    await Deno.symlink(`${dir}/outside/secret`, `${root}/db/filelink`);
    assert.deepEqual(await collect(store.list("")), ["db/ltx/0/a.ltx"]);
  });
});

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("file store: writes are atomic: a failed rename leaves the old state and no temp file", async () => {
  await withStore(async (store, dir) => {
    const root = `${dir}/replica`;
    // A non-empty directory where the file should go makes the final rename fail after the temp file exists.
    await store.put("k/v/inner", enc.encode("old"));
    await assert.rejects(store.put("k/v", enc.encode("new")));
    assert.deepEqual(await names(`${root}/k`), ["v"]);
    assert.deepEqual(await store.get("k/v/inner"), enc.encode("old"));
    await store.put("k/w", enc.encode("1"));
    await store.put("k/w", enc.encode("22"));
    assert.deepEqual(await store.get("k/w"), enc.encode("22"));
    assert.deepEqual(await names(`${root}/k`), ["v", "w"]);
  });
});

Deno.test({
  name: "file store: permission denied is a LocalIoError naming the path" +
    (Deno.uid() === 0 ? " (ignored: running as root, which bypasses directory permissions)" : ""),
  ignore: Deno.uid() === 0,
  fn: async () => {
    await withStore(async (store, dir) => {
      await store.put("k/v", enc.encode("old"));
      const root = `${dir}/replica`;
      await Deno.chmod(`${root}/k`, 0o500);
      try {
        await assert.rejects(store.put("k/v", enc.encode("new")), (e: Error) => {
          assert.ok(e instanceof LocalIoError);
          assert.match(e.message, /k\/v: permission denied/);
          return true;
        });
      } finally {
        await Deno.chmod(`${root}/k`, 0o755);
      }
      assert.deepEqual(await store.get("k/v"), enc.encode("old"));
      assert.deepEqual(await names(`${root}/k`), ["v"]);
    });
  },
});

Deno.test("file store: ifNoneMatch is exclusive, ifMatch compares the ETag", async () => {
  await withStore(async (store) => {
    const first = await store.put("lease", enc.encode("one"), { ifNoneMatch: "*" });
    await assert.rejects(store.put("lease", enc.encode("two"), { ifNoneMatch: "*" }), ConflictError);
    assert.deepEqual(await store.get("lease"), enc.encode("one"));
    await assert.rejects(store.put("lease", enc.encode("x"), { ifMatch: '"nope"' }), ConflictError);
    const second = await store.put("lease", enc.encode("three"), { ifMatch: first.etag });
    assert.notEqual(second.etag, first.etag);
    await assert.rejects(store.put("absent", enc.encode("x"), { ifMatch: first.etag }), NotFoundError);
    // Concurrent exclusive creates: exactly one wins.
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put("race/x", enc.encode(String(i)), { ifNoneMatch: "*" })),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.ok(results.every((r) => r.status === "fulfilled" || r.reason instanceof ConflictError));
  });
});

Deno.test("file store: delete removes files and ignores absent ones", async () => {
  await withStore(async (store) => {
    await store.put("a/1", enc.encode("1"));
    await store.put("a/2", enc.encode("2"));
    await store.delete(["a/1", "a/3"]);
    assert.deepEqual(await collect(store.list("")), ["a/2"]);
  });
});

Deno.test("file store: sweepStale removes old temp files and orphan sidecars under the prefix, nothing else", async () => {
  await withStore(async (store, dir) => {
    const root = `${dir}/replica`;
    const body = enc.encode("ltx bytes");
    await store.put("app/ltx/0/a.ltx", body, { metadata: { sha256: await sha256Hex(body) } });
    await store.put("app/ltx/0/b.ltx", body, { metadata: { sha256: await sha256Hex(body) } });
    await store.put("other/ltx/0/a.ltx", body);
    const old = new Date(Date.now() - 2 * 3_600_000);
    const leftovers = {
      tempOld: `${root}/app/ltx/0/.a.ltx.123-00ff00ff.tmp`, // killed writer, two hours ago
      litestreamTempOld: `${root}/app/ltx/9/x.ltx.tmp`,
      orphanSidecarOld: `${root}/app/ltx/0/.gone.ltx.sha256`, // its file was deleted, the sidecar not
    };
    const fresh = {
      tempFresh: `${root}/app/ltx/0/.b.ltx.456-11aa11aa.tmp`, // a write in progress
      orphanSidecarFresh: `${root}/app/ltx/0/.soon.ltx.sha256`,
      otherDbTempOld: `${root}/other/ltx/0/.a.ltx.9-0.tmp`, // another database's prefix
    };
    await Deno.mkdir(`${root}/app/ltx/9`, { recursive: true });
    for (const p of [...Object.values(leftovers), ...Object.values(fresh)]) {
      await Deno.writeTextFile(p, "x".repeat(100));
    }
    for (const p of [...Object.values(leftovers), fresh.otherDbTempOld]) await Deno.utime(p, old, old);
    // An old sidecar whose file exists is the file's digest, never a leftover.
    await Deno.utime(sidecarPath(`${root}/app/ltx/0/a.ltx`), old, old);
    // A temp file hard-linked to its object (killed between an exclusive put's link and unlink): removed,
    // but it frees nothing.
    const linked = `${root}/app/ltx/0/.b.ltx.789-22bb22bb.tmp`;
    await Deno.link(`${root}/app/ltx/0/b.ltx`, linked);
    await Deno.utime(linked, old, old);

    const r = await store.sweepStale("app/", new Date(Date.now() - 3_600_000));
    assert.deepEqual(r.removed.sort(), [...Object.values(leftovers), linked].sort());
    assert.equal(r.bytes, 300); // the three 100-byte leftovers; the hard link freed nothing
    for (const p of Object.values(fresh)) assert.ok((await Deno.lstat(p)).isFile, p);
    assert.deepEqual(await collect(store.list("")), [
      "app/ltx/0/a.ltx",
      "app/ltx/0/b.ltx",
      "other/ltx/0/a.ltx",
    ]);
    assert.deepEqual(await store.get("app/ltx/0/b.ltx"), body);
    assert.equal(recordedSha256(`${root}/app/ltx/0/a.ltx`), await sha256Hex(body));
    // The cut-off decides: a later one takes the fresh leftovers of this prefix too (never another prefix's).
    const later = await store.sweepStale("app/", new Date(Date.now() + 60_000));
    assert.deepEqual(later.removed.sort(), [fresh.orphanSidecarFresh, fresh.tempFresh].sort());
    assert.ok((await Deno.lstat(fresh.otherDbTempOld)).isFile);
    // A missing prefix is empty, not an error.
    assert.deepEqual(await store.sweepStale("none/", new Date()), { removed: [], bytes: 0 });
  });
});

Deno.test("file store: putFile links a file on the same file system, copies when it cannot, and records the digests given", async () => {
  await withStore(async (store, dir) => {
    const body = enc.encode("a large snapshot, in spirit");
    const src = `${dir}/queued.ltx`;
    await Deno.writeFile(src, body);
    const opts = { size: body.length, sha256: await sha256Hex(body), crc64: crc64(body) };
    const mtime = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
    // The directory does not exist yet: it is created. Same file system: a second name, nothing copied.
    await store.putFile("app/ltx/9/s.ltx", src, { ...opts, mtime });
    const path = store.localPath("app/ltx/9/s.ltx");
    assert.equal((await Deno.stat(path)).nlink, 2);
    assert.deepEqual(await store.get("app/ltx/9/s.ltx"), body);
    assert.equal((await Deno.stat(path)).mtime?.getTime(), mtime.getTime());
    assert.deepEqual(recordedDigests(path), { sha256: opts.sha256, crc64: opts.crc64 });
    // The name exists (a re-upload after a crash): the link fails, so the bytes are copied over it atomically.
    const next = enc.encode("the same key, new bytes");
    await Deno.writeFile(`${dir}/next.ltx`, next);
    await store.putFile("app/ltx/9/s.ltx", `${dir}/next.ltx`, {
      size: next.length,
      sha256: await sha256Hex(next),
      crc64: crc64(next),
    });
    assert.equal((await Deno.stat(path)).nlink, 1);
    assert.deepEqual(await store.get("app/ltx/9/s.ltx"), next); // its sidecar matches: get checks it
    assert.deepEqual(await Deno.readFile(src), body, "the first source is untouched");
    assert.deepEqual(await collect(store.list("")), ["app/ltx/9/s.ltx"]);
  });
});

Deno.test("file store: relative roots are resolved once against the working directory", () => {
  assert.equal(absolutePath("/a/b/../c/./d/"), "/a/c/d");
  assert.equal(absolutePath("x/y"), `${Deno.cwd()}/x/y`.replace(/\/+/g, "/"));
  assert.equal(new FileObjectStore("/").localPath("a/b"), "/a/b");
});

Deno.test("file store: a sha256 given on put is kept in a sidecar, reported by head, and checked by every read", async () => {
  await withStore(async (store) => {
    const body = enc.encode("the bytes of an LTX file");
    const key = "db/ltx/0/0000000000000001-0000000000000001.ltx";
    await store.put(key, body, { metadata: { sha256: await sha256Hex(body), other: "dropped" } });
    const path = store.localPath(key);
    assert.equal(sidecarPath(path), `${store.root}/db/ltx/0/.0000000000000001-0000000000000001.ltx.sha256`);
    assert.equal(recordedSha256(path), await sha256Hex(body));
    assert.deepEqual((await store.head(key))?.metadata, { sha256: await sha256Hex(body) });
    assert.deepEqual(await store.get(key), body);
    assert.deepEqual(new Uint8Array(await new Response(await store.getStream(key)).arrayBuffer()), body);
    // The listing shows the object only (Litestream's file client skips the sidecar's name too).
    assert.deepEqual(await collect(store.list("")), [key]);

    // One changed byte: every read refuses, naming the object; head still reports the recorded digest.
    const bad = body.slice();
    bad[3] ^= 0x01;
    await Deno.writeFile(path, bad);
    await assert.rejects(
      store.get(key),
      (e: unknown) => e instanceof CorruptionError && /sha256/.test(e.message) && e.message.includes(key),
    );
    await assert.rejects(
      new Response(await store.getStream(key)).arrayBuffer(),
      (e: unknown) => e instanceof CorruptionError && e.message.includes(key),
    );

    // An overwrite replaces the digest; a put without one leaves no stale sidecar behind.
    const next = enc.encode("another version");
    await store.put(key, next, { metadata: { sha256: await sha256Hex(next) } });
    assert.deepEqual(await store.get(key), next);
    await store.put(key, body);
    assert.equal(recordedSha256(path), undefined);
    assert.deepEqual(await store.get(key), body);

    // An unusable sidecar (empty, torn or zero-filled after a crash: it is written in place) reads as no
    // digest, never as a mismatch.
    const whole = JSON.stringify({ sha256: "0".repeat(64), crc64: "0".repeat(16) }) + "\n";
    for (
      const text of ["", whole.slice(0, 80), whole.slice(0, whole.length - 2), "\0".repeat(whole.length)]
    ) {
      await Deno.writeTextFile(sidecarPath(path), text);
      assert.equal(recordedSha256(path), undefined, JSON.stringify(text));
      assert.deepEqual(await store.get(key), body);
      assert.deepEqual((await store.head(key))?.metadata, {});
    }

    // Delete removes both.
    await store.put(key, body, { metadata: { sha256: await sha256Hex(body) } });
    await store.delete([key]);
    assert.equal(await Deno.stat(sidecarPath(path)).catch(() => null), null);
    assert.deepEqual(await collect(store.list("")), []);
  });
});

Deno.test("file store: a file replaced while it is being read is not reported as damaged", async () => {
  await withStore(async (store) => {
    const key = "db/ltx/0/0000000000000002-0000000000000002.ltx";
    const a = enc.encode("first version ".repeat(1000));
    const b = enc.encode("second version ".repeat(1000));
    await store.put(key, a, { metadata: { sha256: await sha256Hex(a) } });
    const stream = await store.getStream(key); // open on version a
    await store.put(key, b, { metadata: { sha256: await sha256Hex(b) } }); // replaced before a byte is read
    assert.deepEqual(new Uint8Array(await new Response(stream).arrayBuffer()), a);
    assert.deepEqual(await store.get(key), b);
  });
});

Deno.test("file store: linkFrom hard-links a durable source into place (one inode, the mtime given, the sidecar kept)", async () => {
  await withStore(async (store, dir) => {
    const body = enc.encode("queued L0 bytes");
    const src = `${dir}/queue-file.ltx`;
    await Deno.writeFile(src, body);
    const mtime = new Date(1_700_000_000_456);
    await store.put("app/ltx/0/a.ltx", body, {
      mtime,
      linkFrom: src,
      metadata: { sha256: await sha256Hex(body) },
    });
    const path = `${dir}/replica/app/ltx/0/a.ltx`;
    const [a, b] = [await Deno.stat(src), await Deno.stat(path)];
    assert.equal(b.ino, a.ino, "a link, not a copy");
    assert.equal(b.nlink, 2);
    assert.equal(b.mtime?.getTime(), mtime.getTime());
    assert.equal(recordedSha256(path), await sha256Hex(body));
    // The queue removes its name afterwards: the replica's stays, whole.
    await Deno.remove(src);
    assert.deepEqual(await store.get("app/ltx/0/a.ltx"), body);
  });
});

Deno.test("file store: linkFrom falls back to writing when the target exists, the source is gone, or the write is conditional", async () => {
  await withStore(async (store, dir) => {
    const src = `${dir}/queue-file.ltx`;
    const first = enc.encode("first");
    const second = enc.encode("second version");
    await store.put("app/ltx/0/a.ltx", first);
    await Deno.writeFile(src, second);
    // An existing target is replaced atomically by a written copy (never linked over, never left as it was).
    await store.put("app/ltx/0/a.ltx", second, { linkFrom: src });
    const path = `${dir}/replica/app/ltx/0/a.ltx`;
    assert.deepEqual(await Deno.readFile(path), second);
    assert.notEqual((await Deno.stat(path)).ino, (await Deno.stat(src)).ino);
    // A missing source: the bytes are written.
    await store.put("app/ltx/0/b.ltx", second, { linkFrom: `${dir}/gone.ltx` });
    assert.deepEqual(await store.get("app/ltx/0/b.ltx"), second);
    // A conditional create keeps its exclusive semantics (no link).
    await assert.rejects(
      store.put("app/ltx/0/b.ltx", second, { linkFrom: src, ifNoneMatch: "*" }),
      ConflictError,
    );
    await store.put("app/ltx/0/c.ltx", second, { linkFrom: src, ifNoneMatch: "*" });
    assert.notEqual((await Deno.stat(`${dir}/replica/app/ltx/0/c.ltx`)).ino, (await Deno.stat(src)).ino);
  });
});
