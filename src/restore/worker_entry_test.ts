import assert from "node:assert/strict";
import { decodeWorkerEntry, decodeWorkerFile } from "./worker_entry.ts";

Deno.test("decode Worker entry: worker.ts beside parallel.ts from source and compiled executables, the bundle itself otherwise", () => {
  assert.equal(
    decodeWorkerEntry("file:///app/src/restore/parallel.ts"),
    "file:///app/src/restore/worker.ts",
  );
  assert.equal(
    decodeWorkerEntry("file:///tmp/deno-compile-walrust/src/restore/parallel.ts"),
    "file:///tmp/deno-compile-walrust/src/restore/worker.ts",
  );
  assert.equal(decodeWorkerEntry("file:///opt/walrust/walrust.js"), "file:///opt/walrust/walrust.js");
});

Deno.test("decode Worker file: the path to check for read permission, none for embedded modules", () => {
  assert.equal(decodeWorkerFile("file:///opt/wal%20rust/walrust.js"), "/opt/wal rust/walrust.js");
  assert.equal(decodeWorkerFile("file:///app/src/restore/worker.ts"), "/app/src/restore/worker.ts");
  assert.equal(decodeWorkerFile("file:///tmp/deno-compile-walrust/src/restore/worker.ts"), null);
  assert.equal(decodeWorkerFile("https://example.com/worker.ts"), null);
});
