#!/usr/bin/env bash
# Compares, with pgbench, what Store::set sends (the T_sc_put function) against the same work as
# one prepared statement and against a raw upsert + notify (BENCHMARKS.md, "A single statement
# instead of T_sc_put"). Needs a database where `syncconfig set --dsn DSN --table bench_t k 1`
# has run, and pgbench on PATH (/usr/lib/postgresql/15/bin). Writes nothing outside bench_t*
# and raw_t.
# usage: bench/pgbench/run.sh DSN [CLIENTS] [ROUNDS] [SECONDS]
set -euo pipefail
dsn=$1 clients=${2:-1} rounds=${3:-3} secs=${4:-4}
cd "$(dirname "$0")"
psql "$dsn" -q -v ON_ERROR_STOP=1 -o /dev/null -c "SET client_min_messages = warning" -f prepare.sql
for r in $(seq 1 "$rounds"); do
  for f in a_fn b_cte c_one raw; do
    tps=$(pgbench -n -M prepared -c "$clients" -j "$clients" -T "$secs" -f "$f.sql" "$dsn" |
          awk '/^tps/ {print $3}')
    awk -v f="$f" -v r="$r" -v t="$tps" -v c="$clients" \
      'BEGIN {printf "round %d %-6s %8.0f tps %7.1f us/call\n", r, f, t, 1e6 * c / t}'
  done
done
