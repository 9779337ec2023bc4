#!/usr/bin/env bash
# Builds the benchmarks (Release, in ./build-bench) and runs both drivers against an embedded
# PostgreSQL. About 2-3 minutes on a 2-core machine (most of it the build). Results: BENCHMARKS.md.
#   scripts/bench.sh                     everything
#   BENCH_SAMPLES=500 scripts/bench.sh   fewer samples per latency figure (default 2000)
#   BENCH_FSYNC=1 scripts/bench.sh       run the server with fsync=on (default: off, as the
#                                        embedded temporary cluster does)
# The output is also saved to build-bench/bench-results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSYNCCONFIG_SANITIZE= \
  -DSYNCCONFIG_BUILD_BENCH=ON -DSYNCCONFIG_BUILD_TESTS=OFF -DSYNCCONFIG_BUILD_EXAMPLES=OFF
if [ ! -d "$build/bench" ]; then
  echo "Google Benchmark was not found by CMake (libbenchmark-dev); cannot build the benchmarks" >&2
  exit 1
fi
cmake --build "$build" -j"$(nproc)" --target syncconfig_bench syncconfig_latency

latency_args=(--samples "${BENCH_SAMPLES:-2000}")
if [ -n "${BENCH_FSYNC:-}" ]; then latency_args+=(--fsync); fi

{
  echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), \
$(free -h | awk '/^Mem:/ {print $2}') RAM"
  echo "== load: $(uptime)"
  echo
  echo "== syncconfig_latency ${latency_args[*]}"
  "$build/bench/syncconfig_latency" "${latency_args[@]}"
  echo
  echo "== syncconfig_bench"
  "$build/bench/syncconfig_bench" --benchmark_color=false
  echo
  echo "== load after: $(uptime)"
} 2>&1 | tee "$build/bench-results.txt"
