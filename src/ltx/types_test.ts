import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeHeader,
  encodeUvarint,
  formatChecksum,
  formatLtxFilename,
  formatTxid,
  headerProblem,
  isSnapshot,
  isValidPageSize,
  lockPgno,
  type LtxHeader,
  parseHeaderBytes,
  parseLtxFilename,
  parseTxid,
  readUvarint,
  trailerProblem,
  uvarintSize,
} from "./types.ts";
import { hdr } from "./fixtures_test.ts";

Deno.test("lockPgno: digest table and every page size", () => {
  assert.equal(lockPgno(512), 2097153);
  assert.equal(lockPgno(1024), 1048577);
  assert.equal(lockPgno(4096), 262145);
  assert.equal(lockPgno(65536), 16385);
  for (let ps = 512; ps <= 65536; ps *= 2) assert.equal((lockPgno(ps) - 1) * ps, 0x40000000);
});

Deno.test("isValidPageSize: powers of two 512…65536 only", () => {
  for (let ps = 512; ps <= 65536; ps *= 2) assert.ok(isValidPageSize(ps));
  for (const bad of [0, 256, 511, 513, 1000, 4097, 131072, -4096, 4096.5]) assert.ok(!isValidPageSize(bad));
});

Deno.test("uvarint: Go binary.AppendUvarint vectors", () => {
  const cases: [number, number[]][] = [
    [0, [0x00]],
    [1, [0x01]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [16384, [0x80, 0x80, 0x01]],
    [0xffffffff, [0xff, 0xff, 0xff, 0xff, 0x0f]],
    [2 ** 35, [0x80, 0x80, 0x80, 0x80, 0x80, 0x01]],
    [Number.MAX_SAFE_INTEGER, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]],
  ];
  for (const [v, bytes] of cases) {
    assert.deepEqual(Array.from(encodeUvarint(v)), bytes, `encode ${v}`);
    assert.equal(uvarintSize(v), bytes.length);
    assert.deepEqual(readUvarint(Uint8Array.from(bytes), 0), { value: v, next: bytes.length });
  }
});

Deno.test("uvarint: truncated, overlong and out-of-range inputs are rejected", () => {
  assert.equal(readUvarint(Uint8Array.from([0x80]), 0), null);
  assert.equal(readUvarint(Uint8Array.from([]), 0), null);
  assert.equal(readUvarint(new Uint8Array(11).fill(0x80), 0), null);
  // 2^64 overflows (10th byte > 1).
  assert.equal(readUvarint(Uint8Array.from([...new Array(9).fill(0xff), 0x02]), 0), null);
  // 2^53 does not fit a safe integer.
  assert.equal(readUvarint(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]), 0), null);
});

Deno.test("uvarint: property round trip at an offset", () => {
  fc.assert(
    fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: 5 }), (v, pad) => {
      const enc = encodeUvarint(v);
      const buf = new Uint8Array(pad + enc.length + 3);
      buf.set(enc, pad);
      assert.deepEqual(readUvarint(buf, pad), { value: v, next: pad + enc.length });
    }),
  );
});

Deno.test("file names: format/parse like Go ltx (FormatFilename, ParseFilename)", () => {
  assert.equal(formatLtxFilename(1, 1000), "0000000000000001-00000000000003e8.ltx");
  assert.deepEqual(parseLtxFilename("0000000000000001-00000000000003e8.ltx"), { minTXID: 1, maxTXID: 1000 });
  assert.equal(formatTxid(0xdeadbeef), "00000000deadbeef");
  assert.equal(parseTxid("00000000deadbeef"), 0xdeadbeef);
  for (
    const bad of [
      "0000000000000001-00000000000003E8.ltx",
      "000000000000001-00000000000003e8.ltx",
      "0000000000000001-00000000000003e8.ltx.tmp",
      "x/0000000000000001-00000000000003e8.ltx",
      "0000000000000001_00000000000003e8.ltx",
      "0000000000000001-00000000000003e8",
      "ffffffffffffffff-ffffffffffffffff.ltx", // beyond 2^53-1: walrust cannot represent it
    ]
  ) {
    assert.equal(parseLtxFilename(bad), null, bad);
  }
  fc.assert(
    fc.property(
      fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      (a, b) => {
        assert.deepEqual(parseLtxFilename(formatLtxFilename(a, b)), { minTXID: a, maxTXID: b });
      },
    ),
  );
  assert.equal(formatChecksum(0xe1899b6d587aaaaan), "e1899b6d587aaaaa");
  assert.equal(formatChecksum(1n), "0000000000000001");
});

const headerArb: fc.Arbitrary<LtxHeader> = fc.record({
  flags: fc.constantFrom(0, 2),
  pageSize: fc.constantFrom(512, 1024, 4096, 65536),
  commit: fc.nat({ max: 0xffffffff }),
  minTXID: fc.integer({ min: 2, max: Number.MAX_SAFE_INTEGER }),
  span: fc.nat({ max: 1000 }),
  timestamp: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  pre: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }),
  walOffset: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  walSize: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  walSalt1: fc.nat({ max: 0xffffffff }),
  walSalt2: fc.nat({ max: 0xffffffff }),
  nodeID: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
}).map((r) => ({
  flags: r.flags,
  pageSize: r.pageSize,
  commit: r.commit,
  minTXID: r.minTXID,
  maxTXID: Math.min(Number.MAX_SAFE_INTEGER, r.minTXID + r.span),
  timestamp: r.timestamp,
  preApplyChecksum: r.flags === 2 ? 0n : (1n << 63n) | r.pre,
  walOffset: r.walOffset,
  walSize: r.walSize,
  walSalt1: r.walSalt1,
  walSalt2: r.walSalt2,
  nodeID: r.nodeID,
}));

