#!/usr/bin/env bash
# Builds the benchmarks and runs both drivers, each against its own embedded PostgreSQL, then
# prints one table of every figure next to its raw baseline and target. Results: BENCHMARKS.md.
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
#                                        scaling, startup, memory, fanout, throughput, catchup)
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
cmake --build "$build" -j"$(nproc)" --target syncconfig_bench syncconfig_latency
built=$(date +%s)

latency_args=()
bench_args=(--benchmark_color=false)
if [ -n "$smoke" ]; then
  latency_args+=(--smoke)
  bench_args+=(--smoke)
fi
if [ -n "${BENCH_SAMPLES:-}" ]; then latency_args+=(--samples "$BENCH_SAMPLES"); fi
if [ -n "${BENCH_FSYNC:-}" ]; then latency_args+=(--fsync); fi
if [ -n "${BENCH_ONLY:-}" ]; then latency_args+=(--only "$BENCH_ONLY"); fi
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
  echo "== syncconfig_bench ${bench_args[*]}"
  "$build/bench/syncconfig_bench" "${bench_args[@]}" --rows-out "$rows"
  echo
  echo "== syncconfig_latency ${latency_args[*]}"
  "$build/bench/syncconfig_latency" "${latency_args[@]}" --rows-from "$rows"
  echo
  echo "== load after: $(uptime)"
  echo "== total: $(($(date +%s) - started)) s (build $((built - started)) s)"
} 2>&1 | tee "$build/bench-results.txt"
