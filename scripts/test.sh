#!/usr/bin/env bash
# Builds everything and runs the whole test suite against throwaway PostgreSQL clusters.
#   scripts/test.sh                  normal build in ./build
#   SANITIZE=thread scripts/test.sh  ThreadSanitizer build in ./build-thread
#   SANITIZE=address scripts/test.sh AddressSanitizer + UBSan build in ./build-address
# Extra arguments go to ctest (e.g. -R sync_test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build="build${SANITIZE:+-$SANITIZE}"
cmake -S . -B "$build" -DSYNCCONFIG_SANITIZE="${SANITIZE:-}" -DSYNCCONFIG_BUILD_BENCH=OFF
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600 "$@"