Deno.test("header: property round trip through the 100-byte encoding", () => {
  fc.assert(
    fc.property(headerArb, (h) => {
      assert.equal(headerProblem(h), null);
      const b = encodeHeader(h);
      assert.equal(b.length, 100);
      assert.deepEqual(Array.from(b.subarray(0, 4)), [0x4c, 0x54, 0x58, 0x31]);
      assert.ok(b.subarray(80).every((x) => x === 0), "reserved bytes are zero");
      const p = parseHeaderBytes(b);
      assert.ok(p.ok);
      assert.deepEqual(p.header, h);
    }),
  );
});

Deno.test("header: every Go Header.Validate rule is enforced", () => {
  const cases: [Partial<LtxHeader>, string][] = [
    [{ flags: 1 }, "invalid flags: 0x00000001"],
    [{ flags: 0x80000000 }, "invalid flags"],
    [{ pageSize: 1000 }, "invalid page size: 1000"],
    [{ pageSize: 256 }, "invalid page size"],
    [{ minTXID: 0 }, "minimum transaction id required"],
    [{ minTXID: 0, maxTXID: 0 }, "minimum transaction id required"],
    [{ minTXID: 3, maxTXID: 0 }, "maximum transaction id required"],
    [{ minTXID: 3, maxTXID: 2 }, "transaction ids out of order: (3,2)"],
    [{ walOffset: -1 }, "wal offset cannot be negative: -1"],
    [{ walOffset: 32, walSize: -1 }, "wal size cannot be negative: -1"],
    [{ walSalt1: 5 }, "wal offset required if salt exists"],
    [{ walSalt2: 5 }, "wal offset required if salt exists"],
    [{ walSize: 10 }, "wal offset required if wal size exists"],
    [{ preApplyChecksum: 1n << 63n }, "pre-apply checksum must be zero on snapshots"],
    [{ minTXID: 2, maxTXID: 3, preApplyChecksum: (1n << 63n) | 5n }, "pre-apply checksum not allowed"],
    [{ flags: 0, minTXID: 2, maxTXID: 3 }, "pre-apply checksum required on non-snapshot files"],
    [{ flags: 0, minTXID: 2, maxTXID: 3, preApplyChecksum: 5n }, "invalid pre-apply checksum format"],
  ];
  for (const [over, want] of cases) {
    const h = hdr(over);
    const problem = headerProblem(h);
    assert.ok(
      problem?.includes(want),
      `${JSON.stringify(over, (_, v) => typeof v === "bigint" ? `${v}` : v)}: ${problem}`,
    );
    const p = parseHeaderBytes(encodeHeader(h));
    assert.ok(!p.ok && p.problem.includes(want), `parse: ${!p.ok && p.problem}`);
  }
  assert.equal(headerProblem(hdr({ walOffset: 32, walSalt1: 1, walSalt2: 2, walSize: 4152 })), null);
  assert.equal(headerProblem(hdr({ flags: 0, minTXID: 2, maxTXID: 3, preApplyChecksum: 1n << 63n })), null);
});

Deno.test("header: bad magic, short input and values above 2^53-1 are reported with their byte", () => {
  const b = encodeHeader(hdr());
  const bad = b.slice();
  bad[0] = 0x4d;
  assert.deepEqual(parseHeaderBytes(bad), {
    ok: false,
    problem: "not an LTX file (bad magic, expected 'LTX1')",
    at: 0,
  });
  assert.equal(parseHeaderBytes(b.subarray(0, 99)).ok, false);
  for (
    const [off, what] of [[16, "minimum"], [24, "maximum"], [32, "timestamp"], [48, "wal offset"]] as const
  ) {
    const x = b.slice();
    x[off] = 0x7f;
    const p = parseHeaderBytes(x);
    assert.ok(!p.ok && p.problem.includes(what) && p.at === off, `${off}: ${JSON.stringify(p)}`);
  }
});

Deno.test("trailer: Go Trailer.Validate rules", () => {
  const F = 1n << 63n;
  assert.equal(trailerProblem(hdr(), { postApplyChecksum: 0n, fileChecksum: F | 1n }), null);
  assert.match(trailerProblem(hdr(), { postApplyChecksum: F, fileChecksum: F })!, /not allowed/);
  assert.match(trailerProblem(hdr({ flags: 0 }), { postApplyChecksum: 0n, fileChecksum: F })!, /required/);
  assert.match(trailerProblem(hdr({ flags: 0 }), { postApplyChecksum: 1n, fileChecksum: F })!, /format/);
  assert.match(trailerProblem(hdr(), { postApplyChecksum: 0n, fileChecksum: 0n })!, /file checksum required/);
  assert.match(trailerProblem(hdr(), { postApplyChecksum: 0n, fileChecksum: 1n })!, /invalid file checksum/);
});

Deno.test("isSnapshot: MinTXID == 1", () => {
  assert.ok(isSnapshot(hdr({ minTXID: 1, maxTXID: 9 })));
  assert.ok(!isSnapshot(hdr({ minTXID: 2, maxTXID: 9 })));
});
