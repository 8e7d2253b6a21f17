/**
 * Checksums of the LTX format: CRC-64/GO-ISO (Go `hash/crc64` with `crc64.ISO`), page and database
 * checksums, plus SHA-256 for object metadata.
 *
 * The CRC is dependency-free slicing-by-8 on two Uint32 halves: BigInt in the inner loop is ~30× slower
 * (toolchain.md §3), so BigInt appears only in `digest()`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { CHECKSUM_FLAG, lockPgno } from "./types.ts";

// Reflected form of the ISO polynomial x^64 + x^4 + x^3 + x + 1: 0xD800000000000000.
const POLY_HI = 0xd8000000;
const POLY_LO = 0x00000000;

/** Whether this machine stores Uint32 little-endian (the fast path reads page bytes as words). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Slicing-by-8 tables: T[k*256 + i] = CRC of byte i followed by k zero bytes; split in hi/lo words. */
const T_HI = new Uint32Array(8 * 256);
const T_LO = new Uint32Array(8 * 256);

(function buildTables(): void {
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let b = 0; b < 8; b++) {
      const lsb = lo & 1;
      lo = ((lo >>> 1) | (hi << 31)) >>> 0;
      hi = hi >>> 1;
      if (lsb) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
    T_HI[i] = hi;
    T_LO[i] = lo;
  }
  for (let k = 1; k < 8; k++) {
    for (let i = 0; i < 256; i++) {
      const phi = T_HI[(k - 1) * 256 + i];
      const plo = T_LO[(k - 1) * 256 + i];
      const idx = plo & 0xff;
      T_HI[k * 256 + i] = ((phi >>> 8) ^ T_HI[idx]) >>> 0;
      T_LO[k * 256 + i] = (((plo >>> 8) | (phi << 24)) ^ T_LO[idx]) >>> 0;
    }
  }
})();

/**
 * Incremental CRC-64/GO-ISO (width 64, poly 0x1B reflected, init and xorout all ones). Check value of
 * "123456789" is 0xb90956c775a41001.
 */
export class Crc64 {
  // The register, kept inverted (Go's crc = ^crc at the start and end of Update).
  #hi = 0xffffffff;
  #lo = 0xffffffff;

  /** Feeds bytes into the checksum. */
  update(b: Uint8Array): this {
    let hi = this.#hi;
    let lo = this.#lo;
    let i = 0;
    const n = b.length;
    const th = T_HI;
    const tl = T_LO;
    // Byte at a time up to a 4-byte boundary, so the bulk can be read as aligned little-endian words
    // (two word loads per 8 bytes instead of eight byte loads: ~1.7× faster).
    if (LITTLE_ENDIAN && n >= 64) {
      while (((b.byteOffset + i) & 3) !== 0) {
        const idx = (lo ^ b[i]) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
        hi = (hi >>> 8) ^ th[idx];
        i++;
      }
      const words = ((n - i) >>> 3) * 2;
      const w = new Uint32Array(b.buffer, b.byteOffset + i, words);
      for (let j = 0; j < words; j += 2) {
        const xlo = lo ^ w[j];
        const xhi = hi ^ w[j + 1];
        const a0 = 1792 + (xlo & 0xff);
        const a1 = 1536 + ((xlo >>> 8) & 0xff);
        const a2 = 1280 + ((xlo >>> 16) & 0xff);
        const a3 = 1024 + (xlo >>> 24);
        const a4 = 768 + (xhi & 0xff);
        const a5 = 512 + ((xhi >>> 8) & 0xff);
        const a6 = 256 + ((xhi >>> 16) & 0xff);
        const a7 = xhi >>> 24;
        hi = th[a0] ^ th[a1] ^ th[a2] ^ th[a3] ^ th[a4] ^ th[a5] ^ th[a6] ^ th[a7];
        lo = tl[a0] ^ tl[a1] ^ tl[a2] ^ tl[a3] ^ tl[a4] ^ tl[a5] ^ tl[a6] ^ tl[a7];
      }
      i += words * 4;
    } else {
      const end8 = n - (n & 7);
      while (i < end8) {
        const xlo = lo ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24));
        const xhi = hi ^ (b[i + 4] | (b[i + 5] << 8) | (b[i + 6] << 16) | (b[i + 7] << 24));
        const a0 = 1792 + (xlo & 0xff);
        const a1 = 1536 + ((xlo >>> 8) & 0xff);
        const a2 = 1280 + ((xlo >>> 16) & 0xff);
        const a3 = 1024 + (xlo >>> 24);
        const a4 = 768 + (xhi & 0xff);
        const a5 = 512 + ((xhi >>> 8) & 0xff);
        const a6 = 256 + ((xhi >>> 16) & 0xff);
        const a7 = xhi >>> 24;
        hi = th[a0] ^ th[a1] ^ th[a2] ^ th[a3] ^ th[a4] ^ th[a5] ^ th[a6] ^ th[a7];
        lo = tl[a0] ^ tl[a1] ^ tl[a2] ^ tl[a3] ^ tl[a4] ^ tl[a5] ^ tl[a6] ^ tl[a7];
        i += 8;
      }
    }
    while (i < n) {
      const idx = (lo ^ b[i]) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ tl[idx];
      hi = (hi >>> 8) ^ th[idx];
      i++;
    }
    this.#hi = hi >>> 0;
    this.#lo = lo >>> 0;
    return this;
  }

  /** The CRC of everything fed so far (does not reset). */
  digest(): bigint {
    return (BigInt(~this.#hi >>> 0) << 32n) | BigInt(~this.#lo >>> 0);
  }

  /** Starts over. */
  reset(): this {
    this.#hi = 0xffffffff;
    this.#lo = 0xffffffff;
    return this;
  }
}

/** CRC-64/GO-ISO of `b`. */
export function crc64(b: Uint8Array): bigint {
  return new Crc64().update(b).digest();
}

const pgnoScratch = new Uint8Array(4);
const sharedCrc = new Crc64();

/** Page checksum: `CHECKSUM_FLAG | crc64(be32(pgno) ‖ page)` (the page number is included). */
export function pageChecksum(pgno: number, page: Uint8Array): bigint {
  pgnoScratch[0] = pgno >>> 24;
  pgnoScratch[1] = pgno >>> 16;
  pgnoScratch[2] = pgno >>> 8;
  pgnoScratch[3] = pgno;
  return CHECKSUM_FLAG | sharedCrc.reset().update(pgnoScratch).update(page).digest();
}

/**
 * Database checksum: `FLAG | XOR(pageChecksum)` over the given pages, skipping the lock page; 0 for no
 * pages (Go ltx `ChecksumReader`). The caller supplies every page of the database once.
 */
export function databaseChecksum(pages: Iterable<[number, Uint8Array]>, pageSize: number): bigint {
  const lock = lockPgno(pageSize);
  let c = 0n;
  for (const [pgno, page] of pages) {
    if (pgno === lock) continue;
    c = CHECKSUM_FLAG | (c ^ pageChecksum(pgno, page));
  }
  return c;
}

/** SHA-256 of `bytes` as 64 lowercase hex digits (for object metadata). */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
