/**
 * Streaming LTX v3 decoder. Reads the header, then one page at a time, then the page index and trailer,
 * enforcing every rule of the format (`../shared/reference/ltx-litestream.md` §1): header validation, page
 * order (a snapshot holds every page 1…commit except the lock page; otherwise strictly ascending), pgno ≤
 * commit, the lock page never stored, each page decompressing to exactly the page size, the index matching
 * the frames actually read, the trailer, the file checksum over the decompressed pages, and — for snapshots
 * that carry database checksums — the post-apply checksum.
 *
 * Both page encodings are read: flags 0x0001 (u32 size + raw LZ4 block) and flags 0x0000 (one LZ4 frame per
 * page, ltx ≤ v0.5.1). Block pages are decompressed by the strict LZ4 kernel of `lz4.ts` and hashed where it
 * wrote them (`Crc64.updateKernel`), so a page costs one decode, one CRC pass and one copy out; pages that
 * arrive whole in the current chunk are returned without an `await`. Memory stays at a few pages plus the
 * page index; no allocation is sized by an untrusted field beyond the LZ4 bound of the page size. Every
 * failure is a {@link CorruptionError} naming the file and the byte offset; errors thrown by the source
 * itself (network, disk) pass through unchanged.
 *
 * @module
 */

import { CorruptionError } from "../errors.ts";
import { Crc64, kernelBytes, pageChecksum } from "./checksum.ts";
import {
  decompressBlockInKernel,
  fixedFrameOutput,
  frameParser,
  lz4BlockBound,
  Lz4FormatError,
} from "./lz4.ts";
import {
  CHECKSUM_FLAG,
  formatChecksum,
  HEADER_FLAG_NO_CHECKSUM,
  HEADER_SIZE,
  isSnapshot,
  lockPgno,
  type LtxHeader,
  type LtxTrailer,
  PAGE_FLAG_MASK,
  PAGE_FLAG_SIZE,
  PAGE_HEADER_SIZE,
  type PageIndexEntry,
  parseHeaderBytes,
  readUvarint,
  TRAILER_SIZE,
  trailerProblem,
} from "./types.ts";
import type { ByteSink } from "./encoder.ts";

/** A decoded page and where its frame was in the file. */
export interface LtxPage {
  /** Page number. */
  pgno: number;
  /**
   * The decompressed page (exactly pageSize bytes; owned by the caller, never written again by the decoder).
   * Its `buffer` may be a 64 KiB slab shared with other decoded pages: use the view, do not transfer it.
   */
  data: Uint8Array;
  /** Absolute offset of the frame's page header. */
  offset: number;
  /** Whole frame length in bytes. */
  size: number;
  /** Page header flags: 0x1 = size + LZ4 block, 0x0 = LZ4 frame. */
  flags: number;
}

// Most bytes a single index entry can take: pgno (u32: 5), offset (≤ 2^53: 8), size (≤ 2^32: 5), with slack
// for non-canonical varints that Go would still accept.
const MAX_INDEX_ENTRY_BYTES = 30;
const MAX_INDEX_TAIL = 1 + 8 + TRAILER_SIZE;

/** Thrown internally when the source ends before a read is complete. */
class Truncated extends Error {
  constructor(readonly at: number) {
    super("truncated");
  }
}

/** Buffered exact reads over an async iterable of chunks (or one in-memory buffer). */
class ByteReader {
  #iter: AsyncIterator<Uint8Array> | null;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #eof = false;
  /** Absolute offset of the next unread byte. */
  offset = 0;

  constructor(source: AsyncIterable<Uint8Array> | Uint8Array) {
    if (source instanceof Uint8Array) {
      this.#chunk = source;
      this.#iter = null;
      this.#eof = true;
    } else {
      this.#iter = source[Symbol.asyncIterator]();
    }
  }

