/**
 * Streaming k-way merge of LTX files (Go ltx `Compactor`, `../shared/reference/ltx-litestream.md` §1.10),
 * used by both level compaction and restore.
 *
 * Inputs are decoders in TXID order, each pair contiguous (`min ≤ prevMax+1 && max > prevMax`, overlap
 * allowed) with one page size. Pages are merged by ascending pgno; for each pgno the newest input (the last
 * one holding it) wins; pages beyond the final Commit are dropped. Every input is fully verified (index,
 * trailer, file checksum) as soon as its last page was read. Memory: one page per input plus the heap.
 *
 * @module
 */

import { CorruptionError, GapError } from "../errors.ts";
import { DatabaseWriter, type LtxDecoder } from "./decoder.ts";
import { type ByteSink, LtxEncoder, type LtxEncoderOptions } from "./encoder.ts";
import { HEADER_FLAG_NO_CHECKSUM, isSnapshot, lockPgno, type LtxHeader, type LtxTrailer } from "./types.ts";

interface Head {
  pgno: number;
  idx: number;
  data: Uint8Array;
}

/** Min-heap on (pgno ascending, input index descending): the newest version of the lowest page is on top. */
class HeadHeap {
  #a: Head[] = [];

  get size(): number {
    return this.#a.length;
  }

  peek(): Head | undefined {
    return this.#a[0];
  }

