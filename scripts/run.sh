#!/usr/bin/env bash
# Builds syncconfig and runs the service: `syncconfig serve` with its HTTP API on
# 127.0.0.1:8080. With no --dsn/--config (or SYNCCONFIG_DSN) it starts an embedded PostgreSQL in
# ./.syncconfig, created on first run and reused afterwards. Arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DSYNCCONFIG_BUILD_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target syncconfig_cli
exec build/src/cli/syncconfig serve "$@"