  /** Loads the next non-empty chunk; false at end of input. */
  async #fill(): Promise<boolean> {
    while (!this.#eof && this.#iter) {
      const r = await this.#iter.next();
      if (r.done) {
        this.#eof = true;
        break;
      }
      if (r.value.length > 0) {
        this.#chunk = r.value;
        this.#pos = 0;
        return true;
      }
    }
    return false;
  }

  /** The next `n` bytes without consuming them, when the current chunk holds them; else null. */
  peek(n: number): Uint8Array | null {
    return this.#chunk.length - this.#pos >= n ? this.#chunk.subarray(this.#pos, this.#pos + n) : null;
  }

  /** Consumes `n` bytes that {@link peek} showed are in the current chunk, returning them. */
  take(n: number): Uint8Array {
    const out = this.#chunk.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.offset += n;
    return out;
  }

  /**
   * Exactly `n` bytes (a view into the source chunk when possible; consume it before the next read), or
   * throws {@link Truncated} at the offset where the input ended.
   */
  async read(n: number): Promise<Uint8Array> {
    const avail = this.#chunk.length - this.#pos;
    if (avail >= n) {
      const out = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.#pos >= this.#chunk.length && !(await this.#fill())) {
        this.offset += got;
        throw new Truncated(this.offset);
      }
      const take = Math.min(n - got, this.#chunk.length - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + take), got);
      this.#pos += take;
      got += take;
    }
    this.offset += n;
    return out;
  }

  /** Everything up to end of input, or null when it would exceed `limit` bytes. */
  async readToEnd(limit: number): Promise<Uint8Array | null> {
    const parts: Uint8Array[] = [];
    let total = 0;
    while (true) {
      if (this.#pos < this.#chunk.length) {
        const part = this.#chunk.subarray(this.#pos);
        total += part.length;
        if (total > limit) return null;
        parts.push(part.slice());
        this.#pos = this.#chunk.length;
      }
      if (!(await this.#fill())) break;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    this.offset += total;
    return out;
  }

  /** Releases the underlying stream early (e.g. after an error). */
  async close(): Promise<void> {
    const it = this.#iter;
    this.#iter = null;
    this.#eof = true;
    try {
      await it?.return?.();
    } catch {
      // The stream is being abandoned; a failure to cancel it changes nothing for the caller.
    }
  }
}

type State = "header" | "pages" | "index" | "done";

const SLAB = 64 * 1024;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

/**
 * A new, caller-owned `size`-byte array for a decoded page, carved from 64 KiB slabs: one allocation per 16
 * pages of 4 KiB instead of one each (V8 allocates every typed array above 64 bytes outside its heap; one
 * allocation per page cost ~15 % of decode throughput). Slabs are never reused; a page kept alive keeps at
 * most one slab alive.
 */
function pageBuffer(size: number): Uint8Array {
  if (size > SLAB) return new Uint8Array(size);
  if (slabUsed + size > slab.byteLength) {
    slab = new ArrayBuffer(SLAB);
    slabUsed = 0;
  }
  const page = new Uint8Array(slab, slabUsed, size);
  slabUsed += size;
  return page;
}

/**
 * Streaming LTX decoder: `readHeader()`, then `nextPage()` until null, then `finish()` (which verifies the
 * index, trailer and file checksum; a file is only valid once `finish()` resolved). `nextPage()` and
 * `finish()` read the header first when needed; `finish()` drains unread pages. After a failure every
 * call rethrows the same error.
 */
export class LtxDecoder {
  /** The file or object name used in error messages. */
  readonly name: string;
  #r: ByteReader;
  #state: State = "header";
  #failed: unknown = undefined;
  #header: LtxHeader | null = null;
  #crc = new Crc64();
  #lock = 0;
  #bound = 0;
  #snapshot = false;
  #checksums = false;
  #dbsum = CHECKSUM_FLAG;
  #prev = 0;
  #pgnos: number[] = [];
  #offsets: number[] = [];
  #sizes: number[] = [];
  #result: { trailer: LtxTrailer; index: PageIndexEntry[] } | null = null;
  #draining = false; // finish() is reading pages no caller sees: no need to copy them out

  /** Decodes `source` (chunks, e.g. a ReadableStream, or the whole file); `name` appears in errors. */
  constructor(source: AsyncIterable<Uint8Array> | Uint8Array, name: string) {
    this.#r = new ByteReader(source);
    this.name = name;
  }

  /** The header, once read. */
  get header(): LtxHeader | null {
    return this.#header;
  }

  /** Pages decoded so far. */
  get pagesRead(): number {
    return this.#pgnos.length;
  }

  #fail(message: string, offset: number, cause?: unknown): never {
    throw new CorruptionError(message, { object: this.name, offset, cause });
  }

  /** Runs `fn`, turning truncation into CorruptionError and poisoning the decoder on any failure. */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      return await fn();
    } catch (err) {
      throw this.#poison(err);
    }
  }

  /** Reads and validates the 100-byte header (idempotent). */
  readHeader(): Promise<LtxHeader> {
    if (this.#header) return Promise.resolve(this.#header);
    return this.#guard(async () => {
      const b = await this.#r.read(HEADER_SIZE);
      const parsed = parseHeaderBytes(b);
      if (!parsed.ok) this.#fail(parsed.problem, parsed.at);
      const h = parsed.header;
      this.#crc.update(b);
      this.#header = h;
      this.#lock = lockPgno(h.pageSize);
      this.#snapshot = isSnapshot(h);
      this.#checksums = (h.flags & HEADER_FLAG_NO_CHECKSUM) === 0;
      this.#bound = lz4BlockBound(h.pageSize);
      this.#state = "pages";
      return h;
    });
  }

  /** The next page, or null after the last one (the zero page header). */
  nextPage(): Promise<LtxPage | null> {
    if (this.#state === "pages" && this.#failed === undefined) {
      // Fast path: the whole frame is in the current chunk, so no await is needed (most pages).
      try {
        const page = this.#readBufferedPage();
        if (page !== undefined) return Promise.resolve(page);
      } catch (err) {
        return Promise.reject(this.#poison(err));
      }
    }
    return this.#nextPageSlow();
  }

  async #nextPageSlow(): Promise<LtxPage | null> {
    if (this.#state === "header") await this.readHeader();
    if (this.#state !== "pages") {
      if (this.#failed !== undefined) throw this.#failed;
      return null;
    }
    return await this.#guard(() => this.#readPage());
  }

  /** Records a failure: later calls rethrow it, and the source is released. */
  #poison(err: unknown): unknown {
    const e = err instanceof Truncated
      ? new CorruptionError("file is truncated", { object: this.name, offset: err.at })
      : err;
    this.#failed = e;
    void this.#r.close();
    return e;
  }

  /**
   * The next frame when it is a block frame (or the end marker) entirely inside the current chunk;
   * undefined (nothing consumed) otherwise, leaving the general path to read it.
   */
  #readBufferedPage(): LtxPage | null | undefined {
    const r = this.#r;
    const peek = r.peek(PAGE_HEADER_SIZE + 4);
    if (peek === null) return undefined;
    const pgno = ((peek[0] << 24) | (peek[1] << 16) | (peek[2] << 8) | peek[3]) >>> 0;
    const flags = (peek[4] << 8) | peek[5];
    const frameOffset = r.offset;
    if (pgno === 0 && flags === 0) {
      this.#endOfPages(r.take(PAGE_HEADER_SIZE), frameOffset);
      return null;
    }
    if (flags !== PAGE_FLAG_SIZE) return undefined;
    const csize = ((peek[6] << 24) | (peek[7] << 16) | (peek[8] << 8) | peek[9]) >>> 0;
    if (csize === 0 || csize > this.#bound || r.peek(PAGE_HEADER_SIZE + 4 + csize) === null) return undefined;
    this.#checkPage(pgno, flags, frameOffset);
    const frame = r.take(PAGE_HEADER_SIZE + 4 + csize);
    this.#crc.update(frame.subarray(0, PAGE_HEADER_SIZE + 4));
    const data = this.#decodeBlock(frame.subarray(PAGE_HEADER_SIZE + 4), frameOffset);
    return this.#addPage(pgno, flags, data, frameOffset);
  }

  /**
   * Decompresses a page's LZ4 block in the kernel and hashes it there (the file checksum covers the
   * decompressed page), then copies it out for the caller. While `finish()` drains pages nobody will see,
   * the page is a view into kernel memory instead (used synchronously, by `#addPage`, then dropped).
   */
  #decodeBlock(block: Uint8Array, frameOffset: number): Uint8Array {
    const size = this.#header!.pageSize;
    const at = decompressBlockInKernel(block, size, this.name, frameOffset + 10);
    this.#crc.updateKernel(at, size);
    if (this.#draining) return kernelBytes.subarray(at, at + size);
    const page = pageBuffer(size);
    page.set(kernelBytes.subarray(at, at + size));
    return page;
  }

  async #readPage(): Promise<LtxPage | null> {
    const r = this.#r;
    const frameOffset = r.offset;
    const ph = await r.read(PAGE_HEADER_SIZE);
    const pgno = ((ph[0] << 24) | (ph[1] << 16) | (ph[2] << 8) | ph[3]) >>> 0;
    const flags = (ph[4] << 8) | ph[5];
    if (pgno === 0 && flags === 0) {
      this.#endOfPages(ph, frameOffset);
      return null;
    }
    this.#checkPage(pgno, flags, frameOffset);
    this.#crc.update(ph);
    let data: Uint8Array;
    if ((flags & PAGE_FLAG_SIZE) !== 0) {
      const sb = await r.read(4);
      const csize = ((sb[0] << 24) | (sb[1] << 16) | (sb[2] << 8) | sb[3]) >>> 0;
      if (csize === 0 || csize > this.#bound) {
        this.#fail(`page ${pgno}: compressed size ${csize} is outside 1…${this.#bound}`, frameOffset + 6);
      }
      this.#crc.update(sb);
      data = this.#decodeBlock(await r.read(csize), frameOffset);
    } else {
      data = await this.#readFramePage(pgno, frameOffset);
      this.#crc.update(data);
    }
    return this.#addPage(pgno, flags, data, frameOffset);
  }

  /** The zero page header: pages end here; a snapshot must have had every page. */
  #endOfPages(ph: Uint8Array, frameOffset: number): void {
    const h = this.#header!;
    this.#crc.update(ph);
    if (this.#snapshot) {
      const expected = this.#nextSnapshotPgno();
      if (expected <= h.commit) {
        this.#fail(
          `snapshot ends before page ${expected} (commit ${h.commit}): pages are missing`,
          frameOffset,
        );
      }
    }
    this.#state = "index";
  }

  /** Page-header rules: pgno ≠ 0, known flags, pgno ≤ commit, not the lock page, order. */
  #checkPage(pgno: number, flags: number, frameOffset: number): void {
    const h = this.#header!;
    if (pgno === 0) this.#fail("page number 0 in a page header", frameOffset);
    if ((flags & ~PAGE_FLAG_MASK) !== 0) {
      this.#fail(`invalid page header flags 0x${flags.toString(16).padStart(4, "0")}`, frameOffset + 4);
    }
    if (pgno > h.commit) {
      this.#fail(`page ${pgno} is beyond the commit size of ${h.commit} pages`, frameOffset);
    }
    if (pgno === this.#lock) this.#fail(`page ${pgno} is the lock page and must not be stored`, frameOffset);
    if (this.#snapshot) {
      const expected = this.#nextSnapshotPgno();
      if (pgno !== expected) {
        this.#fail(`snapshot page out of order: got page ${pgno}, expected ${expected}`, frameOffset);
      }
    } else if (pgno <= this.#prev) {
      this.#fail(`pages out of order: page ${pgno} after page ${this.#prev}`, frameOffset);
    }
  }

  /** Records a decompressed page (already in the file checksum) and its frame in the index. */
  #addPage(pgno: number, flags: number, data: Uint8Array, frameOffset: number): LtxPage {
    if (this.#snapshot && this.#checksums) {
      this.#dbsum = CHECKSUM_FLAG | (this.#dbsum ^ pageChecksum(pgno, data));
    }
    const size = this.#r.offset - frameOffset;
    this.#prev = pgno;
    this.#pgnos.push(pgno);
    this.#offsets.push(frameOffset);
    this.#sizes.push(size);
    return { pgno, data, offset: frameOffset, size, flags };
  }

  /** Legacy encoding: one LZ4 frame that must expand to exactly one page; its bytes are not hashed. */
  async #readFramePage(pgno: number, frameOffset: number): Promise<Uint8Array> {
    const pageSize = this.#header!.pageSize;
    // A legitimate frame is one (possibly stored) block plus ≤ 27 bytes of framing; allow several blocks
    // but never an unbounded stream of empty ones.
    const maxFrameBytes = 2 * pageSize + 1024;
    const start = this.#r.offset;
    const out = fixedFrameOutput(pageSize);
    const gen = frameParser(out);
    try {
      let step = gen.next();
      while (!step.done) {
        const n = step.value;
        if (this.#r.offset - start + n > maxFrameBytes) {
          this.#fail(`page ${pgno}: LZ4 frame longer than ${maxFrameBytes} bytes`, this.#r.offset);
        }
        step = gen.next(await this.#r.read(n));
      }
    } catch (err) {
      if (err instanceof Lz4FormatError) {
        this.#fail(`page ${pgno}: LZ4 frame: ${err.message}`, start + err.at, err);
      }
      throw err;
    }
    if (out.len !== pageSize) {
      this.#fail(
        `page ${pgno}: LZ4 frame decompresses to ${out.len} bytes, expected ${pageSize}`,
        frameOffset,
      );
    }
    return out.buf;
  }

  #nextSnapshotPgno(): number {
    const next = this.#prev + 1;
    return next === this.#lock ? next + 1 : next;
  }

  /**
   * Reads the rest of the file (draining unread pages) and verifies the page index, trailer and file
   * checksum. Returns the trailer and the index (the frames as read; the stored index is equal to it).
   */
  async finish(): Promise<{ trailer: LtxTrailer; index: PageIndexEntry[] }> {
    if (this.#result) return this.#result;
    this.#draining = true;
    try {
      while ((await this.nextPage()) !== null) { /* drain: every page is verified */ }
    } finally {
      this.#draining = false;
    }
    if (this.#state !== "index") {
      if (this.#failed !== undefined) throw this.#failed;
    }
    return await this.#guard(() => this.#readTail());
  }

  async #readTail(): Promise<{ trailer: LtxTrailer; index: PageIndexEntry[] }> {
    const h = this.#header!;
    const start = this.#r.offset;
    const n = this.#pgnos.length;
    const limit = n * MAX_INDEX_ENTRY_BYTES + MAX_INDEX_TAIL;
    const rest = await this.#r.readToEnd(limit);
    if (rest === null) {
      this.#fail(`more than ${limit} bytes after the last page: index or trailer is corrupt`, start);
    }
    if (rest.length < MAX_INDEX_TAIL) {
      this.#fail(
        `file is truncated: ${rest.length} bytes after the pages, need at least ${MAX_INDEX_TAIL}`,
        start,
      );
    }
    const view = new DataView(rest.buffer, rest.byteOffset, rest.length);
    const sizeAt = rest.length - TRAILER_SIZE - 8;
    const indexSize = view.getBigUint64(sizeAt);
    if (indexSize !== BigInt(sizeAt)) {
      this.#fail(`page index size field says ${indexSize} bytes but the index has ${sizeAt}`, start + sizeAt);
    }
    // The stored index must describe exactly the frames that were read, in order, then a 0 terminator.
    let p = 0;
    const index: PageIndexEntry[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const at = p;
      const a = readUvarint(rest, p);
      const b = a && a.next <= sizeAt ? readUvarint(rest, a.next) : null;
      const c = b && b.next <= sizeAt ? readUvarint(rest, b.next) : null;
      if (!a || !b || !c || c.next > sizeAt) this.#fail(`page index entry ${i + 1} is malformed`, start + at);
      if (a.value !== this.#pgnos[i] || b.value !== this.#offsets[i] || c.value !== this.#sizes[i]) {
        this.#fail(
          `page index entry ${
            i + 1
          } is (pgno ${a.value}, offset ${b.value}, size ${c.value}) but the frame read ` +
            `was (pgno ${this.#pgnos[i]}, offset ${this.#offsets[i]}, size ${this.#sizes[i]})`,
          start + at,
        );
      }
      index[i] = { pgno: a.value, offset: b.value, size: c.value };
      p = c.next;
    }
    if (p >= sizeAt || rest[p] !== 0) {
      this.#fail(`page index has more entries than the ${n} pages in the file`, start + p);
    }
    p++;
    if (p !== sizeAt) this.#fail(`${sizeAt - p} unexpected bytes after the page index terminator`, start + p);
    this.#crc.update(rest.subarray(0, rest.length - 8));
    const trailer: LtxTrailer = {
      postApplyChecksum: view.getBigUint64(rest.length - 16),
      fileChecksum: view.getBigUint64(rest.length - 8),
    };
    const computed = CHECKSUM_FLAG | this.#crc.digest();
    const trailerAt = start + rest.length - TRAILER_SIZE;
    if (trailer.fileChecksum !== computed) {
      this.#fail(
        `file checksum mismatch: trailer says ${formatChecksum(trailer.fileChecksum)}, ` +
          `content gives ${formatChecksum(computed)}`,
        trailerAt + 8,
      );
    }
    const problem = trailerProblem(h, trailer);
    if (problem !== null) this.#fail(`invalid trailer: ${problem}`, trailerAt);
    if (this.#snapshot && this.#checksums && trailer.postApplyChecksum !== this.#dbsum) {
      this.#fail(
        `snapshot post-apply checksum ${formatChecksum(trailer.postApplyChecksum)} does not match the ` +
          `database checksum of its pages ${formatChecksum(this.#dbsum)}`,
        trailerAt,
      );
    }
    this.#state = "done";
    this.#result = { trailer, index };
    return this.#result;
  }
}

