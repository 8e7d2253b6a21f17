#!/usr/bin/env bash
# Installs what walrust's tasks need, from the npm registry only, when it is missing:
#   .tools/   pinned Deno 2.9.6, s3rver (S3 test server), Litestream v0.3.13 (test peer), playwright-core
#   node_modules/ the npm packages deno.json imports, checked against the committed deno.lock
# Source it (`. scripts/setup.sh`) to get `deno` on PATH, or run it once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="2.9.6"
stamp="$root/.tools/node_modules/.walrust-stamp"
lock_sum="$(cksum "$root/.tools/package-lock.json" | cut -d' ' -f1)"
if [ ! -x "$root/.tools/node_modules/.bin/deno" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  echo "setup: installing pinned tools into .tools/ (deno $want, s3rver, litestream, playwright-core)" >&2
  # Not `npm ci`: deno's optional per-platform packages exist in the registry only for other versions,
  # so the lock cannot list them and `npm ci` refuses; `npm install` follows the lock for everything else.
  npm_log="$(mktemp)"
  if ! npm install --prefix "$root/.tools" --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1; then
    cat "$npm_log" >&2
    rm -f "$npm_log"
    echo "setup: npm install into .tools/ failed (is the npm registry reachable? is NODE_EXTRA_CA_CERTS set?)" >&2
    exit 1
  fi
  rm -f "$npm_log"
  echo "$lock_sum" >"$stamp"
fi
export PATH="$root/.tools/node_modules/.bin:$PATH"
if ! deno --version 2>/dev/null | grep -q "^deno $want "; then
  echo "setup: .tools/node_modules/.bin/deno is not Deno $want; remove .tools/node_modules and run again" >&2
  exit 1
fi
(cd "$root" && deno install --frozen --quiet >&2)
