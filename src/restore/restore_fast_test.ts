/**
 * The single-snapshot fast path of `restore.ts` (`decodeSnapshotFast`), local reads of directory replicas
 * (`localDownload`) and the output sink: byte-identical results against the full decoder, every flipped byte
 * rejected with the full decoder's own error, legacy pages and checksummed snapshots, abort mid-file.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CorruptionError, InterruptedError } from "../errors.ts";
import { databaseChecksum } from "../ltx/checksum.ts";
import { decodeDatabaseTo, LtxDecoder, verifyLtx } from "../ltx/decoder.ts";
import { type ByteSink, LtxEncoder } from "../ltx/encoder.ts";
import { lockPgno, type LtxHeader } from "../ltx/types.ts";
import { configureLogging, type Logger } from "../observe/log.ts";
import { FileObjectStore, sidecarPath } from "../storage/file.ts";
import { MemoryObjectStore } from "../storage/memory.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { restoreDatabase } from "./restore.ts";
import { buildHistory, type DbHistory, ltxFor, putLtx } from "./testing.ts";

configureLogging({ level: "warn" });

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-restore-fast-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A ~5 MB database in one TXID: larger than the 2 MiB local reads, so frames straddle read chunks, and
 * partly incompressible (random blobs) so compressed sizes vary.
 */
function bigHistory(dir: string): DbHistory {
  return buildHistory(dir, [(db) => {
    db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)");
    const ins = db.prepare("INSERT INTO t(v, b) VALUES (?, ?)");
    db.exec("BEGIN");
    for (let i = 0; i < 6000; i++) {
      ins.run(`row-${i}-${"x".repeat(i % 300)}`, crypto.getRandomValues(new Uint8Array(200 + (i % 700))));
    }
    db.exec("COMMIT");
  }]);
}

/** What the full decoder makes of an LTX snapshot: the database bytes. */
async function fullDecode(ltx: Uint8Array): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const sink: ByteSink = {
    write(c) {
      parts.push(c.slice());
      return Promise.resolve();
    },
  };
  await decodeDatabaseTo(new LtxDecoder(ltx, "x"), sink);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A logger recording messages, to tell which decode path a restore took. */
function recordingLogger(): Logger & { lines: string[]; declined(): boolean } {
  const lines: string[] = [];
  const logger: Logger & { lines: string[]; declined(): boolean } = {
    lines,
    declined: () => lines.some((l) => l.includes("fast snapshot decode declined")),
    debug: (m) => void lines.push(m),
    info: (m) => void lines.push(m),
    warn: (m) => void lines.push(m),
    error: (m) => void lines.push(m),
    child: () => logger,
  };
  return logger;
}

async function dirEntries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("restore fast path: a directory replica's snapshot restores byte for byte, as the full decoder", async () => {
  await withDir(async (dir) => {
    const h = bigHistory(dir);
    assert.ok(h.states[1].length > 4 << 20, "the database spans several local reads");
    const client = new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app");
    await putLtx(client, h, 9, 1, 1);
    let progress = 0;
    const logger = recordingLogger();
    const r = await restoreDatabase(client, {
      output: `${dir}/out/app.db`,
      onProgress: (done) => (progress = done),
      logger,
    });
    assert.ok(logger.lines.includes("restored"), "the restore logged its end");
    assert.equal(logger.declined(), false, "the fast path decoded the snapshot");
    const restored = await Deno.readFile(`${dir}/out/app.db`);
    assert.deepEqual(restored, h.states[1]);
    assert.deepEqual(restored, await fullDecode(await ltxFor(h, 1, 1)));
    assert.equal(r.pages, h.states[1].length / h.pageSize);
    assert.equal(r.bytes, h.states[1].length);
    assert.equal(r.bytesRead, r.plan[0].size);
    assert.equal(progress, r.plan[0].size);
    assert.equal(r.integrityChecked, true);
    assert.deepEqual(await dirEntries(`${dir}/out`), ["app.db"]);
  });
});

