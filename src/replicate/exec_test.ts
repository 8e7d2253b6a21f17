import assert from "node:assert/strict";
import fc from "fast-check";
import { UsageError } from "../errors.ts";
import { exitStatusOf, parseCommand, startChild } from "./exec.ts";

Deno.test("parseCommand: words, quotes and escapes are split like a shell's simple command", () => {
  assert.deepEqual(parseCommand("node server.js"), { kind: "argv", argv: ["node", "server.js"] });
  assert.deepEqual(parseCommand("  node\t  server.js  "), { kind: "argv", argv: ["node", "server.js"] });
  assert.deepEqual(parseCommand(`app --name 'a b' "c d" e\\ f`), {
    kind: "argv",
    argv: ["app", "--name", "a b", "c d", "e f"],
  });
  assert.deepEqual(parseCommand(`echo 'it'\\''s' "say \\"hi\\" \\\\ \\n"`), {
    kind: "argv",
    argv: ["echo", "it's", 'say "hi" \\ \\n'],
  });
  assert.deepEqual(parseCommand(`a '' ""`), { kind: "argv", argv: ["a", "", ""] });
  assert.deepEqual(parseCommand(`a'b'"c"d`), { kind: "argv", argv: ["abcd"] });
  assert.deepEqual(parseCommand("app --opt=x a#b c~d"), {
    kind: "argv",
    argv: ["app", "--opt=x", "a#b", "c~d"],
  });
  assert.deepEqual(parseCommand("a 'x|y;$z*'"), { kind: "argv", argv: ["a", "x|y;$z*"] });
  assert.deepEqual(parseCommand("a \\$HOME \\|"), { kind: "argv", argv: ["a", "$HOME", "|"] });
});

Deno.test("parseCommand: shell syntax is run with sh -c, naming the reason", () => {
  for (
    const [cmd, reason] of [
      ["a | b", "'|'"],
      ["a && b", "'&'"],
      ["a; b", "';'"],
      ["a > log", "'>'"],
      ["a < in", "'<'"],
      ["(a)", "'('"],
      ["echo $HOME", "'$'"],
      ['echo "$HOME"', "'$' inside double quotes is expanded by a shell"],
      ["echo `date`", "'`'"],
      ["ls *.db", "'*'"],
      ["ls ?.db", "'?'"],
      ["ls [ab].db", "'['"],
      ["cat ~/x", "a word starting with '~'"],
      ["a # comment", "a word starting with '#'"],
      ["PORT=8080 node server.js", "a VAR=value assignment"],
      ["a\nb", "a newline"],
    ]
  ) {
    const p = parseCommand(cmd);
    assert.equal(p.kind, "shell", cmd);
    assert.equal(p.kind === "shell" && p.reason, reason, cmd);
    assert.equal(p.kind === "shell" && p.script, cmd);
  }
});

Deno.test("parseCommand: empty commands and unterminated quotes are usage errors", () => {
  for (const cmd of ["", "   ", "a 'b", 'a "b', "a \\"]) {
    assert.throws(() => parseCommand(cmd), UsageError, JSON.stringify(cmd));
  }
});

