/**
 * A pull reader over a stream of byte chunks, for the streaming decoders of this module (LZ4 frames, WAL
 * frames): read exactly N bytes across chunk boundaries without ever holding more than one chunk plus the
 * requested bytes in memory.
 *
 * @module
 */

/** Anything that yields byte chunks: an async iterable, a web `ReadableStream`, or one buffer. */
export type ByteSource = AsyncIterable<Uint8Array> | ReadableStream<Uint8Array> | Uint8Array;

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** Turns any {@link ByteSource} into an async iterable of chunks. */
export function chunksOf(source: ByteSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) return single(source);
  return source as AsyncIterable<Uint8Array>;
}

/** Reads exact byte counts from a chunked source. Offsets count bytes consumed from the start. */
export class ByteReader {
  #it: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #done = false;
  #offset = 0;

  /** Wraps `source`; nothing is read until the first call. */
  constructor(source: ByteSource) {
    this.#it = chunksOf(source)[Symbol.asyncIterator]();
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#offset;
  }

  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      if (this.#done) return false;
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        return false;
      }
      this.#chunk = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** Whether the source is exhausted (no byte left). */
  async atEnd(): Promise<boolean> {
    return !(await this.#fill());
  }

  /**
   * Reads up to `n` bytes into `dst` at `dstOffset`; returns how many were read (fewer only at the end of
   * the source).
   */
  async readInto(dst: Uint8Array, n: number, dstOffset = 0): Promise<number> {
    let got = 0;
    while (got < n && await this.#fill()) {
      const take = Math.min(n - got, this.#chunk.length - this.#pos);
      dst.set(this.#chunk.subarray(this.#pos, this.#pos + take), dstOffset + got);
      this.#pos += take;
      got += take;
    }
    this.#offset += got;
    return got;
  }

  /**
   * Reads up to `n` bytes into a new buffer (shorter only at the end). When the bytes lie inside one chunk
   * the result is a view of that chunk, not a copy.
   */
  async read(n: number): Promise<Uint8Array> {
    if (n === 0 || !(await this.#fill())) return new Uint8Array(0);
    if (this.#chunk.length - this.#pos >= n) {
      const view = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      this.#offset += n;
      return view;
    }
    const buf = new Uint8Array(n);
    const got = await this.readInto(buf, n);
    return got === n ? buf : buf.subarray(0, got);
  }

  /** Skips up to `n` bytes; returns how many were skipped. */
  async skip(n: number): Promise<number> {
    let got = 0;
    while (got < n && await this.#fill()) {
      const take = Math.min(n - got, this.#chunk.length - this.#pos);
      this.#pos += take;
      got += take;
    }
    this.#offset += got;
    return got;
  }

  /** Stops the underlying source (closes a stream early). */
  async cancel(): Promise<void> {
    this.#done = true;
    await this.#it.return?.();
  }
}
