#!/bin/sh
# Restore-on-boot, then replicate while the application runs: the whole life of a Fly machine (or any
# container) with one SQLite database on a volume. Used as the machine's command in examples/fly.toml.
#
#   1. walrust restore --if-db-not-exists --if-replica-exists
#        - the volume already has the database (a restart): nothing is touched;
#        - a new volume or machine: the newest backup is restored (verified, written atomically);
#        - the very first deploy (no backup yet): nothing to restore, exit 0.
#   2. First deploy only: create an empty database in WAL mode, so that there is something to replicate.
#   3. walrust watch --exec: replication starts (lease, local queue), THEN the application starts; signals
#      (SIGINT from `fly deploy`, SIGTERM, SIGHUP) are forwarded to the application; when it exits, the
#      queue is flushed to the replica and this script exits with the application's status.
#
# Settings (environment; secrets come from `fly secrets set`, see docs/fly.md):
#   WALRUST_REPLICA_URL  the replica, s3://bucket/prefix (or [replica] url in ./walrust.toml)
#   DB_PATH              database file (default /data/app.db)
#   APP_CMD              the application (default "node server.js"); quoting as in a shell, and shell syntax
#                        (pipes, $VARS, &&) makes walrust run it with sh -c
#   DB_INIT_CMD          command that creates an empty database at $DB_PATH on the first deploy
#                        (default: sqlite3 "$DB_PATH" 'PRAGMA journal_mode=WAL;')
#   METRICS_ADDR         /metrics, /health and the dashboard (default 0.0.0.0:16767 for Fly's health checks)
#   WALRUST              how to run walrust (default: walrust on PATH); word-split, so it may be a
#                        command with arguments such as "deno run <flags> /app/walrust.js"
set -eu

: "${WALRUST:=walrust}"
: "${DB_PATH:=/data/app.db}"
: "${APP_CMD:=node server.js}"
: "${METRICS_ADDR:=0.0.0.0:16767}"
# The name under the replica: the file name without its extension, as `walrust watch` names it.
DB_NAME=$(basename "$DB_PATH")
DB_NAME=${DB_NAME%.*}

# shellcheck disable=SC2086 # $WALRUST is a command line on purpose
$WALRUST restore "$DB_NAME" -o "$DB_PATH" --if-db-not-exists --if-replica-exists

if [ ! -e "$DB_PATH" ]; then
  echo "start.sh: no database and no backup yet: creating an empty $DB_PATH" >&2
  if [ -n "${DB_INIT_CMD:-}" ]; then
    sh -c "$DB_INIT_CMD"
  else
    sqlite3 "$DB_PATH" 'PRAGMA journal_mode=WAL;' >/dev/null
  fi
fi

# exec: walrust replaces this shell, so the platform's signals reach walrust (and, through it, the app).
# shellcheck disable=SC2086
exec $WALRUST watch "$DB_PATH" --metrics-addr "$METRICS_ADDR" --exec "$APP_CMD"