Deno.test("parseCommand: property — any argument vector quoted the POSIX way parses back to itself", () => {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const dq = (s: string) => `"${s.replace(/["\\`$]/g, (m) => "\\" + m)}"`;
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: "binary", maxLength: 12 }), { minLength: 1, maxLength: 6 }),
      fc.boolean(),
      (argv, double) => {
        const line = argv.map(double ? dq : quote).join(" ");
        const p = parseCommand(line);
        // `$` and backquotes inside double quotes are escaped, so no shell is needed in either form.
        assert.deepEqual(p, { kind: "argv", argv });
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("exitStatusOf: the code, or 128 + the signal number", () => {
  assert.equal(exitStatusOf({ success: true, code: 0, signal: null }), 0);
  assert.equal(exitStatusOf({ success: false, code: 3, signal: null }), 3);
  assert.equal(exitStatusOf({ success: false, code: 137, signal: "SIGKILL" }), 137);
  assert.equal(exitStatusOf({ success: false, code: 0, signal: "SIGTERM" }), 143);
  assert.equal(exitStatusOf({ success: false, code: 0, signal: "SIGINT" }), 130);
});

Deno.test("startChild: runs the program directly with the extra environment and reports its exit code", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/out`;
    const h = startChild(`sh -c 'echo "$WALRUST_EXEC_TEST $1" > "$0"; exit 3' ${out} 'two words'`, {
      WALRUST_EXEC_TEST: "hello",
    });
    assert.deepEqual(h.argv.slice(0, 2), ["sh", "-c"]);
    assert.ok(h.pid > 0);
    assert.equal(await h.status, 3);
    assert.equal(h.exited, true);
    assert.equal(await Deno.readTextFile(out), "hello two words\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startChild: shell syntax runs through sh -c", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const h = startChild(`echo piped | tr a-z A-Z > ${dir}/out && exit 4`);
    assert.deepEqual(h.argv.slice(0, 2), ["sh", "-c"]);
    assert.equal(await h.status, 4);
    assert.equal(await Deno.readTextFile(`${dir}/out`), "PIPED\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const isFile = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Waits until `path` exists (10 s at most). */
async function waitFor(path: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await isFile(path))) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts a shell child that traps `sig`, writes a marker and exits 0; resolves once its trap is installed. */
async function trapping(dir: string, sig: string): Promise<ReturnType<typeof startChild>> {
  const h = startChild(
    `sh -c 'trap "echo got-${sig} > ${dir}/marker; exit 0" ${sig}; touch ${dir}/ready; while :; do sleep 0.05; done'`,
  );
  try {
    await waitFor(`${dir}/ready`);
  } catch (err) {
    h.signal("SIGKILL");
    throw err;
  }
  return h;
}

Deno.test("startChild: signal() delivers SIGTERM, SIGINT and SIGHUP to the child, which can handle them", async () => {
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    const dir = await Deno.makeTempDir();
    let h: ReturnType<typeof startChild> | undefined;
    try {
      h = await trapping(dir, sig.slice(3));
      h.signal(sig);
      assert.equal(await h.status, 0, sig);
      assert.equal(await Deno.readTextFile(`${dir}/marker`), `got-${sig.slice(3)}\n`);
      h.signal("SIGTERM"); // after exit: a no-op, not an error
    } finally {
      if (h && !h.exited) h.signal("SIGKILL");
      await h?.status;
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("startChild: a child killed by a signal exits 128 + n; signals reach the whole process group", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const h = startChild("sleep 30");
    h.signal("SIGKILL");
    assert.equal(await h.status, 137);
    // Under sh -c, a background subshell gets the signal too: it goes to the process group, not the shell alone.
    const p = startChild(
      `(trap "touch ${dir}/sub; exit 0" TERM; touch ${dir}/ready; while :; do sleep 0.05; done) & wait`,
    );
    assert.deepEqual(p.argv.slice(0, 2), ["sh", "-c"]);
    await waitFor(`${dir}/ready`);
    p.signal("SIGTERM");
    assert.equal(await p.status, 143, "the shell itself was terminated");
    await waitFor(`${dir}/sub`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startChild: stop() escalates to SIGKILL when the child ignores SIGTERM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const h = startChild(
      `sh -c 'trap "" TERM; touch ${dir}/ready; while :; do sleep 0.05; done'`,
    );
    await waitFor(`${dir}/ready`);
    assert.equal(await h.stop(300), 137);
    const quick = startChild("sleep 30");
    assert.equal(await quick.stop(5_000), 143);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startChild: a missing program is a usage error naming it", () => {
  assert.throws(
    () => startChild("walrust-no-such-program-xyz --flag"),
    (err: unknown) => err instanceof UsageError && /walrust-no-such-program-xyz.*not found/.test(err.message),
  );
});

Deno.test("startChild: a file that is not executable is a usage error saying so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/app.sh`, "#!/bin/sh\nexit 0\n", { mode: 0o644 });
    assert.throws(
      () => startChild(`${dir}/app.sh`),
      (err: unknown) =>
        err instanceof UsageError && /permission denied; make the file executable/.test(err.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
