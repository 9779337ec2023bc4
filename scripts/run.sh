#!/usr/bin/env bash
# Builds syncconfig and runs two instances syncing through PostgreSQL. With no DSN (argument or
# SYNCCONFIG_DSN) an embedded PostgreSQL is started in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DSYNCCONFIG_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target two_instances
exec build/examples/two_instances "$@"
