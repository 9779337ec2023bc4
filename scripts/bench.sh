#!/usr/bin/env bash
# Builds the benchmarks and runs the drivers, each against its own embedded PostgreSQL:
# syncconfig_bench and syncconfig_latency print one table of every library figure next to its raw
# baseline and target; syncconfig_remote (RemoteStore through `syncconfig serve` and relays, next
# to Store) and syncconfig_watch_fanout (N /watch streams on `syncconfig serve`, next to a minimal
# fan-out) print their own. Results: BENCHMARKS.md.
#   scripts/bench.sh                     everything (Release, in ./build-bench): about 5 minutes
#                                        on a 2-core machine, build included; must stay < 10
#   BENCH_SMOKE=1 scripts/bench.sh       smoke run (also: scripts/bench.sh --smoke): every figure
#                                        at tiny sizes with a few samples, in ./build (reusing the
#                                        library scripts/test.sh compiled there); < 1 minute. Fails
#                                        only on errors, never on timings (CI runs it)
#   BENCH_SAMPLES=500 scripts/bench.sh   fewer samples per latency figure (default 2000)
#   BENCH_FSYNC=1 scripts/bench.sh       run the server with fsync=on (default: off, as the
#                                        embedded temporary cluster does)
#   BENCH_ONLY=fanout scripts/bench.sh   one figure of syncconfig_latency (set, propagation,
#                                        scaling, startup, memory, fanout, throughput, catchup,
#                                        txn, setif),
#                                        or BENCH_ONLY=watch: syncconfig_watch_fanout alone, or
#                                        BENCH_ONLY=remote: syncconfig_remote alone (only the
#                                        programs that run are built)
#   BENCH_SQL_PROFILE=1 scripts/bench.sh  syncconfig_latency with --sql-profile: where the server's
#                                        time goes (pg_stat_statements, wait events) for the set,
#                                        throughput, txn and setif figures; a diagnostic run
#   BENCH_WATCH_STREAMS=5 scripts/bench.sh   /watch streams for syncconfig_watch_fanout (default
#                                        10000; 100 in a smoke run)
# The output is also saved to <build dir>/bench-results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke="${BENCH_SMOKE:-}"
if [ "${1:-}" = "--smoke" ]; then smoke=1; fi
scripts/install-deps.sh

started=$(date +%s)
if [ -n "$smoke" ]; then
  # Only switches the benchmarks on; every other setting of ./build stays as scripts/test.sh made
  # it (which passes SYNCCONFIG_BUILD_BENCH=OFF again on its next run).
  build=build
  cmake -S . -B "$build" -DSYNCCONFIG_BUILD_BENCH=ON >/dev/null
else
  build=build-bench
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSYNCCONFIG_SANITIZE= \
    -DSYNCCONFIG_BUILD_BENCH=ON -DSYNCCONFIG_BUILD_TESTS=OFF -DSYNCCONFIG_BUILD_EXAMPLES=OFF
fi
if [ ! -d "$build/bench" ]; then
  echo "Google Benchmark was not found by CMake (libbenchmark-dev); cannot build the benchmarks" >&2
  exit 1
fi
run_library=1
run_remote=1
run_watch=1
if [ "${BENCH_ONLY:-}" = watch ]; then
  run_library= run_remote=
elif [ "${BENCH_ONLY:-}" = remote ]; then
  run_library= run_watch=
elif [ -n "${BENCH_ONLY:-}" ]; then
  run_remote= run_watch=
fi
targets=()
if [ -n "$run_library" ]; then targets+=(syncconfig_bench syncconfig_latency); fi
if [ -n "$run_remote" ]; then targets+=(syncconfig_remote); fi
if [ -n "$run_watch" ]; then targets+=(syncconfig_watch_fanout); fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
built=$(date +%s)

latency_args=()
bench_args=(--benchmark_color=false)
if [ -n "$smoke" ]; then
  latency_args+=(--smoke)
  bench_args+=(--smoke)
fi
if [ -n "${BENCH_SAMPLES:-}" ]; then latency_args+=(--samples "$BENCH_SAMPLES"); fi
if [ -n "${BENCH_SQL_PROFILE:-}" ]; then latency_args+=(--sql-profile); fi
watch_args=()
remote_args=()
if [ -n "${BENCH_FSYNC:-}" ]; then
  latency_args+=(--fsync)
  watch_args+=(--fsync)
  remote_args+=(--fsync)
fi
if [ -n "$smoke" ]; then
  watch_args+=(--smoke)
  remote_args+=(--smoke)
fi
if [ -n "${BENCH_SAMPLES:-}" ]; then remote_args+=(--samples "$BENCH_SAMPLES"); fi
if [ -n "${BENCH_WATCH_STREAMS:-}" ]; then watch_args+=(--streams "$BENCH_WATCH_STREAMS"); fi
if [ -n "$run_library" ] && [ -n "${BENCH_ONLY:-}" ]; then latency_args+=(--only "$BENCH_ONLY"); fi
# The get_int rows pass to syncconfig_latency, which prints the final table.
rows="$build/bench-rows.tsv"
rm -f "$rows"

{
  echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC')${smoke:+ SMOKE RUN: tiny sizes, the numbers mean nothing}"
  echo "== commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (plus uncommitted changes)')"
  echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), \
$(free -h | awk '/^Mem:/ {print $2}') RAM"
  echo "== load: $(uptime)"
  echo "== build: $((built - started)) s"
  echo
  if [ -n "$run_library" ]; then
    echo "== syncconfig_bench ${bench_args[*]}"
    "$build/bench/syncconfig_bench" "${bench_args[@]}" --rows-out "$rows"
    echo
    echo "== syncconfig_latency ${latency_args[*]}"
    "$build/bench/syncconfig_latency" "${latency_args[@]}" --rows-from "$rows"
    echo
  fi
  if [ -n "$run_remote" ]; then
    echo "== syncconfig_remote ${remote_args[*]}"
    "$build/bench/syncconfig_remote" "${remote_args[@]}"
    echo
  fi
  # Last: until serve takes 100 streams (today's caps /watch at 8), its smoke run fails here, after
  # the library's figures have been printed.
  if [ -n "$run_watch" ]; then
    echo "== syncconfig_watch_fanout ${watch_args[*]}"
    "$build/bench/syncconfig_watch_fanout" "${watch_args[@]}"
    echo
  fi
  echo "== load after: $(uptime)"
  echo "== total: $(($(date +%s) - started)) s (build $((built - started)) s)"
} 2>&1 | tee "$build/bench-results.txt"
