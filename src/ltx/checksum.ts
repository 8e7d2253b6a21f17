/**
 * Checksums of the LTX format: CRC-64/GO-ISO (Go `hash/crc64` with `crc64.ISO`), page and database
 * checksums, plus SHA-256 for object metadata.
 *
 * The CRC runs in a small WebAssembly kernel assembled here at load time from WAT-style text (no toolchain,
 * no binary blob). It needs no byte tables in its loop: the ISO polynomial x^64 + x^4 + x^3 + x + 1 is sparse,
 * so advancing the register over 64 bits (multiplying by x^64 mod P = x^4 + x^3 + x + 1) is two shifts and
 * two XORs (`B = A ^ A>>1`, `B ^ B>>3` in the reflected form), plus one 16-entry lookup for the four bits
 * that overflow. Four interleaved 256-byte streams are joined by a "shift by 256 zero bytes" table. That is
 * ~6–7 GB/s on data already in kernel memory, against ~2.7 GB/s for the slicing-by-8 kernel it replaced
 * (eight table loads per 8 bytes) and ~1.5 GB/s for the JavaScript version before that. Inputs under
 * {@link SMALL_INPUT} bytes stay in JavaScript, where a call would cost more than it saves. BigInt appears
 * only in `digest()` (it is ~30× slower in a loop, toolchain.md §3).
 *
 * The kernel's memory ({@link kernelMemory}, fixed at 256 KiB) and the assembler are shared with the LZ4
 * block decoder in `lz4.ts`, so a decoded page is hashed where it was written.
 *
 * @module
 */

import { CHECKSUM_FLAG, lockPgno } from "./types.ts";

// ---------------------------------------------------------------------------------------------------------
// A tiny assembler: WAT-style instruction text → a WebAssembly module importing one memory.

/** Value types a kernel function can use. */
export type KernelType = "i32" | "i64";

/** One exported function of a kernel module: signature, locals, and its body as WAT-style instructions. */
export interface KernelFunction {
  /** Export name. */
  name: string;
  /** Parameters, named `$x` for use in the body. */
  params: [string, KernelType][];
  /** Result type, if any. */
  result?: KernelType;
  /** Extra locals, named like the parameters. */
  locals: [string, KernelType][];
  /**
   * Flat WAT instructions separated by whitespace; `;;` starts a comment. Supported: `block`/`loop`/`if`
   * (no block results), `else`, `end`, `br N`, `br_if N`, `return`, `call <name>` (a function of the same
   * module), `local.get|set|tee $x`, `i32.const N`,
   * `i64.const N`, loads/stores with an optional `offset=N`, `memory.fill`, and the i32/i64 operators
   * listed in `OPCODES`.
   */
  body: string;
}

const OPCODES: Record<string, number[]> = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  return: [0x0f],
  "i32.eqz": [0x45],
  "i32.eq": [0x46],
  "i32.ne": [0x47],
  "i32.lt_u": [0x49],
  "i32.gt_u": [0x4b],
  "i32.le_u": [0x4d],
  "i32.ge_u": [0x4f],
  "i32.add": [0x6a],
  "i32.sub": [0x6b],
  "i32.and": [0x71],
  "i32.or": [0x72],
  "i32.xor": [0x73],
  "i32.shl": [0x74],
  "i32.shr_u": [0x76],
  "i64.and": [0x83],
  "i64.xor": [0x85],
  "i64.shl": [0x86],
  "i64.shr_u": [0x88],
  "i32.wrap_i64": [0xa7],
  "memory.fill": [0xfc, 11, 0],
};
/** Memory instructions: opcode and natural alignment (log2). */
const MEMORY_OPCODES: Record<string, [number, number]> = {
  "i32.load": [0x28, 2],
  "i64.load": [0x29, 3],
  "i32.load8_u": [0x2d, 0],
  "i32.load16_u": [0x2f, 1],
  "i32.store": [0x36, 2],
  "i64.store": [0x37, 3],
  "i32.store8": [0x3a, 0],
};
const LOCAL_OPCODES: Record<string, number> = { "local.get": 0x20, "local.set": 0x21, "local.tee": 0x22 };
const TYPE_CODES: Record<KernelType, number> = { i32: 0x7f, i64: 0x7e };

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    const b = n & 0x7f;
    n = Math.floor(n / 128);
    out.push(n > 0 ? b | 0x80 : b);
  } while (n > 0);
  return out;
}