/** Decodes and verifies a whole LTX file (all rules, file checksum). Throws {@link CorruptionError}. */
export async function verifyLtx(
  source: AsyncIterable<Uint8Array> | Uint8Array,
  name: string,
): Promise<{ header: LtxHeader; trailer: LtxTrailer; pages: number }> {
  const dec = new LtxDecoder(source, name);
  const header = await dec.readHeader();
  const { trailer } = await dec.finish(); // reads and checks every page without handing copies out
  return { header, trailer, pages: dec.pagesRead };
}

const OUT_CHUNK = 1 << 20;

/**
 * Writes a database file page by page in ~1 MB chunks: pages must arrive as 1…commit with the lock page
 * skipped (it is written as zeros). Shared by {@link decodeDatabaseTo} and the compactor's restore path.
 */
export class DatabaseWriter {
  #out: ByteSink;
  #ps: number;
  #commit: number;
  #lock: number;
  #cap: number;
  #buf: Uint8Array;
  #len = 0;
  #written = 0;
  #name: string;

  /** A writer of `commit` pages of `pageSize` bytes to `out`; `name` appears in errors. */
  constructor(out: ByteSink, pageSize: number, commit: number, name: string) {
    this.#out = out;
    this.#ps = pageSize;
    this.#commit = commit;
    this.#lock = lockPgno(pageSize);
    this.#name = name;
    this.#cap = Math.max(pageSize, Math.floor(OUT_CHUNK / pageSize) * pageSize);
    this.#buf = new Uint8Array(Math.min(this.#cap, Math.max(pageSize, commit * pageSize)));
  }

