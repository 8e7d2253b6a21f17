import assert from "node:assert/strict";
import {
  CorruptionError,
  ExitCode,
  exitCodeOf,
  LocalIoError,
  localIoError,
  messageOf,
  NotFoundError,
  type WalrustError,
} from "./errors.ts";

Deno.test("exit codes: typed errors carry their category's code; anything else is internal (1)", () => {
  assert.equal(exitCodeOf(new CorruptionError("bad", { object: "a.ltx", offset: 7 })), ExitCode.CORRUPTION);
  assert.equal(exitCodeOf(new Error("bug")), ExitCode.INTERNAL);
  assert.equal(exitCodeOf("thrown string"), ExitCode.INTERNAL);
});

Deno.test("CorruptionError names the object and the byte offset", () => {
  assert.equal(
    new CorruptionError("bad magic", { object: "x.ltx", offset: 4 }).message,
    "x.ltx at byte 4: bad magic",
  );
});

Deno.test("messageOf normalises strings thrown by wasm modules", () => {
  assert.equal(messageOf("expected another byte, found none"), "expected another byte, found none");
});

Deno.test("localIoError maps file-system failures to typed errors naming the path", () => {
  const cases: [unknown, new (...a: never[]) => WalrustError, RegExp][] = [
    [new Deno.errors.NotFound("x"), NotFoundError, /no such file/],
    [new Deno.errors.PermissionDenied("x"), LocalIoError, /permission denied/],
    [new Deno.errors.NotCapable("x"), LocalIoError, /--allow-read\/--allow-write/],
    [
      Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" }),
      LocalIoError,
      /no space/,
    ],
    [
      Object.assign(new Error("Read-only file system (os error 30)"), { code: "EROFS" }),
      LocalIoError,
      /read-only/,
    ],
  ];
  for (const [err, cls, re] of cases) {
    const mapped = localIoError(err, "/data/x.db", "write");
    assert.ok(mapped instanceof cls, `${err} -> ${mapped}`);
    assert.match((mapped as Error).message, /\/data\/x\.db/);
    assert.match((mapped as Error).message, re);
  }
  const other = new Error("something else");
  assert.equal(localIoError(other, "/p", "write"), other);
});