Deno.test("restore fast path: streamed stores, legacy frame pages and checksummed snapshots restore exactly", async () => {
  await withDir(async (dir) => {
    const h = bigHistory(dir);
    // A stream of odd-sized chunks (every frame header and block can straddle), then legacy pages.
    for (const pageEncoding of ["block", "frame"] as const) {
      const store = new MemoryObjectStore("s3");
      const client = new ReplicaClient(store, "app");
      await putLtx(client, h, 9, 1, 1, { pageEncoding });
      const original = store.getStream.bind(store);
      store.getStream = async (key: string) => {
        const body = new Uint8Array(await new Response(await original(key)).arrayBuffer());
        let off = 0;
        let step = 1;
        return new ReadableStream<Uint8Array>({
          pull(c) {
            if (off >= body.length) return c.close();
            step = (step * 7919) % 9973 + 1;
            c.enqueue(body.slice(off, off + step));
            off += step;
          },
        });
      };
      const logger = recordingLogger();
      await restoreDatabase(client, { output: `${dir}/${pageEncoding}.db`, integrityCheck: false, logger });
      assert.deepEqual(await Deno.readFile(`${dir}/${pageEncoding}.db`), h.states[1], pageEncoding);
      // Legacy frame pages are left to the full decoder; block pages stay on the fast path.
      assert.equal(logger.declined(), pageEncoding === "frame", pageEncoding);
    }

    // A snapshot carrying database checksums (flags 0, post-apply checksum in the trailer).
    const ps = h.pageSize;
    const db = h.states[1];
    const commit = db.length / ps;
    const pages: [number, Uint8Array][] = [];
    for (let p = 1; p <= commit; p++) {
      if (p !== lockPgno(ps)) pages.push([p, db.subarray((p - 1) * ps, p * ps)]);
    }
    const header: LtxHeader = {
      flags: 0,
      pageSize: ps,
      commit,
      minTXID: 1,
      maxTXID: 1,
      timestamp: h.times[1],
      preApplyChecksum: 0n,
      walOffset: 0,
      walSize: 0,
      walSalt1: 0,
      walSalt2: 0,
      nodeID: 0n,
    };
    /** The snapshot with `postApply` in its trailer (the file checksum always matches). */
    const encode = async (postApply: bigint): Promise<Uint8Array> => {
      const chunks: Uint8Array[] = [];
      const enc = new LtxEncoder({
        write(c) {
          chunks.push(c.slice());
          return Promise.resolve();
        },
      }, header);
      for (const [p, d] of pages) await enc.encodePage(p, d);
      await enc.finish(postApply);
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      chunks.reduce((o, c) => (out.set(c, o), o + c.length), 0);
      return out;
    };
    const sum = databaseChecksum(pages, ps);
    const ltx = await encode(sum);
    await verifyLtx(ltx, "checksummed"); // the fixture itself is valid
    const client = new ReplicaClient(new FileObjectStore(`${dir}/sum-replica`), "app");
    await client.writeLtxFile(9, 1, 1, ltx, { timestamp: h.times[1] });
    const sumLogger = recordingLogger();
    await restoreDatabase(client, { output: `${dir}/sum.db`, integrityCheck: false, logger: sumLogger });
    assert.deepEqual(await Deno.readFile(`${dir}/sum.db`), db);
    assert.equal(sumLogger.declined(), false, "checksummed snapshots stay on the fast path");

    // A wrong post-apply checksum is caught (the fast path declines, the full decoder reports it).
    const bad = await encode(sum ^ 2n);
    const badClient = new ReplicaClient(new FileObjectStore(`${dir}/bad-replica`), "app");
    await badClient.writeLtxFile(9, 1, 1, bad, { timestamp: h.times[1] });
    const badLogger = recordingLogger();
    await assert.rejects(
      restoreDatabase(badClient, { output: `${dir}/bad.db`, integrityCheck: false, logger: badLogger }),
      (e: unknown) => e instanceof CorruptionError && /post-apply checksum/.test(e.message),
    );
    assert.ok(badLogger.declined(), "the fast path saw the wrong checksum and declined");
    assert.equal(await Deno.stat(`${dir}/bad.db`).catch(() => null), null);
  });
});