  static #less(x: Head, y: Head): boolean {
    return x.pgno < y.pgno || (x.pgno === y.pgno && x.idx > y.idx);
  }

  push(h: Head): void {
    const a = this.#a;
    a.push(h);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!HeadHeap.#less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }

  pop(): Head | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      while (true) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && HeadHeap.#less(a[l], a[m])) m = l;
        if (r < a.length && HeadHeap.#less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * A merge in progress: `open()` reads and checks every input header and fixes the output header, `next()`
 * yields merged pages, and after the last page `trailers` holds every input's verified trailer.
 */
export class LtxMerger {
  #inputs: LtxDecoder[];
  #flags: number;
  #heap = new HeadHeap();
  #header: LtxHeader | null = null;
  #headers: LtxHeader[] = [];
  #trailers: LtxTrailer[] = [];
  #expected = 1; // next pgno of a merged snapshot
  #lock = 0;
  #done = false;

  /** A merge of `inputs` (in TXID order) whose output header gets `flags` (default NoChecksum). */
  constructor(inputs: LtxDecoder[], flags: number = HEADER_FLAG_NO_CHECKSUM) {
    if (inputs.length === 0) throw new RangeError("LTX merge: no input files");
    this.#inputs = inputs;
    this.#flags = flags;
  }

  /** The input headers, after `open()`. */
  get inputHeaders(): readonly LtxHeader[] {
    return this.#headers;
  }

  /** Every input's verified trailer, once `next()` returned null. */
  get trailers(): readonly LtxTrailer[] {
    return this.#trailers;
  }

  /** Reads the input headers, checks page sizes and contiguity, and returns the output header. */
  async open(): Promise<LtxHeader> {
    if (this.#header) return this.#header;
    const hs: LtxHeader[] = [];
    for (const d of this.#inputs) hs.push(await d.readHeader());
    const first = hs[0];
    const last = hs[hs.length - 1];
    for (let i = 1; i < hs.length; i++) {
      const prev = hs[i - 1];
      const cur = hs[i];
      const name = this.#inputs[i].name;
      if (cur.pageSize !== first.pageSize) {
        throw new CorruptionError(
          `page size ${cur.pageSize} differs from ${first.pageSize} of ${this.#inputs[0].name}`,
          { object: name, offset: 8 },
        );
      }
      if (cur.minTXID > prev.maxTXID + 1) {
        throw new GapError(
          `TXIDs ${prev.maxTXID + 1}…${cur.minTXID - 1} are missing between ${
            this.#inputs[i - 1].name
          } and ${name}`,
          prev.maxTXID + 1,
          cur.minTXID - 1,
        );
      }
      if (cur.maxTXID <= prev.maxTXID) {
        throw new CorruptionError(
          `TXIDs ${cur.minTXID}…${cur.maxTXID} do not extend ${
            this.#inputs[i - 1].name
          } (max ${prev.maxTXID}); ` +
            "inputs must be in TXID order",
          { object: name, offset: 16 },
        );
      }
    }
    const noChecksum = (this.#flags & HEADER_FLAG_NO_CHECKSUM) !== 0;
    const header: LtxHeader = {
      flags: this.#flags,
      pageSize: first.pageSize,
      commit: last.commit,
      minTXID: first.minTXID,
      maxTXID: last.maxTXID,
      timestamp: last.timestamp,
      preApplyChecksum: noChecksum || isSnapshot(first) ? 0n : first.preApplyChecksum,
      walOffset: 0,
      walSize: 0,
      walSalt1: 0,
      walSalt2: 0,
      nodeID: 0n,
    };
    this.#headers = hs;
    this.#header = header;
    this.#lock = lockPgno(header.pageSize);
    for (let i = 0; i < this.#inputs.length; i++) await this.#advance(i);
    return header;
  }

  /** Reads input `i`'s next page onto the heap; verifies the input's tail when it has no more pages. */
  async #advance(i: number): Promise<void> {
    const d = this.#inputs[i];
    const page = await d.nextPage();
    if (page) {
      this.#heap.push({ pgno: page.pgno, idx: i, data: page.data });
    } else {
      const { trailer } = await d.finish();
      this.#trailers[i] = trailer;
    }
  }

  /** The next merged page (ascending pgno, newest version, ≤ commit), or null when every input is done. */
  async next(): Promise<{ pgno: number; data: Uint8Array } | null> {
    const header = this.#header ?? await this.open();
    while (this.#heap.size > 0) {
      const top = this.#heap.pop()!;
      // Older versions of the same page are consumed and discarded.
      while (this.#heap.size > 0 && this.#heap.peek()!.pgno === top.pgno) {
        const older = this.#heap.pop()!;
        await this.#advance(older.idx);
      }
      await this.#advance(top.idx);
      if (top.pgno > header.commit) continue;
      if (isSnapshot(header)) {
        if (top.pgno !== this.#expected) this.#missing(this.#expected);
        this.#expected = top.pgno + 1 === this.#lock ? top.pgno + 2 : top.pgno + 1;
      }
      return { pgno: top.pgno, data: top.data };
    }
    if (!this.#done) {
      this.#done = true;
      if (isSnapshot(header) && this.#expected <= header.commit) this.#missing(this.#expected);
    }
    return null;
  }

  #missing(pgno: number): never {
    const names = this.#inputs.map((d) => d.name).join(", ");
    throw new CorruptionError(
      `merged snapshot of ${names} has no page ${pgno} (commit ${this.#header!.commit}): the files do not ` +
        "form a complete database",
    );
  }

  /** The post-apply checksum of the output: 0 for NoChecksum, else the newest input's (after the merge). */
  postApplyChecksum(): bigint | undefined {
    if ((this.#flags & HEADER_FLAG_NO_CHECKSUM) !== 0) return 0n;
    const last = this.#trailers[this.#trailers.length - 1];
    // NoChecksum inputs carry 0: let the encoder compute it for a snapshot (or refuse an incremental).
    return last && last.postApplyChecksum !== 0n ? last.postApplyChecksum : undefined;
  }
}

/**
 * Merges `inputs` into one LTX file written to `sink` (flags default NoChecksum, as Litestream). Returns the
 * output header and trailer. Every input is verified; a gap between inputs is a {@link GapError}.
 */
export async function compactLtx(
  inputs: LtxDecoder[],
  sink: ByteSink,
  opts?: { flags?: number } & LtxEncoderOptions,
): Promise<{ header: LtxHeader; trailer: LtxTrailer }> {
  const merger = new LtxMerger(inputs, opts?.flags ?? HEADER_FLAG_NO_CHECKSUM);
  const header = await merger.open();
  const enc = new LtxEncoder(sink, header, opts);
  while (true) {
    const page = await merger.next();
    if (page === null) break;
    await enc.encodePage(page.pgno, page.data);
  }
  const trailer = await enc.finish(merger.postApplyChecksum());
  return { header, trailer };
}

/**
 * Restore path without re-encoding: merges `inputs` (which must start at TXID 1) and writes the database
 * (pages 1…commit, zero lock page) to `out` in ~1 MB chunks. Equivalent to `compactLtx` followed by
 * `decodeDatabaseTo`, at half the CPU. The last chunk is written only after every input verified.
 */
export async function compactToDatabase(inputs: LtxDecoder[], out: ByteSink): Promise<LtxHeader> {
  const merger = new LtxMerger(inputs);
  const header = await merger.open();
  if (!isSnapshot(header)) {
    throw new CorruptionError(
      `not a snapshot (min TXID ${header.minTXID}); a database can only be restored from files starting at TXID 1`,
      { object: inputs[0].name, offset: 16 },
    );
  }
  const w = new DatabaseWriter(out, header.pageSize, header.commit, inputs.map((d) => d.name).join(", "));
  while (true) {
    const page = await merger.next();
    if (page === null) break;
    await w.page(page.pgno, page.data);
  }
  await w.complete();
  await w.flush();
  return header;
}
