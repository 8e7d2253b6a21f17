/**
 * XXH32 (seed 0 by default), incremental: the checksum of LZ4 frame descriptors, blocks and content.
 * Pure TypeScript and synchronous, so a streaming decoder can hash each block as it passes through.
 *
 * @module
 */

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  acc = (acc + Math.imul(lane, P2)) | 0;
  acc = rotl(acc, 13);
  return Math.imul(acc, P1);
}

/** Incremental XXH32. `update` any number of times, then `digest` (the hasher stays usable). */
export class Xxh32 {
  #seed: number;
  #v1 = 0;
  #v2 = 0;
  #v3 = 0;
  #v4 = 0;
  #total = 0;
  #buf = new Uint8Array(16);
  #bufLen = 0;

  /** A hasher with the given seed (LZ4 uses 0). */
  constructor(seed = 0) {
    this.#seed = seed | 0;
    this.reset();
  }

  /** Starts over. */
  reset(): this {
    const s = this.#seed;
    this.#v1 = (s + P1 + P2) | 0;
    this.#v2 = (s + P2) | 0;
    this.#v3 = s;
    this.#v4 = (s - P1) | 0;
    this.#total = 0;
    this.#bufLen = 0;
    return this;
  }

  #stripes(b: Uint8Array, start: number, end: number): void {
    let v1 = this.#v1, v2 = this.#v2, v3 = this.#v3, v4 = this.#v4;
    let i = start;
    if (LITTLE_ENDIAN_HOST && (b.byteOffset + start) % 4 === 0 && end - start >= 64) {
      // Aligned lanes can be read as u32 words directly (about twice as fast as assembling bytes).
      const w = new Uint32Array(b.buffer, b.byteOffset + start, (end - start) >>> 2);
      const n = w.length & ~3;
      for (let k = 0; k < n; k += 4) {
        v1 = round(v1, w[k]);
        v2 = round(v2, w[k + 1]);
        v3 = round(v3, w[k + 2]);
        v4 = round(v4, w[k + 3]);
      }
      i = start + n * 4;
    }
    for (; i + 16 <= end; i += 16) {
      v1 = round(v1, b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24));
      v2 = round(v2, b[i + 4] | (b[i + 5] << 8) | (b[i + 6] << 16) | (b[i + 7] << 24));
      v3 = round(v3, b[i + 8] | (b[i + 9] << 8) | (b[i + 10] << 16) | (b[i + 11] << 24));
      v4 = round(v4, b[i + 12] | (b[i + 13] << 8) | (b[i + 14] << 16) | (b[i + 15] << 24));
    }
    this.#v1 = v1;
    this.#v2 = v2;
    this.#v3 = v3;
    this.#v4 = v4;
  }

  /** Adds bytes. */
  update(data: Uint8Array): this {
    let i = 0;
    const n = data.length;
    this.#total += n;
    if (this.#bufLen > 0) {
      const take = Math.min(16 - this.#bufLen, n);
      this.#buf.set(data.subarray(0, take), this.#bufLen);
      this.#bufLen += take;
      i = take;
      if (this.#bufLen < 16) return this;
      this.#stripes(this.#buf, 0, 16);
      this.#bufLen = 0;
    }
    const full = i + Math.floor((n - i) / 16) * 16;
    this.#stripes(data, i, full);
    if (full < n) {
      this.#buf.set(data.subarray(full), 0);
      this.#bufLen = n - full;
    }
    return this;
  }

  /** The hash of everything added so far, as an unsigned 32-bit number. */
  digest(): number {
    let h: number;
    if (this.#total >= 16) {
      h = (rotl(this.#v1, 1) + rotl(this.#v2, 7) + rotl(this.#v3, 12) + rotl(this.#v4, 18)) | 0;
    } else {
      h = (this.#seed + P5) | 0;
    }
    h = (h + this.#total) | 0; // the low 32 bits of the length, as the reference does
    const b = this.#buf;
    let i = 0;
    for (; i + 4 <= this.#bufLen; i += 4) {
      const lane = b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
      h = (h + Math.imul(lane, P3)) | 0;
      h = Math.imul(rotl(h, 17), P4);
    }
    for (; i < this.#bufLen; i++) {
      h = (h + Math.imul(b[i], P5)) | 0;
      h = Math.imul(rotl(h, 11), P1);
    }
    h ^= h >>> 15;
    h = Math.imul(h, P2);
    h ^= h >>> 13;
    h = Math.imul(h, P3);
    h ^= h >>> 16;
    return h >>> 0;
  }
}

/** XXH32 of one buffer. */
export function xxh32(data: Uint8Array, seed = 0): number {
  return new Xxh32(seed).update(data).digest();
}