  /** Pages written so far (the pgno of the last one). */
  get pages(): number {
    return this.#written;
  }

  async #emit(page: Uint8Array | null): Promise<void> {
    if (this.#len + this.#ps > this.#buf.length) {
      await this.#out.write(this.#buf.subarray(0, this.#len));
      // The sink may keep the chunk: never reuse it. A fresh buffer is zeroed, which a lock page relies on.
      this.#buf = new Uint8Array(this.#cap);
      this.#len = 0;
    }
    if (page) this.#buf.set(page, this.#len);
    this.#len += this.#ps;
    this.#written++;
  }

  /** Adds page `pgno` (the next one expected, or the one after the lock page). */
  async page(pgno: number, data: Uint8Array, offset?: number): Promise<void> {
    if (pgno > this.#commit) {
      throw new CorruptionError(`page ${pgno} is beyond the commit size of ${this.#commit} pages`, {
        object: this.#name,
        offset,
      });
    }
    while (this.#written + 1 < pgno) {
      if (this.#written + 1 !== this.#lock) {
        throw new CorruptionError(`page ${this.#written + 1} is missing`, { object: this.#name, offset });
      }
      await this.#emit(null);
    }
    if (pgno !== this.#written + 1 || pgno === this.#lock) {
      throw new CorruptionError(`page ${pgno} is out of order after page ${this.#written}`, {
        object: this.#name,
        offset,
      });
    }
    await this.#emit(data);
  }

  /** Checks that every page up to commit was given (adding a trailing lock page); keeps the last chunk. */
  async complete(): Promise<void> {
    while (this.#written < this.#commit) {
      if (this.#written + 1 !== this.#lock) {
        throw new CorruptionError(`page ${this.#written + 1} is missing`, { object: this.#name });
      }
      await this.#emit(null);
    }
  }

  /** Writes the last chunk. Call only after the input was fully verified. */
  async flush(): Promise<void> {
    if (this.#len > 0) await this.#out.write(this.#buf.subarray(0, this.#len));
    this.#len = 0;
  }
}

/**
 * Writes the database described by a snapshot decoder to `out`: pages 1…commit in order with a zero-filled
 * lock page, in ~1 MB chunks. Requires MinTXID == 1. The file is fully verified (`finish()`) before the
 * last chunk is written, so a caller that renames only after success never exposes a corrupt database.
 */
export async function decodeDatabaseTo(decoder: LtxDecoder, out: ByteSink): Promise<LtxHeader> {
  const h = await decoder.readHeader();
  if (!isSnapshot(h)) {
    throw new CorruptionError(
      `not a snapshot (min TXID ${h.minTXID}); a database can only be decoded from a file starting at TXID 1`,
      { object: decoder.name, offset: 16 },
    );
  }
  const w = new DatabaseWriter(out, h.pageSize, h.commit, decoder.name);
  while (true) {
    const page = await decoder.nextPage();
    if (page === null) break;
    await w.page(page.pgno, page.data, page.offset);
  }
  await w.complete();
  await decoder.finish();
  await w.flush();
  return h;
}
