/**
 * The read replica's own progress record, `<replica>-walrust-replica.json` beside the replica, written
 * atomically (temp, fsync, rename, directory fsync) from inside each apply, just before the commit point.
 *
 * It holds the TXID the replica is at and the replica file's identity at that TXID (inode + SQLite change
 * counter), plus the previous TXID/counter: if the process dies after the state was written but before the
 * journal was removed, SQLite rolls the replica back to the previous counter, and the record still says
 * exactly which TXID that is. Any other mismatch (the file was replaced, edited, or restored by hand) makes
 * the follower rebuild the replica from the backup instead of guessing.
 *
 * @module
 */

import { messageOf } from "../errors.ts";
import { writeFileAtomic } from "../util/fs.ts";

/** Identity of one LTX file in the replica, as listed (to notice a file rewritten by a new history). */
export interface FileIdent {
  /** Level. */
  level: number;
  /** First TXID. */
  minTXID: number;
  /** Last TXID. */
  maxTXID: number;
  /** Size in bytes. */
  size: number;
  /** Listed creation time (file mtime / S3 LastModified), ms since the epoch. */
  createdAt: number;
}

/** A TXID and the replica's change counter at that TXID. */
export interface TxidMark {
  /** TXID. */
  txid: number;
  /** SQLite file change counter of the replica at that TXID. */
  changeCounter: number;
}

/** The progress record. */
export interface ReplicaState {
  /** Format version (1). */
  version: 1;
  /** The database being followed: `<replica root url>/<name>` (no credentials). */
  source: string;
  /** TXID the replica is at. */
  txid: number;
  /** Page size. */
  pageSize: number;
  /** The replica's change counter at `txid`. */
  changeCounter: number;
  /** The replica file's inode at `txid` (null when unknown). */
  ino: number | null;
  /** The TXID and counter before the last apply (what a rolled-back last apply leaves). */
  prev: TxidMark | null;
  /** Where the current history started: the snapshot we bootstrapped from, and when. */
  lineage: { snapshot: FileIdent | null; bootstrapTxid: number; bootstrappedAt: number };
  /** The last file applied (or the last file of the bootstrap plan). */
  lastFile: FileIdent | null;
  /** How many times this replica was (re)built from a restore. */
  bootstraps: number;
  /** How many LTX files were applied in place since the first bootstrap. */
  applied: number;
  /** When this record was written, ms since the epoch. */
  updatedAt: number;
}

/** The state file of a replica path. */
export function statePathFor(replicaPath: string): string {
  return `${replicaPath}-walrust-replica.json`;
}

/** The lock file of a replica path (flock, one follower per replica). */
export function lockPathFor(replicaPath: string): string {
  return `${replicaPath}-walrust-replica.lock`;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function parseIdent(v: unknown): FileIdent | null | undefined {
  if (v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof v !== "object" || !o) return undefined;
  if (![o.level, o.minTXID, o.maxTXID, o.size, o.createdAt].every(isInt)) return undefined;
  return {
    level: o.level as number,
    minTXID: o.minTXID as number,
    maxTXID: o.maxTXID as number,
    size: o.size as number,
    createdAt: o.createdAt as number,
  };
}

/** Parses and validates a state record; the reason it is unusable otherwise. */
export function parseState(text: string): { ok: true; state: ReplicaState } | { ok: false; problem: string } {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `not JSON: ${messageOf(err)}` };
  }
  if (typeof o !== "object" || o === null || o.version !== 1) {
    return { ok: false, problem: "unknown version" };
  }
  const lineage = o.lineage as Record<string, unknown> | undefined;
  const prev = o.prev as Record<string, unknown> | null | undefined;
  const snapshot = parseIdent(lineage?.snapshot ?? null);
  const lastFile = parseIdent(o.lastFile ?? null);
  const ok = typeof o.source === "string" && isInt(o.txid) && isInt(o.pageSize) && isInt(o.changeCounter) &&
    (o.ino === null || isInt(o.ino)) && isInt(o.bootstraps) && isInt(o.applied) && isInt(o.updatedAt) &&
    (prev === null || (typeof prev === "object" && isInt(prev?.txid) && isInt(prev?.changeCounter))) &&
    typeof lineage === "object" && lineage !== null && isInt(lineage.bootstrapTxid) &&
    isInt(lineage.bootstrappedAt) && snapshot !== undefined && lastFile !== undefined;
  if (!ok) return { ok: false, problem: "missing or invalid fields" };
  return {
    ok: true,
    state: {
      version: 1,
      source: o.source as string,
      txid: o.txid as number,
      pageSize: o.pageSize as number,
      changeCounter: o.changeCounter as number,
      ino: o.ino as number | null,
      prev: prev ? { txid: prev.txid as number, changeCounter: prev.changeCounter as number } : null,
      lineage: {
        snapshot,
        bootstrapTxid: lineage.bootstrapTxid as number,
        bootstrappedAt: lineage.bootstrappedAt as number,
      },
      lastFile,
      bootstraps: o.bootstraps as number,
      applied: o.applied as number,
      updatedAt: o.updatedAt as number,
    },
  };
}

/**
 * Reads the state of `replicaPath`: the record, `missing`, or `invalid` with the reason (a damaged record is
 * not an error: the follower rebuilds the replica).
 */
export async function readState(
  replicaPath: string,
): Promise<{ kind: "ok"; state: ReplicaState } | { kind: "missing" } | { kind: "invalid"; problem: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(statePathFor(replicaPath));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { kind: "missing" };
    return { kind: "invalid", problem: messageOf(err) };
  }
  const r = parseState(text);
  return r.ok ? { kind: "ok", state: r.state } : { kind: "invalid", problem: r.problem };
}

/** Writes the state of `replicaPath` atomically and durably. */
export async function writeState(replicaPath: string, state: ReplicaState): Promise<void> {
  await writeFileAtomic(
    statePathFor(replicaPath),
    new TextEncoder().encode(JSON.stringify(state, null, 2) + "\n"),
  );
}
