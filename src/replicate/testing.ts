/**
 * Test support for replication tests (unit and end to end): checks of a replica's TXID chain and files, a
 * `watch` child process with its log captured, and polling. Not used by the product.
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { verifyLtx } from "../ltx/decoder.ts";
import { restoreDatabase } from "../restore/restore.ts";
import type { LtxFileInfo, ReplicaClient } from "../storage/replica_client.ts";
import { spawnProcess } from "../../tests/support/cli.ts";
import { databaseDigest, integrityCheck } from "../../tests/support/sqlite_state.ts";

/**
 * What is wrong with a replica's TXID chain (empty when nothing): every L0 file covers one TXID, the L0 TXIDs
 * are exactly 1…max (no gap, no duplicate), and every L9 snapshot is `1-T` with T ≤ max.
 */
export function chainProblems(files: readonly LtxFileInfo[]): string[] {
  const problems: string[] = [];
  const l0 = files.filter((f) => f.level === 0).sort((a, b) => a.minTXID - b.minTXID);
  let expected = 1;
  for (const f of l0) {
    if (f.minTXID !== f.maxTXID) problems.push(`L0 file ${f.key} covers more than one TXID`);
    if (f.minTXID < expected) problems.push(`L0 TXID ${f.minTXID} is duplicated (${f.key})`);
    else if (f.minTXID > expected) problems.push(`L0 TXIDs ${expected}…${f.minTXID - 1} are missing`);
    expected = Math.max(expected, f.maxTXID + 1);
  }
  const max = expected - 1;
  for (const f of files.filter((x) => x.level === 9)) {
    if (f.minTXID !== 1) problems.push(`snapshot ${f.key} does not start at TXID 1`);
    if (f.maxTXID > max) problems.push(`snapshot ${f.key} is beyond the newest L0 TXID ${max}`);
  }
  return problems;
}

/** Verifies (decodes, checks the file checksum of) every LTX file of the replica; returns how many. */
export async function verifyReplicaFiles(client: ReplicaClient): Promise<number> {
  const files = await client.allLtxFiles();
  for (const f of files) {
    const { header } = await verifyLtx(await client.readLtxFile(f.level, f.minTXID, f.maxTXID), f.key);
    if (header.minTXID !== f.minTXID || header.maxTXID !== f.maxTXID) {
      throw new Error(`${f.key}: header TXIDs ${header.minTXID}-${header.maxTXID} do not match the name`);
    }
  }
  return files.length;
}

/** Polls `cond` every 50 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A `walrust watch` child process. */
export interface WatchProcess {
  /** The child. */
  child: Deno.ChildProcess;
  /** Everything it wrote to stderr so far (its log). */
  log(): string;
  /** Sends SIGTERM and waits; returns the exit code. */
  stop(): Promise<number>;
  /** Sends SIGKILL and waits. */
  kill9(): Promise<void>;
  /** Resolves with the exit code when it exits by itself. */
  exited: Promise<number>;
}

/** Starts `walrust <args>` (e.g. `watch a.db -b dir`) as a child process with the product's permissions. */
export function spawnWalrust(args: string[], env?: Record<string, string>): WatchProcess {
  const child = spawnProcess(args, { env });
  let text = "";
  const dec = new TextDecoder();
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += dec.decode(c, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]).catch(() => {});
  const exited = child.status.then(async (s) => {
    await drained;
    return s.code;
  });
  const signal = async (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch { /* already exited */ }
    return await exited;
  };
  return {
    child,
    log: () => text,
    stop: () => signal("SIGTERM"),
    kill9: async () => void (await signal("SIGKILL")),
    exited,
  };
}

/** A committed state of the test writer (`tests/support/writer.ts` log line). */
export interface CommittedState {
  /** `writer_meta.seq` after the commit. */
  seq: number;
  /** Digest of the whole database after the commit. */
  digest: string | null;
}

/** What {@link checkReplica} found. */
export interface ReplicaCheck {
  /** Newest TXID of the replica. */
  txid: number;
  /** `writer_meta.seq` of the latest restore. */
  seq: number;
  /** Files in the replica. */
  files: number;
  /** TXIDs restored and compared with the writer's log. */
  checked: number[];
}

function seqOf(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return Number((db.prepare("SELECT seq FROM writer_meta WHERE id = 1").get() as { seq: number }).seq);
  } finally {
    db.close();
  }
}

/**
 * Checks a replica written while the test writer ran: the TXID chain is contiguous, every file verifies, and
 * the latest restore plus up to `samples` restores at earlier L0 TXIDs are each exactly a state the writer
 * committed (same digest as its log line for that `writer_meta.seq`), with `PRAGMA integrity_check` ok.
 * Throws a descriptive Error on the first problem. `workDir` receives (and loses) the restored files.
 */
export async function checkReplica(
  client: ReplicaClient,
  records: readonly CommittedState[],
  workDir: string,
  samples = 4,
): Promise<ReplicaCheck> {
  const files = await client.allLtxFiles();
  const problems = chainProblems(files);
  if (problems.length) throw new Error(`replica chain: ${problems.join("; ")}`);
  const n = await verifyReplicaFiles(client);
  const byseq = new Map(records.map((r) => [r.seq, r.digest]));
  const max = files.reduce((m, f) => Math.max(m, f.maxTXID), 0);
  const l0 = files.filter((f) => f.level === 0).map((f) => f.maxTXID);
  const picks = new Set<number | undefined>([undefined]);
  for (let i = 1; i <= samples && l0.length; i++) picks.add(l0[Math.floor((i * (l0.length - 1)) / samples)]);
  let latestSeq = -1;
  const checked: number[] = [];
  for (const txid of picks) {
    const out = `${workDir}/check-${crypto.randomUUID()}.db`;
    try {
      const r = await restoreDatabase(client, { output: out, txid, integrityCheck: false });
      const what = `restore at TXID ${r.txid}`;
      const ic = integrityCheck(out);
      if (ic !== "ok") throw new Error(`${what}: integrity_check says ${ic}`);
      const seq = seqOf(out);
      const expected = byseq.get(seq);
      if (expected === undefined) throw new Error(`${what}: writer_meta.seq ${seq} is not a logged commit`);
      const got = databaseDigest(out);
      if (expected !== null && got !== expected) {
        throw new Error(`${what}: content differs from the writer's committed state ${seq}`);
      }
      if (txid === undefined) latestSeq = seq;
      checked.push(r.txid);
    } finally {
      await Deno.remove(out).catch(() => {});
    }
  }
  return { txid: max, seq: latestSeq, files: n, checked };
}
