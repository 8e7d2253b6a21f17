import assert from "node:assert/strict";
import { expandGlob, globSegmentToRegExp, hasGlob } from "./glob.ts";

Deno.test("glob: hasGlob recognises *, ? and [...] only", () => {
  assert.equal(hasGlob("/data/*.db"), true);
  assert.equal(hasGlob("/data/app?.db"), true);
  assert.equal(hasGlob("/data/app[12].db"), true);
  assert.equal(hasGlob("/data/app.db"), false);
  assert.equal(hasGlob("/data/[unclosed.db"), false);
});

Deno.test("glob: one component compiles to an anchored expression", () => {
  const m = (pat: string, name: string) => globSegmentToRegExp(pat).test(name);
  assert.equal(m("*.db", "app.db"), true);
  assert.equal(m("*.db", "app.db-wal"), false);
  assert.equal(m("app?.db", "app1.db"), true);
  assert.equal(m("app?.db", "app12.db"), false);
  assert.equal(m("t[0-9].db", "t7.db"), true);
  assert.equal(m("t[0-9].db", "tx.db"), false);
  assert.equal(m("t[!0-9].db", "tx.db"), true);
  assert.equal(m("t[^0-9].db", "t1.db"), false);
  assert.equal(m("a.b", "axb"), false, "a dot is literal");
  assert.equal(m("(x)+", "(x)+"), true, "regex characters are literal");
  assert.equal(m("[oops", "[oops"), true, "an unclosed bracket is literal");
});

Deno.test("glob: expands files (sorted), skipping WAL/SHM/journal, hidden files and directories", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/data/sub.db`, { recursive: true });
    await Deno.mkdir(`${dir}/t1`);
    await Deno.mkdir(`${dir}/t2`);
    for (
      const f of [
        "data/b.db",
        "data/a.db",
        "data/a.db-wal",
        "data/a.db-shm",
        "data/c.db-journal",
        "data/.hidden.db",
        "data/notes.txt",
        "t1/x.db",
        "t2/x.db",
      ]
    ) await Deno.writeTextFile(`${dir}/${f}`, "");
    assert.deepEqual(await expandGlob(`${dir}/data/*.db`), [`${dir}/data/a.db`, `${dir}/data/b.db`]);
    assert.deepEqual(await expandGlob(`${dir}/data/*`), [
      `${dir}/data/a.db`,
      `${dir}/data/b.db`,
      `${dir}/data/notes.txt`,
    ]);
    assert.deepEqual(await expandGlob(`${dir}/data/.*.db`), [`${dir}/data/.hidden.db`]);
    assert.deepEqual(await expandGlob(`${dir}/data/[ab].db`), [`${dir}/data/a.db`, `${dir}/data/b.db`]);
    assert.deepEqual(await expandGlob(`${dir}/t?/x.db`), [`${dir}/t1/x.db`, `${dir}/t2/x.db`]);
    assert.deepEqual(await expandGlob(`${dir}/nothing/*.db`), []);
    assert.deepEqual(await expandGlob(`${dir}/data/*.sqlite`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
