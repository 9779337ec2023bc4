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
# Line tables only (-g1): stack traces and sanitizer reports keep file:line, and the build takes
# about half the time of full debug information (-g), most of it spent on the tests' code.
# Sanitizer builds use -O1, as the sanitizers' documentation suggests: the instrumented code
# compiles much faster (ASan+UBSan: 66 s instead of 111 s for src/http/watch_stream.cc) and
# reports stay exact.
opt=-O2
if [ -n "${SANITIZE:-}" ]; then opt=-O1; fi
cmake -S . -B "$build" -DSYNCCONFIG_SANITIZE="${SANITIZE:-}" -DSYNCCONFIG_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt -g1 -DNDEBUG"
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j2 --timeout 600 "$@"
