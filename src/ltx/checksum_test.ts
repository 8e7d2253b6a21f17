import assert from "node:assert/strict";
import fc from "fast-check";
import { crc64 as hashWasmCrc64 } from "hash-wasm";
import {
  Crc64,
  crc64,
  databaseChecksum,
  instantiateKernel,
  KERNEL_LAYOUT,
  kernelBytes,
  pageChecksum,
} from "./checksum.ts";
import { sha256Hex } from "../storage/digest.ts";
import { filled } from "./fixtures_test.ts";
import { CHECKSUM_FLAG, lockPgno } from "./types.ts";

const enc = new TextEncoder();

/** hash-wasm's CRC-64 with Go's ISO polynomial (reflected form), as a bigint: the oracle. */
async function oracle(b: Uint8Array): Promise<bigint> {
  return BigInt("0x" + await hashWasmCrc64(b, "d800000000000000"));
}

function* repeat(n: number, page: Uint8Array, from = 1): Generator<[number, Uint8Array]> {
  for (let i = 0; i < n; i++) yield [from + i, page];
}

Deno.test("crc64: CRC-64/GO-ISO check value of '123456789' is 0xb90956c775a41001", () => {
  assert.equal(crc64(enc.encode("123456789")), 0xb90956c775a41001n);
  assert.equal(crc64(new Uint8Array(0)), 0n);
});

Deno.test("crc64: equals hash-wasm crc64(data, 'd800000000000000') at every length and alignment", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.nat({ max: 7 }), async (bytes, skip) => {
      const view = bytes.subarray(Math.min(skip, bytes.length)); // odd byteOffsets exercise the aligned fast path
      assert.equal(crc64(view), await oracle(view));
    }),
    { numRuns: 300 },
  );
});

Deno.test("crc64: incremental updates at arbitrary split points equal one shot; reset starts over", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const c = new Crc64();
      let prev = 0;
      for (const p of [...points, bytes.length]) {
        c.update(bytes.subarray(prev, p));
        prev = p;
      }
      assert.equal(c.digest(), crc64(bytes));
      assert.equal(c.reset().update(bytes).digest(), crc64(bytes));
    }),
  );
});

Deno.test("pageChecksum: includes the page number; FLAG|crc(be32(pgno)‖page)", async () => {
  assert.equal(pageChecksum(1, new Uint8Array(4096)), 0xd9328f592d9e733dn);
  const page = crypto.getRandomValues(new Uint8Array(1024));
  const buf = new Uint8Array(1028);
  new DataView(buf.buffer).setUint32(0, 0x01020304);
  buf.set(page, 4);
  assert.equal(pageChecksum(0x01020304, page), CHECKSUM_FLAG | await oracle(buf));
  assert.notEqual(pageChecksum(1, page), pageChecksum(2, page));
});

Deno.test("databaseChecksum: upstream vectors #1 #2 #3 #5 #6 of the reference digest", () => {
  // #1 ltx_test.go TestChecksumReader: 3×512 B pages of 0x01, 0x02, 0x03.
  assert.equal(
    databaseChecksum([[1, filled(512, 1)], [2, filled(512, 2)], [3, filled(512, 3)]], 512),
    0xefffffffecd99000n,
  );
  // #2 decoder_test.go TestDecoder: 1024 B pages '2', '3'.
  assert.equal(
    databaseChecksum([[1, filled(1024, 0x32)], [2, filled(1024, 0x33)]], 1024),
    0xe1899b6d587aaaaan,
  );
  // #3 DecodeDatabaseTo/OK: 512 B pages '2', '3'.
  assert.equal(databaseChecksum([[1, filled(512, 0x32)], [2, filled(512, 0x33)]], 512), 0x8b87423eeeeeeeeen);
  // #5 compactor_test.go SingleFilePageDataOnly.
  assert.equal(databaseChecksum([[1, filled(512, 0x31)]], 512), 0xeb1a999231044dddn);
  // #6 SnapshotPageDataOnly, and the affine collision the digest points out.
  const six = [[1, filled(1024, 0x81)], [2, filled(1024, 0x82)], [3, filled(1024, 0x83)]] as [
    number,
    Uint8Array,
  ][];
  assert.equal(databaseChecksum(six, 1024), 0x8a249272ad9f7dean);
  const merged = [[1, filled(1024, 0x91)], [2, filled(1024, 0x82)], [3, filled(1024, 0x93)]] as [
    number,
    Uint8Array,
  ][];
  assert.equal(databaseChecksum(merged, 1024), 0x8a249272ad9f7dean);
  assert.equal(databaseChecksum([], 4096), 0n);
});

