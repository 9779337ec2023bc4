#!/usr/bin/env bash
# A writer lock taken at COMMIT (issue 12): prototypes measured against today's T_sc_put and the
# raw upsert + notify, with pgbench, 8 clients by default (BENCHMARKS.md, "A writer lock at
# COMMIT, prototyped"). Needs a database where `syncconfig set --dsn DSN --table bench_t k 1`
# has run (for T_sc_put, the signing key and the lease keys), and pgbench on PATH
# (/usr/lib/postgresql/15/bin). Creates and replaces the cl_* objects of setup.sql.
# usage: bench/pgbench/commit_lock/run.sh DSN [CLIENTS] [ROUNDS] [SECONDS]
set -euo pipefail
dsn=$1 clients=${2:-8} rounds=${3:-3} secs=${4:-5}
here=$(cd "$(dirname "$0")" && pwd)
psql "$dsn" -q -v ON_ERROR_STOP=1 -o /dev/null -c "SET client_min_messages = warning" -f "$here/setup.sql"
psql "$dsn" -q -v ON_ERROR_STOP=1 -o /dev/null -c "SET client_min_messages = warning" -f "$here/../prepare.sql"
for r in $(seq 1 "$rounds"); do
  for f in "$here/../raw.sql" "$here/../a_fn.sql" "$here/lock_only.sql" "$here/restamp.sql" \
           "$here/revmap.sql" "$here/nolock.sql"; do
    tps=$(pgbench -n -M prepared -c "$clients" -j "$clients" -T "$secs" -f "$f" "$dsn" |
          awk '/^tps/ {print $3}')
    awk -v f="$(basename "$f" .sql)" -v r="$r" -v t="$tps" -v c="$clients" \
      'BEGIN {printf "round %d %-10s %8.0f tps %7.1f us/call\n", r, f, t, 1e6 * c / t}'
  done
done
