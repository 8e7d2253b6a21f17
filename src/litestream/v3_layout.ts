/**
 * The Litestream v0.3 replica layout, read through an {@link ObjectStore}:
 *
 * ```
 * <root>/generations/<generation: 16 lowercase hex>/
 *     snapshots/<index %08x>.snapshot.lz4           the raw database file, LZ4-framed
 *     wal/<index %08x>_<offset %08x>.wal.lz4         raw WAL bytes [offset, offset+n) of WAL index `index`
 * ```
 *
 * Names are parsed with Litestream v0.5's regexes (`v3.go`): generation `^[0-9a-f]{16}$`, snapshot
 * `^([0-9a-f]{8})\.snapshot\.lz4$`, segment `^([0-9a-f]{8})_([0-9a-f]{8,16})\.wal\.lz4$`, index ≤ 0x7fffffff.
 * Keys that do not have exactly this shape (other files, deeper paths, upper-case hex) are ignored, as
 * Litestream ignores them. `CreatedAt` is the object's last-modified time (file mtime, S3 LastModified).
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { ObjectStore } from "../storage/object_store.ts";

/** Largest WAL/snapshot index Litestream accepts (it parses the index as a signed 32-bit number). */
export const MAX_V3_INDEX = 0x7fffffff;

const GENERATION_RE = /^[0-9a-f]{16}$/;
const SNAPSHOT_RE = /^([0-9a-f]{8})\.snapshot\.lz4$/;
const SEGMENT_RE = /^([0-9a-f]{8})_([0-9a-f]{8,16})\.wal\.lz4$/;

/** One v0.3 snapshot object. */
export interface V3Snapshot {
  /** Generation id (16 hex). */
  generation: string;
  /** WAL index the snapshot was taken at. */
  index: number;
  /** Compressed object size in bytes. */
  size: number;
  /** Last-modified time of the object. */
  createdAt: Date;
  /** Full key in the store. */
  key: string;
}

/** One v0.3 WAL segment object. */
export interface V3WalSegment {
  /** Generation id (16 hex). */
  generation: string;
  /** WAL index. */
  index: number;
  /** Uncompressed byte offset of this segment inside its WAL index. */
  offset: number;
  /** Compressed object size in bytes. */
  size: number;
  /** Last-modified time of the object. */
  createdAt: Date;
  /** Full key in the store. */
  key: string;
}

/** One generation with its snapshots (by index) and WAL segments (by index, then offset). */
export interface V3Generation {
  /** Generation id (16 hex). */
  id: string;
  /** Snapshots, sorted by index. */
  snapshots: V3Snapshot[];
  /** WAL segments, sorted by (index, offset). */
  segments: V3WalSegment[];
}

/** Whether `name` is a v0.3 generation id: exactly 16 lowercase hex digits. */
export function isV3GenerationId(name: string): boolean {
  return GENERATION_RE.test(name);
}

/** Parses `<index %08x>.snapshot.lz4`; null if the name does not match. */
export function parseV3SnapshotName(name: string): number | null {
  const m = SNAPSHOT_RE.exec(name);
  if (!m) return null;
  const index = parseInt(m[1], 16);
  return index <= MAX_V3_INDEX ? index : null;
}

/** Parses `<index %08x>_<offset %08x..%016x>.wal.lz4`; null if the name does not match. */
export function parseV3SegmentName(name: string): { index: number; offset: number } | null {
  const m = SEGMENT_RE.exec(name);
  if (!m) return null;
  const index = parseInt(m[1], 16);
  const offset = Number(BigInt("0x" + m[2]));
  // Go parses the offset as int64; past 2^53 a JS number would round, so such a name is not ours to read.
  if (index > MAX_V3_INDEX || !Number.isSafeInteger(offset)) return null;
  return { index, offset };
}

/** `<index %08x>.snapshot.lz4`. */
export function formatV3SnapshotName(index: number): string {
  return `${index.toString(16).padStart(8, "0")}.snapshot.lz4`;
}