Deno.test("databaseChecksum: vector #4, 4096 B 'x' pages up to commit 262155, lock page 262145 excluded", () => {
  const ps = 4096;
  const lock = lockPgno(ps);
  assert.equal(lock, 262145);
  const x = filled(ps, 0x78);
  const zero = new Uint8Array(ps);
  function* pages(): Generator<[number, Uint8Array]> {
    for (let p = 1; p <= 262155; p++) yield [p, p === lock ? zero : x];
  }
  const sum = databaseChecksum(pages(), ps);
  assert.equal(sum, 0xc19b668c376662c7n);
  // With the zero lock page included (what pre-272eea8 ChecksumReader did) it would differ.
  assert.equal(CHECKSUM_FLAG | (sum ^ pageChecksum(lock, zero)), 0xacacffacd92fc33cn);
});

Deno.test("databaseChecksum: XOR of page checksums is order independent", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 512, maxLength: 512 }), { minLength: 1, maxLength: 8 }),
      (ps) => {
        const pages = ps.map((p, i) => [i + 1, p] as [number, Uint8Array]);
        assert.equal(databaseChecksum(pages, 512), databaseChecksum([...pages].reverse(), 512));
      },
    ),
  );
  assert.equal(
    databaseChecksum(repeat(3, filled(512, 7)), 512),
    databaseChecksum(repeat(3, filled(512, 7)), 512),
  );
});

Deno.test("sha256Hex: FIPS 180-2 'abc' vector and empty input", async () => {
  assert.equal(
    await sha256Hex(enc.encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    await sha256Hex(new Uint8Array(0)),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("crc64: inputs longer than the kernel's buffer, and bytes hashed in kernel memory, equal hash-wasm", async () => {
  const big = new Uint8Array(3 * KERNEL_LAYOUT.inputSize + 1001);
  for (let i = 0; i < big.length; i++) big[i] = Math.imul(i, 2654435761) >>> 24;
  assert.equal(crc64(big), await oracle(big));
  assert.equal(crc64(big.subarray(3)), await oracle(big.subarray(3)));
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), async (a, b) => {
      kernelBytes.set(b, KERNEL_LAYOUT.output);
      const c = new Crc64().update(a).updateKernel(KERNEL_LAYOUT.output, b.length);
      const all = new Uint8Array(a.length + b.length);
      all.set(a);
      all.set(b, a.length);
      assert.equal(c.digest(), await oracle(all));
    }),
    { numRuns: 100 },
  );
});

Deno.test("instantiateKernel: WAT-style text runs; unknown instructions and locals fail when assembling", () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const { sum } = instantiateKernel([{
    name: "sum",
    params: [["$p", "i32"], ["$n", "i32"]],
    result: "i32",
    locals: [["$s", "i32"]],
    body: `block loop ;; sum of n bytes from p
      local.get $n i32.eqz br_if 1
      local.get $s local.get $p i32.load8_u i32.add local.set $s
      local.get $p i32.const 1 i32.add local.set $p
      local.get $n i32.const 1 i32.sub local.set $n
      br 0 end end local.get $s`,
  }], memory);
  new Uint8Array(memory.buffer).set([1, 2, 3, 250], 100);
  assert.equal(sum(100, 4), 256);
  const bad = (body: string) => () =>
    instantiateKernel([{ name: "f", params: [], locals: [["$x", "i32"]], body }], memory);
  assert.throws(bad("i32.frobnicate"), /unknown instruction i32\.frobnicate/);
  assert.throws(bad("local.get $y drop"), /unknown local \$y/);
});
