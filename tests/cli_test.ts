import assert from "node:assert/strict";
import { runInProcess } from "./support/cli.ts";
import { VERSION } from "../src/version.ts";
import { COMMANDS } from "../src/cli/commands.ts";

Deno.test("walrust --version prints the version", async () => {
  const r = await runInProcess(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `walrust ${VERSION}`);
});

Deno.test("walrust --help lists every command and the exit-code table", async () => {
  const r = await runInProcess(["--help"]);
  assert.equal(r.code, 0);
  for (const c of COMMANDS) assert.match(r.stdout, new RegExp(`\\n  ${c.name}\\s`));
  assert.match(r.stdout, /Exit codes:/);
  assert.match(r.stdout, /130\s+interrupted/);
});

Deno.test("every command has its own --help with a Usage line", async () => {
  for (const c of COMMANDS) {
    const r = await runInProcess([c.name, "--help"]);
    assert.equal(r.code, 0, c.name);
    assert.match(r.stdout, new RegExp(`Usage: walrust ${c.name}`), c.name);
  }
});

Deno.test("each registry entry loads the command of its name, and names are unique", async () => {
  const names = new Set<string>();
  for (const entry of COMMANDS) {
    const command = await entry.load();
    assert.equal(command.name, entry.name);
    assert.ok(entry.summary.length > 0 && !entry.summary.includes("\n"), entry.name);
    assert.ok(!names.has(entry.name), `duplicate ${entry.name}`);
    names.add(entry.name);
  }
});

Deno.test("an unknown command is a usage error (exit 2) with one line", async () => {
  const r = await runInProcess(["frobnicate"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
});
