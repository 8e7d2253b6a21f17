import assert from "node:assert/strict";
import {
  ackedBefore,
  checkLatest,
  checkTimestampRestore,
  checkTxidRestores,
  contiguousTxid,
  type LoggedState,
  WriterHistory,
} from "./oracle.ts";
import { ChaosRng, describeFaultPlan, randomFaultPlan, roundSeed, STALL_FAULTS } from "./faults.ts";
import { blobBytes, hotModel } from "./workload.ts";

/** seq 0…5 committed at 1000, 1010, …; digests d0…d5. */
function history(): WriterHistory {
  const states: LoggedState[] = [];
  for (let s = 0; s <= 5; s++) states.push({ seq: s, commitTime: 1000 + 10 * s, digest: `d${s}` });
  return new WriterHistory(states);
}

Deno.test("oracle: a broken writer log is refused", () => {
  assert.throws(() => new WriterHistory([]), /empty/);
  assert.throws(
    () =>
      new WriterHistory([{ seq: 0, commitTime: 1, digest: null }, { seq: 2, commitTime: 2, digest: null }]),
    /seq 2 follows seq 0/,
  );
  assert.throws(
    () =>
      new WriterHistory([{ seq: 0, commitTime: 5, digest: null }, { seq: 1, commitTime: 4, digest: null }]),
    /backwards/,
  );
});

Deno.test("oracle: latest restore must be the last state, with its digest", () => {
  const h = history();
  assert.deepEqual(checkLatest(h, { seq: 5, digest: "d5" }), []);
  assert.equal(checkLatest(h, { seq: 4, digest: "d4" })[0].kind, "loss");
  assert.equal(checkLatest(h, { seq: 5, digest: "dX" })[0].kind, "phantom");
  assert.equal(checkLatest(h, { seq: 9, digest: null })[0].kind, "phantom");
  // Replay-checked workloads carry no digest: only the seq is compared.
  assert.deepEqual(checkLatest(h, { seq: 5, digest: null }), []);
});

Deno.test("oracle: TXID restores are committed states and never go backwards", () => {
  const h = history();
  assert.deepEqual(
    checkTxidRestores(h, [
      { txid: 3, state: { seq: 2, digest: "d2" } },
      { txid: 1, state: { seq: 0, digest: "d0" } },
      { txid: 7, state: { seq: 2, digest: "d2" } },
    ]),
    [],
  );
  const back = checkTxidRestores(h, [
    { txid: 3, state: { seq: 4, digest: "d4" } },
    { txid: 5, state: { seq: 2, digest: "d2" } },
  ]);
  assert.equal(back.length, 1);
  assert.equal(back[0].kind, "order");
  const differ = checkTxidRestores(h, [
    { txid: 3, state: { seq: 4, digest: "d4" } },
    { txid: 3, state: { seq: 3, digest: "d3" } },
  ]);
  assert.equal(differ.some((v) => v.kind === "order"), true);
  assert.equal(checkTxidRestores(h, [{ txid: 2, state: { seq: 3, digest: "bad" } }])[0].kind, "phantom");
});

Deno.test("oracle: timestamp restores — begun before the target, no older than what was acknowledged", () => {
  const h = history(); // seq s logged at 1000 + 10 s
  const base = { ackedTxid: 0, ackedState: null };
  // seq 3 was logged at 1030; its transaction began after seq 2 was logged (1020). Target 1025: possible.
  assert.deepEqual(
    checkTimestampRestore(h, { ...base, target: 1025, txid: 4, state: { seq: 3, digest: "d3" } }),
    [],
  );
  // Target 1020: seq 3's transaction began at 1020 at the earliest, not before the target.
  assert.equal(
    checkTimestampRestore(h, { ...base, target: 1020, txid: 4, state: { seq: 3, digest: "d3" } })[0].kind,
    "phantom",
  );
  // Older than an acknowledged TXID: a loss, both by TXID and by state.
  const older = checkTimestampRestore(h, {
    target: 1045,
    txid: 2,
    state: { seq: 1, digest: "d1" },
    ackedTxid: 3,
    ackedState: { seq: 2, digest: "d2" },
  });
  assert.deepEqual(older.map((v) => v.kind), ["loss", "loss"]);
  // Nothing restored although something was acknowledged before the target.
  assert.equal(
    checkTimestampRestore(h, { target: 1045, txid: null, state: null, ackedTxid: 1, ackedState: null })[0]
      .kind,
    "loss",
  );
  assert.deepEqual(checkTimestampRestore(h, { ...base, target: 990, txid: null, state: null }), []);
});

Deno.test("oracle: acknowledgements and contiguous coverage", () => {
  const obs = [{ at: 100, txid: 1 }, { at: 200, txid: 4 }, { at: 300, txid: 9 }];
  assert.equal(ackedBefore(obs, 100), 0);
  assert.equal(ackedBefore(obs, 201), 4);
  assert.equal(ackedBefore(obs, 1000), 9);
  assert.equal(contiguousTxid([]), 0);
  assert.equal(contiguousTxid([{ minTXID: 2, maxTXID: 3 }]), 0);
  assert.equal(
    contiguousTxid([{ minTXID: 1, maxTXID: 5 }, { minTXID: 3, maxTXID: 7 }, { minTXID: 9, maxTXID: 9 }]),
    7,
  );
  assert.equal(contiguousTxid([{ minTXID: 1, maxTXID: 1 }, { minTXID: 2, maxTXID: 2 }]), 2);
  const h = history();
  assert.equal(h.committedBy(1015)?.seq, 1);
  assert.equal(h.committedBy(999), null);
  assert.equal(h.earliestCommit(0), Number.NEGATIVE_INFINITY);
  assert.equal(h.earliestCommit(3), 1020);
});

Deno.test("chaos faults: plans are reproducible from the seed; stalls only when asked", () => {
  const a = randomFaultPlan(new ChaosRng(42), { stalls: false });
  const b = randomFaultPlan(new ChaosRng(42), { stalls: false });
  assert.equal(describeFaultPlan(a), describeFaultPlan(b));
  assert.notEqual(roundSeed(1, 0), roundSeed(1, 1));
  assert.equal(roundSeed(7, 3), roundSeed(7, 3));
  for (let s = 0; s < 200; s++) {
    const p = randomFaultPlan(new ChaosRng(s), { stalls: false });
    assert.ok(p.rules.length >= 1 && p.rules.length <= 4);
    for (const r of p.rules) {
      assert.ok(!STALL_FAULTS.includes(r.kind), `seed ${s}: ${r.kind}`);
      assert.ok((r.probability ?? 1) > 0 && (r.probability ?? 1) <= 0.3);
    }
  }
  assert.equal(describeFaultPlan({ rules: [] }), "none");
});

Deno.test("chaos workload: the model replays inserts, updates and deletes; blobs are deterministic", () => {
  const m = hotModel(12);
  // k=6 deletes row 1; k=12 deletes row 7; k=4 adds 4 to row 2, k=8 adds 8 to row 4, k=12 adds 12 to row 6.
  assert.equal(m.has(1), false);
  assert.equal(m.has(7), false);
  assert.equal(m.get(2), 6);
  assert.equal(m.get(4), 12);
  assert.equal(m.get(6), 18);
  assert.equal(m.size, 10);
  assert.deepEqual(blobBytes(3, 9, 64), blobBytes(3, 9, 64));
  assert.notDeepEqual(blobBytes(3, 9, 64), blobBytes(3, 10, 64));
  // Bulk deletes keep the table bounded.
  assert.ok(hotModel(5000).size < 400);
});