Deno.test("restore fast path: any flipped byte is rejected with the full decoder's error, nothing written", async () => {
  await withDir(async (dir) => {
    const h = buildHistory(dir, [(db) => {
      db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
      const ins = db.prepare("INSERT INTO t(b) VALUES (?)");
      for (let i = 0; i < 300; i++) ins.run(crypto.getRandomValues(new Uint8Array(100 + i)));
    }]);
    const ltx = await ltxFor(h, 1, 1);
    const root = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(root), "app");
    const info = await client.writeLtxFile(9, 1, 1, ltx, { timestamp: h.times[1] });
    const path = `${root}/${info.key}`;
    const outDir = `${dir}/out`;
    await Deno.mkdir(outDir);
    // This test pins the LTX checks (fast path = full decoder): without the digest sidecar, as in a replica
    // Litestream wrote. The digest's own check: restore_test.ts.
    await Deno.remove(sidecarPath(path));

    // The trailer's file checksum: the message is the full decoder's, naming the object.
    const trailerFlip = ltx.slice();
    trailerFlip[trailerFlip.length - 1] ^= 0x40;
    await Deno.writeFile(path, trailerFlip);
    await assert.rejects(
      restoreDatabase(client, { output: `${outDir}/out.db` }),
      (e: unknown) =>
        e instanceof CorruptionError && /file checksum mismatch/.test(e.message) &&
        e.message.includes(info.key),
    );

    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: ltx.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, x) => {
          const bytes = ltx.slice();
          bytes[at] ^= x;
          await Deno.writeFile(path, bytes);
          let fullError: unknown = null;
          try {
            await verifyLtx(bytes, info.key);
          } catch (err) {
            fullError = err;
          }
          const err = await restoreDatabase(client, { output: `${outDir}/out.db`, integrityCheck: false })
            .then(
              () => null,
              (e: unknown) => e,
            );
          // A flip the format cannot see (none known) would have to restore the same bytes as the full decoder.
          if (err === null) {
            assert.equal(fullError, null, `flip at ${at} accepted by restore but not by the full decoder`);
            assert.deepEqual(await Deno.readFile(`${outDir}/out.db`), await fullDecode(bytes));
            await Deno.remove(`${outDir}/out.db`);
            return;
          }
          assert.ok(err instanceof CorruptionError, `flip at ${at}: ${err}`);
          assert.deepEqual(await dirEntries(outDir), [], `flip at ${at} left files`);
        },
      ),
      { numRuns: 40 },
    );
  });
});

Deno.test("restore fast path: an abort while reading a local snapshot stops with InterruptedError and no files", async () => {
  await withDir(async (dir) => {
    const h = bigHistory(dir);
    const client = new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app");
    await putLtx(client, h, 9, 1, 1);
    const ac = new AbortController();
    await Deno.mkdir(`${dir}/out`);
    await assert.rejects(
      restoreDatabase(client, {
        output: `${dir}/out/app.db`,
        signal: ac.signal,
        onProgress: () => ac.abort(),
      }),
      (e: unknown) => e instanceof InterruptedError,
    );
    assert.deepEqual(await dirEntries(`${dir}/out`), []);
  });
});

Deno.test("restore parallel path: two threads restore a local snapshot exactly; a corrupt one fails as always", async () => {
  await withDir(async (dir) => {
    const h = bigHistory(dir);
    const client = new ReplicaClient(new FileObjectStore(`${dir}/replica`), "app");
    const info = await putLtx(client, h, 9, 1, 1);
    let progress = 0;
    const logger = recordingLogger();
    const r = await restoreDatabase(client, {
      output: `${dir}/out/app.db`,
      parallelMinBytes: 0,
      onProgress: (done) => (progress = done),
      logger,
    });
    assert.deepEqual(await Deno.readFile(`${dir}/out/app.db`), h.states[1]);
    assert.equal(progress, info.size);
    assert.equal(r.bytesRead, info.size);
    assert.ok(logger.lines.includes("restored"));
    assert.ok(!logger.lines.some((l) => l.includes("declined")), logger.lines.join("; "));

    // A flipped trailer byte: both fast paths decline, the full decoder reports it; nothing is left behind.
    // (Without the digest sidecar: its own check is pinned in restore_test.ts.)
    const path = `${dir}/replica/${info.key}`;
    await Deno.remove(sidecarPath(path));
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 1] ^= 0x40;
    await Deno.writeFile(path, bytes);
    const badLogger = recordingLogger();
    await assert.rejects(
      restoreDatabase(client, { output: `${dir}/out2/app.db`, parallelMinBytes: 0, logger: badLogger }),
      (e: unknown) => e instanceof CorruptionError && /file checksum mismatch/.test(e.message),
    );
    assert.ok(badLogger.lines.some((l) => l.includes("parallel snapshot decode declined")));
    assert.ok(badLogger.declined());
    assert.deepEqual(await dirEntries(`${dir}/out2`), []);
  });
});
