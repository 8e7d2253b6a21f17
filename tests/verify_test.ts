/**
 * End-to-end tests of `walrust verify`: ok, corruption, gap, stale, unreachable endpoint, --restore, --json.
 */
import assert from "node:assert/strict";
import { runInProcess } from "./support/cli.ts";
import { configureLogging } from "../src/observe/log.ts";
import { FileObjectStore } from "../src/storage/file.ts";
import { ReplicaClient } from "../src/storage/replica_client.ts";
import { flipByte, putL0Range, putLtx, sampleHistory } from "../src/restore/testing.ts";

configureLogging({ level: "error" });

/** A fresh replica (newest file a few seconds old): L9 1-4, L1 5-7, L0 5…10. */
async function withReplica(
  fn: (url: string, client: ReplicaClient, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "walrust-verify-e2e-" });
  try {
    const h = sampleHistory(dir, 10, { startMs: Date.now() - 15_000 });
    const url = `${dir}/replica`;
    const client = new ReplicaClient(new FileObjectStore(url), "app");
    await putLtx(client, h, 9, 1, 4);
    await putLtx(client, h, 1, 5, 7);
    await putL0Range(client, h, 5, 10);
    await fn(url, client, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("verify CLI: a sound replica exits 0, with --restore and --max-age", async () => {
  await withReplica(async (url) => {
    const r = await runInProcess(["verify", "app", "-b", url, "--restore", "--max-age", "1h"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^verify app in .*replica\/app$/m);
    assert.match(r.stdout, /LTX files\s+8\/8 decoded with valid checksums/);
    assert.match(r.stdout, /continuity\s+ok: TXIDs up to 10 restorable from every snapshot \(1\)/);
    assert.match(r.stdout, /restore\s+TXID 10 \(.*\), \d+ pages, integrity_check ok/);
    assert.match(r.stdout, /\nok\n$/);
    assert.equal(r.stderr, "");
  });
});

Deno.test("verify CLI: --json report for CI", async () => {
  await withReplica(async (url) => {
    const r = await runInProcess(["verify", "app", "-b", url, "--json", "--restore"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.ok, true);
    assert.equal(j.exitCode, 0);
    assert.equal(j.files, 8);
    assert.equal(j.newestTxid, 10);
    assert.equal(j.restore.txid, 10);
    assert.deepEqual(j.levels.map((l: { level: number }) => l.level), [0, 1, 9]);
    assert.deepEqual(j.problems, []);
  });
});

Deno.test("verify CLI: a flipped byte exits 7 naming the object", async () => {
  await withReplica(async (url, client) => {
    const key = client.ltxKey(0, 6, 6);
    await flipByte(`${url}/${key}`, 110);
    const r = await runInProcess(["verify", "app", "-b", url, "--json"]);
    assert.equal(r.code, 7, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.problems[0].kind, "corruption");
    assert.equal(j.problems[0].object, key);
    const t = await runInProcess(["verify", "app", "-b", url]);
    assert.equal(t.code, 7);
    assert.ok(t.stderr.includes(key), t.stderr);
    assert.match(t.stdout, /FAILED \(exit 7\)/);
  });
});

Deno.test("verify CLI: a gap exits 8 with the exact missing range", async () => {
  await withReplica(async (url, client) => {
    await client.deleteLtxFiles([{ level: 0, minTXID: 8, maxTXID: 8 }, { level: 0, minTXID: 9, maxTXID: 9 }]);
    const r = await runInProcess(["verify", "app", "-b", url]);
    assert.equal(r.code, 8, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /gap\s+TXIDs 8–9 missing from the backup chain \(after snapshot 1-4, up to TXID 10\)/,
    );
    assert.match(r.stdout, /level hole\s+L0: TXIDs 8–9 \(not covered\)/);
    assert.match(r.stderr, /TXIDs 8–9 missing/);
  });
});

Deno.test("verify CLI: --max-age exits 9 when the newest backup is older", async () => {
  await withReplica(async (url) => {
    const r = await runInProcess(["verify", "app", "-b", url, "--max-age", "2s"]);
    assert.equal(r.code, 9, r.stdout + r.stderr);
    assert.match(r.stdout, /stale\s+newest backup is .* old/);
    const bad = await runInProcess(["verify", "app", "-b", url, "--max-age", "soon"]);
    assert.equal(bad.code, 2);
  });
});

Deno.test("verify CLI: nothing found exits 10; an unreachable endpoint exits 5", async () => {
  await withReplica(async (url) => {
    const r = await runInProcess(["verify", "other", "-b", url]);
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /no backup of other/);
  });
  // A port nobody listens on.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const r = await runInProcess(
    ["verify", "app", "-b", "s3://walrust-test/x", "--endpoint", `http://127.0.0.1:${port}`, "--json"],
    { AWS_ACCESS_KEY_ID: "k", AWS_SECRET_ACCESS_KEY: "s3cr3t-value", AWS_REGION: "us-east-1" },
  );
  assert.equal(r.code, 5, r.stdout + r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.problems[0].kind, "unreachable");
  assert.ok(!r.stdout.includes("s3cr3t-value"));
});

Deno.test("verify CLI: a failure is delivered to the [[webhooks]] of walrust.toml (standalone run, e.g. CI)", async () => {
  await withReplica(async (url, client, dir) => {
    const received: { event: string; database: string }[] = [];
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      received.push(await req.json());
      return new Response("ok");
    });
    try {
      await flipByte(`${url}/${client.ltxKey(0, 6, 6)}`, 110);
      const config = `${dir}/walrust.toml`;
      await Deno.writeTextFile(
        config,
        `[[webhooks]]\nurl = "http://127.0.0.1:${server.addr.port}/hook"\nevents = ["verify_failed"]\n`,
      );
      const r = await runInProcess(["verify", "app", "-b", url, "--config", config]);
      assert.equal(r.code, 7, r.stdout + r.stderr);
      assert.equal(received.length, 1, JSON.stringify(received));
      assert.equal(received[0].event, "verify_failed");
      assert.equal(received[0].database, "app");
    } finally {
      await server.shutdown();
    }
  });
});