function sleb(n: bigint): number[] {
  const out: number[] = [];
  while (true) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (b & 0x40) === 0) || (n === -1n && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => vec([...new TextEncoder().encode(s)].map((b) => [b]));

function assembleBody(f: KernelFunction, functions: Map<string, number>): number[] {
  const index = new Map<string, number>();
  [...f.params, ...f.locals].forEach(([n], i) => index.set(n, i));
  const tokens = f.body.replace(/;;[^\n]*/g, "").split(/\s+/).filter((t) => t !== "");
  const code: number[] = [];
  const next = (i: number): string => {
    if (i >= tokens.length) throw new Error(`kernel ${f.name}: missing operand after ${tokens[i - 1]}`);
    return tokens[i];
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t in OPCODES) {
      code.push(...OPCODES[t]);
    } else if (t in LOCAL_OPCODES) {
      const local = index.get(next(++i));
      if (local === undefined) throw new Error(`kernel ${f.name}: unknown local ${tokens[i]}`);
      code.push(LOCAL_OPCODES[t], local);
    } else if (t in MEMORY_OPCODES) {
      const [op, align] = MEMORY_OPCODES[t];
      let offset = 0;
      if (tokens[i + 1]?.startsWith("offset=")) offset = Number(tokens[++i].slice(7));
      code.push(op, align, ...uleb(offset));
    } else if (t === "i32.const" || t === "i64.const") {
      const v = BigInt(next(++i));
      code.push(t === "i32.const" ? 0x41 : 0x42, ...sleb(BigInt.asIntN(t === "i32.const" ? 32 : 64, v)));
    } else if (t === "call") {
      const callee = functions.get(next(++i));
      if (callee === undefined) throw new Error(`kernel ${f.name}: unknown function ${tokens[i]}`);
      code.push(0x10, ...uleb(callee));
    } else if (t === "br" || t === "br_if") {
      code.push(t === "br" ? 0x0c : 0x0d, ...uleb(Number(next(++i))));
    } else {
      throw new Error(`kernel ${f.name}: unknown instruction ${t}`);
    }
  }
  const locals = vec(f.locals.map(([, ty]) => [1, TYPE_CODES[ty]]));
  const body = [...locals, ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/**
 * Assembles `fns` into a WebAssembly module that imports its memory as `env.memory`, instantiates it on
 * `memory` and returns the exported functions by name. Used for the CRC and LZ4 kernels; a malformed body
 * is a programming error (`Error` at load time, never at run time).
 */
export function instantiateKernel(
  fns: KernelFunction[],
  memory: WebAssembly.Memory,
): Record<string, (...args: number[]) => number> {
  const functions = new Map(fns.map((f, i) => [f.name, i]));
  const types = fns.map((f) => [
    0x60,
    ...vec(f.params.map(([, ty]) => [TYPE_CODES[ty]])),
    ...(f.result ? [1, TYPE_CODES[f.result]] : [0]),
  ]);
  const bytes = new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
    ...section(1, vec(types)),
    ...section(2, vec([[...name("env"), ...name("memory"), 0x02, 0x00, ...uleb(1)]])),
    ...section(3, vec(fns.map((_, i) => uleb(i)))),
    ...section(7, vec(fns.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(fns.map((f) => assembleBody(f, functions)))),
  ]);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  return instance.exports as Record<string, (...args: number[]) => number>;
}

// ---------------------------------------------------------------------------------------------------------
// Kernel memory

/**
 * Layout of {@link kernelMemory} (byte addresses). `input` holds data being hashed or an LZ4 block being
 * decoded (`inputSize` bytes, then 16 bytes of slack the LZ4 decoder may over-read); `output` holds a
 * decoded page (`outputSize` bytes, then 16 bytes of slack it may over-write). Both fit the largest page
 * (64 KiB) and its LZ4 bound.
 */
export const KERNEL_LAYOUT = {
  crcTables: 0, // byte table, fold table (at +2048), and at +16384 the 8 shift tables: 8 × 256 × 8 bytes
  crcState: 32768, // the CRC register, inverted, as a little-endian u64
  input: 65536,
  inputSize: 66048,
  output: 65536 + 66048 + 16,
  outputSize: 65536,
} as const;

/** The memory every kernel works in: 4 WebAssembly pages, never grown (views on it stay valid). */
export const kernelMemory: WebAssembly.Memory = new WebAssembly.Memory({ initial: 4, maximum: 4 });

/** Bytes of {@link kernelMemory}. */
export const kernelBytes: Uint8Array = new Uint8Array(kernelMemory.buffer);
const kernelView = new DataView(kernelMemory.buffer);

// ---------------------------------------------------------------------------------------------------------
// CRC-64/GO-ISO

// Reflected form of the ISO polynomial x^64 + x^4 + x^3 + x + 1: 0xD800000000000000.
const POLY_HI = 0xd8000000;

/** Inputs shorter than this are hashed in JavaScript. */
export const SMALL_INPUT = 64;

/** Bytes each of the four interleaved kernel streams hashes per round. */
const STREAM = 256;

// Byte-at-a-time table (for short inputs), as u32 halves.
const T0_HI = new Uint32Array(256);
const T0_LO = new Uint32Array(256);

/** Per-byte tables of the "advance over n zero bytes" operator: entry j·256 + v is shift(v << 8j). */
interface ZeroShiftTables {
  hi: Uint32Array;
  lo: Uint32Array;
}

/**
 * The tables that advance a CRC-64 register over `n` zero bytes (the kernel's stream joins). The operator is
 * linear, so it is fixed by its value on each of the 64 register bits; and it commutes with multiplying by x,
 * so only the top bit (x^0) is advanced over the n bytes and each lower bit's value is the one above it
 * advanced by a single bit. Each byte's table is then filled one XOR per entry. (This runs at start-up of
 * every command, before any JIT: ~0.3k steps instead of ~33k.)
 */
function zeroShiftTables(n: number): ZeroShiftTables {
  const bitHi = new Uint32Array(64);
  const bitLo = new Uint32Array(64);
  let hi = 0x80000000;
  let lo = 0;
  for (let s = 0; s < n; s++) {
    const idx = lo & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ T0_LO[idx];
    hi = (hi >>> 8) ^ T0_HI[idx];
  }
  for (let bit = 63; bit >= 0; bit--) {
    bitHi[bit] = hi >>> 0;
    bitLo[bit] = lo >>> 0;
    const lsb = lo & 1;
    lo = ((lo >>> 1) | (hi << 31)) >>> 0;
    hi = lsb ? ((hi >>> 1) ^ POLY_HI) >>> 0 : hi >>> 1;
  }
  const t: ZeroShiftTables = { hi: new Uint32Array(8 * 256), lo: new Uint32Array(8 * 256) };
  for (let j = 0; j < 8; j++) {
    const base = j * 256;
    for (let b = 0; b < 8; b++) {
      const top = 1 << b;
      for (let v = 0; v < top; v++) {
        t.hi[base + (top | v)] = (t.hi[base + v] ^ bitHi[8 * j + b]) >>> 0;
        t.lo[base + (top | v)] = (t.lo[base + v] ^ bitLo[8 * j + b]) >>> 0;
      }
    }
  }
  return t;
}

/** Offset of the fold table from {@link KERNEL_LAYOUT.crcTables} (after the byte table). */
const FOLD_TABLE = 2048;

/** Offset of the shift tables from {@link KERNEL_LAYOUT.crcTables}. */
const SHIFT_TABLES = 16384;

/**
 * Fills the kernel's tables. The byte table (the classic one) serves the last < 8 bytes of an input. The
 * fold table holds, for each value q of the register's low four bits, what those bits contribute after the
 * register is advanced over 64 zero bits: in the reflected form A·x^64 mod P is A ^ A>>1 ^ A>>3 ^ A>>4 for
 * the bits that stay, and the bits shifted out (R = q<<63 ^ q<<61 ^ q<<60, a multiple of x^64) are reduced
 * once more by the same rule, R ^ R>>1 ^ R>>3 ^ R>>4, which no longer overflows. Shift table 7 − j holds,
 * for each value of register byte j, the register after {@link STREAM} zero bytes: the four streams are
 * linear in their start register, so stream A's result shifted past stream B, XOR B's result (started from
 * zero), is the register after A‖B.
 */
(function buildTables(): void {
  for (let i = 0; i < 256; i++) {
    let hi = 0;
    let lo = i;
    for (let b = 0; b < 8; b++) {
      const lsb = lo & 1;
      lo = ((lo >>> 1) | (hi << 31)) >>> 0;
      hi = hi >>> 1;
      if (lsb) hi = (hi ^ POLY_HI) >>> 0;
    }
    T0_HI[i] = hi;
    T0_LO[i] = lo;
  }
  const put = (at: number, hi: number, lo: number): void => {
    kernelView.setUint32(KERNEL_LAYOUT.crcTables + at, lo, true);
    kernelView.setUint32(KERNEL_LAYOUT.crcTables + at + 4, hi, true);
  };
  for (let i = 0; i < 256; i++) put(i * 8, T0_HI[i], T0_LO[i]);
  const mask = (1n << 64n) - 1n;
  for (let q = 0n; q < 16n; q++) {
    const r = ((q << 63n) ^ (q << 61n) ^ (q << 60n)) & mask;
    const f = r ^ (r >> 1n) ^ (r >> 3n) ^ (r >> 4n);
    put(FOLD_TABLE + Number(q) * 8, Number(f >> 32n), Number(f & 0xffffffffn));
  }
  // The kernel's shift tables: register byte j (0 = lowest) uses table 7 − j.
  const shift = zeroShiftTables(STREAM);
  for (let j = 0; j < 8; j++) {
    for (let v = 0; v < 256; v++) {
      put(SHIFT_TABLES + ((7 - j) * 256 + v) * 8, shift.hi[j * 256 + v], shift.lo[j * 256 + v]);
    }
  }
})();

/** WAT: advances i64 local `r` (register XOR data word) over its 64 bits: r·x^64 mod P (see the tables). */
function fold(r: string): string {
  return `local.get ${r} local.get ${r} i64.const 1 i64.shr_u i64.xor local.tee $t
    local.get $t i64.const 3 i64.shr_u i64.xor
    local.get ${r} i32.wrap_i64 i32.const 15 i32.and i32.const 3 i32.shl i64.load offset=${T + FOLD_TABLE}
    i64.xor local.set ${r}`;
}

/** WAT: replaces i64 local `r` by the XOR of its 8 byte lookups in the shift tables. */
function shift8(r: string): string {
  const lookup = (shift: number, table: number, xor: boolean) =>
    `local.get $w ${shift === 0 ? "i32.const 3 i32.shl" : `i32.const ${shift} i32.shr_u`} ` +
    `i32.const 2040 i32.and i64.load offset=${SHIFT + table * 2048}${xor ? " i64.xor" : ""}`;
  return `local.get ${r} i32.wrap_i64 local.set $w
    ${lookup(0, 7, false)} ${lookup(5, 6, true)} ${lookup(13, 5, true)} ${lookup(21, 4, true)}
    local.get ${r} i64.const 32 i64.shr_u i32.wrap_i64 local.set $w
    ${lookup(0, 3, true)} ${lookup(5, 2, true)} ${lookup(13, 1, true)} ${lookup(21, 0, true)}
    local.set ${r}`;
}

const T = KERNEL_LAYOUT.crcTables;
const SHIFT = T + SHIFT_TABLES;

/**
 * `crc(p, n, s)`: updates the register stored at `s` (inverted, little-endian u64; `crcState` for
 * {@link Crc64}) with bytes [p, p + n) of the memory. It reads the tables at `crcTables`: a module that
 * instantiates it on another memory copies them there first ({@link CRC_TABLES_SIZE}).
 */
export const CRC_KERNEL: KernelFunction = {
  name: "crc",
  params: [["$p", "i32"], ["$n", "i32"], ["$s", "i32"]],
  locals: [
    ["$c", "i64"],
    ["$a", "i64"],
    ["$b", "i64"],
    ["$x", "i64"],
    ["$y", "i64"],
    ["$t", "i64"],
    ["$i", "i32"],
    ["$w", "i32"],
  ],
  body: `
  local.get $s i64.load local.set $c
  block loop ;; four independent streams of ${STREAM} bytes, so the folds overlap
    local.get $n i32.const ${4 * STREAM} i32.lt_u br_if 1
    local.get $c local.set $a i64.const 0 local.set $b i64.const 0 local.set $x i64.const 0 local.set $y
    i32.const 0 local.set $i
    loop
      ${
    ["$a", "$b", "$x", "$y"].map((r, k) =>
      `local.get ${r} local.get $p local.get $i i32.add i64.load offset=${k * STREAM} i64.xor local.set ${r}
      ${fold(r)}`
    ).join("\n")
  }
      local.get $i i32.const 8 i32.add local.tee $i i32.const ${STREAM} i32.lt_u br_if 0
    end
    ;; c = shift(shift(shift(a) ^ b) ^ x) ^ y
    ${shift8("$a")} local.get $a local.get $b i64.xor local.set $a
    ${shift8("$a")} local.get $a local.get $x i64.xor local.set $a
    ${shift8("$a")} local.get $a local.get $y i64.xor local.set $c
    local.get $p i32.const ${4 * STREAM} i32.add local.set $p
    local.get $n i32.const ${4 * STREAM} i32.sub local.set $n
    br 0
  end end
  block loop ;; 8 bytes at a time
    local.get $n i32.const 8 i32.lt_u br_if 1
    local.get $c local.get $p i64.load i64.xor local.set $c
    ${fold("$c")}
    local.get $p i32.const 8 i32.add local.set $p
    local.get $n i32.const 8 i32.sub local.set $n
    br 0
  end end
  block loop ;; the last bytes one at a time
    local.get $n i32.eqz br_if 1
    local.get $c i64.const 8 i64.shr_u
    local.get $c i32.wrap_i64 local.get $p i32.load8_u i32.xor i32.const 255 i32.and i32.const 3 i32.shl
    i64.load offset=${T} i64.xor local.set $c
    local.get $p i32.const 1 i32.add local.set $p
    local.get $n i32.const 1 i32.sub local.set $n
    br 0
  end end
  local.get $s local.get $c i64.store`,
};

/** Bytes at the start of the kernel memory holding the CRC kernel's tables. */
export const CRC_TABLES_SIZE: number = KERNEL_LAYOUT.crcState;

const crcRun = instantiateKernel([CRC_KERNEL], kernelMemory).crc as (p: number, n: number, s: number) => void;
const crcKernel = (p: number, n: number): void => crcRun(p, n, KERNEL_LAYOUT.crcState);

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
    const n = b.length;
    if (n < SMALL_INPUT) {
      let hi = this.#hi;
      let lo = this.#lo;
      for (let i = 0; i < n; i++) {
        const idx = (lo ^ b[i]) & 0xff;
        lo = ((lo >>> 8) | (hi << 24)) ^ T0_LO[idx];
        hi = (hi >>> 8) ^ T0_HI[idx];
      }
      this.#hi = hi >>> 0;
      this.#lo = lo >>> 0;
      return this;
    }
    const { input, inputSize } = KERNEL_LAYOUT;
    this.#load();
    for (let o = 0; o < n; o += inputSize) {
      const part = b.subarray(o, Math.min(n, o + inputSize));
      kernelBytes.set(part, input);
      crcKernel(input, part.length);
    }
    this.#store();
    return this;
  }

  /**
   * Feeds bytes that are already in {@link kernelMemory} at [`address`, `address + length`), without
   * copying them (the LZ4 kernel's decoded page).
   */
  updateKernel(address: number, length: number): this {
    this.#load();
    crcKernel(address, length);
    this.#store();
    return this;
  }

  /** Stores the register (inverted, as the kernel keeps it: little-endian u64) at `at` of `view`. */
  saveRegister(view: DataView, at: number): void {
    view.setUint32(at, this.#lo, true);
    view.setUint32(at + 4, this.#hi, true);
  }

  /** Takes the register from `at` of `view` (as {@link saveRegister} stores it). */
  loadRegister(view: DataView, at: number): this {
    this.#lo = view.getUint32(at, true);
    this.#hi = view.getUint32(at + 4, true);
    return this;
  }

  #load(): void {
    kernelView.setUint32(KERNEL_LAYOUT.crcState, this.#lo, true);
    kernelView.setUint32(KERNEL_LAYOUT.crcState + 4, this.#hi, true);
  }

  #store(): void {
    this.#lo = kernelView.getUint32(KERNEL_LAYOUT.crcState, true);
    this.#hi = kernelView.getUint32(KERNEL_LAYOUT.crcState + 4, true);
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