/** `<index %08x>_<offset %08x>.wal.lz4`. */
export function formatV3SegmentName(index: number, offset: number): string {
  return `${index.toString(16).padStart(8, "0")}_${offset.toString(16).padStart(8, "0")}.wal.lz4`;
}

/**
 * Normalises a replica root prefix: no leading/trailing slashes, no empty, `.` or `..` components, no
 * backslashes or control characters. `""` is the store root. Throws {@link UsageError} otherwise.
 */
export function normalizeV3Root(root: string): string {
  const trimmed = root.replace(/^\/+|\/+$/g, "");
  if (trimmed === "") return "";
  // deno-lint-ignore no-control-regex
  if (/[\\\u0000-\u001f]/.test(trimmed)) throw new UsageError(`invalid replica path '${root}'`);
  for (const part of trimmed.split("/")) {
    if (part === "" || part === "." || part === "..") throw new UsageError(`invalid replica path '${root}'`);
  }
  return trimmed;
}

/** The key prefix of the `generations/` directory under `root` (ends with `/`). */
export function v3GenerationsPrefix(root: string): string {
  const r = normalizeV3Root(root);
  return r === "" ? "generations/" : `${r}/generations/`;
}

/** Key of a snapshot object. */
export function v3SnapshotKey(root: string, generation: string, index: number): string {
  return `${v3GenerationsPrefix(root)}${generation}/snapshots/${formatV3SnapshotName(index)}`;
}

/** Key of a WAL segment object. */
export function v3SegmentKey(root: string, generation: string, index: number, offset: number): string {
  return `${v3GenerationsPrefix(root)}${generation}/wal/${formatV3SegmentName(index, offset)}`;
}

/** Classifies one listed key below `generations/`; null when it is not a v0.3 snapshot or segment. */
export function classifyV3Key(
  prefix: string,
  key: string,
): { kind: "snapshot"; generation: string; index: number } | {
  kind: "segment";
  generation: string;
  index: number;
  offset: number;
} | null {
  if (!key.startsWith(prefix)) return null;
  const parts = key.slice(prefix.length).split("/");
  if (parts.length !== 3 || !GENERATION_RE.test(parts[0])) return null;
  if (parts[1] === "snapshots") {
    const index = parseV3SnapshotName(parts[2]);
    return index === null ? null : { kind: "snapshot", generation: parts[0], index };
  }
  if (parts[1] === "wal") {
    const s = parseV3SegmentName(parts[2]);
    return s === null ? null : { kind: "segment", generation: parts[0], ...s };
  }
  return null;
}

/**
 * Lists every generation under `<root>/generations/` with its snapshots and WAL segments, in one listing.
 * Generations are sorted by id; a generation with no valid object is not returned.
 */
export async function listV3Generations(store: ObjectStore, root: string): Promise<V3Generation[]> {
  const prefix = v3GenerationsPrefix(root);
  const gens = new Map<string, V3Generation>();
  const gen = (id: string) => {
    let g = gens.get(id);
    if (!g) gens.set(id, g = { id, snapshots: [], segments: [] });
    return g;
  };
  for await (const obj of store.list(prefix)) {
    const c = classifyV3Key(prefix, obj.key);
    if (!c) continue;
    if (c.kind === "snapshot") {
      gen(c.generation).snapshots.push({
        generation: c.generation,
        index: c.index,
        size: obj.size,
        createdAt: obj.lastModified,
        key: obj.key,
      });
    } else {
      gen(c.generation).segments.push({
        generation: c.generation,
        index: c.index,
        offset: c.offset,
        size: obj.size,
        createdAt: obj.lastModified,
        key: obj.key,
      });
    }
  }
  const out = [...gens.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const g of out) {
    g.snapshots.sort((a, b) => a.index - b.index);
    g.segments.sort((a, b) => a.index - b.index || a.offset - b.offset);
  }
  return out;
}

/** Whether `<root>/generations/` holds at least one valid v0.3 object (stops listing at the first). */
export async function hasV3Data(store: ObjectStore, root: string): Promise<boolean> {
  const prefix = v3GenerationsPrefix(root);
  for await (const obj of store.list(prefix)) {
    if (classifyV3Key(prefix, obj.key)) return true;
  }
  return false;
}
