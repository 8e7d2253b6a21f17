#!/usr/bin/env bash
# The one test command: installs everything (Node and npm are the only prerequisites), runs the format,
# lint and type checks and every test, and ends with a line "N passed, N failed" for CI.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
# The dashboard test drives a real browser: install Debian's chromium when we can (root + apt-get);
# otherwise that test reports itself skipped by name.
if [ ! -x /usr/bin/chromium ] && [ -z "${WALRUST_NO_BROWSER:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test: installing chromium for the dashboard browser test (set WALRUST_NO_BROWSER=1 to skip)" >&2
  (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium) \
    >/dev/null 2>&1 || echo "test: chromium install failed; the browser test will be skipped" >&2
fi
check_failed=0
if ! deno task check; then
  echo "test: deno task check failed (formatting, lint or types)" >&2
  check_failed=1
fi
log="$(mktemp)"
deno test --allow-all --frozen src/ tests/ "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| ' | tail -n 1)"
plain="$(sed 's/\x1b\[[0-9;]*m//g' "$log")"
skipped_names="$(echo "$plain" | grep -E ' \.\.\. ignored' | sed -E 's/ \.\.\. ignored.*//')"
rm -f "$log"
if [ -n "$skipped_names" ]; then
  echo "Skipped tests:"
  echo "$skipped_names" | sed 's/^/  - /'
fi
passed="$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')"
failed="$(echo "$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')"
ignored="$(echo "$summary" | sed -nE 's/.* ([0-9]+) ignored.*/\1/p')"
passed=${passed:-0}
failed=${failed:-0}
if [ "$check_failed" -ne 0 ]; then failed=$((failed + 1)); fi
if [ -z "$summary" ] && [ "$rc" -ne 0 ]; then failed=$((failed + 1)); fi
if [ -n "$ignored" ] && [ "$ignored" != "0" ]; then
  echo "$passed passed, $failed failed, $ignored skipped"
else
  echo "$passed passed, $failed failed"
fi
if [ "$rc" -ne 0 ] || [ "$check_failed" -ne 0 ]; then exit 1; fi
exit 0
