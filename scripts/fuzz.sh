#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan+UBSan) in ./build-fuzz and runs each for a
# while from its seed corpus (fuzz/corpus/<target>/). Fails on any crash, leak, timeout or
# out-of-memory; the offending input is left in build-fuzz/artifacts/ (make it a regression test:
# see fuzz/README.md).
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh payload_fuzzer   one target, longer
# New inputs found go to build-fuzz/corpus/<target>/, never into the repository's corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
seconds="${FUZZ_SECONDS:-20}"
build=build-fuzz
targets=("$@")
((${#targets[@]})) || targets=(payload_fuzzer service_config_fuzzer http_request_fuzzer validation_fuzzer)

start=$(date +%s)
CC=clang CXX=clang++ cmake -S . -B "$build" -DSYNCCONFIG_FUZZ=ON -DSYNCCONFIG_BUILD_TESTS=OFF \
  -DSYNCCONFIG_BUILD_BENCH=OFF -DSYNCCONFIG_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
echo "fuzz: built in $(($(date +%s) - start)) s"

mkdir -p "$build/artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  seeds=(fuzz/corpus/"$t")
  [ -d fuzz/regressions/"$t" ] && seeds+=(fuzz/regressions/"$t")
  log="$build/$t.log"
  rm -f "$build/artifacts/$t-"*
  # The first directory receives new inputs; the others are read only.
  if "$build/fuzz/$t" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1; then
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "fuzz: $t: ok, ${execs:-?} runs in ${seconds} s"
  else
    echo "fuzz: $t: FAILED (log: $log)"
    grep -m1 'INFO: Seed:' "$log" || true
    tail -n 40 "$log"
    # CI keeps only this output: print the failing input itself, so it can be replayed anywhere
    # (base64 -d >input; build-fuzz/fuzz/$t input).
    for a in "$build/artifacts/$t-"*; do
      [ -f "$a" ] || continue
      echo "fuzz: input $(basename "$a") ($(stat -c %s "$a") bytes), base64:"
      head -c 65536 "$a" | base64
    done
    failed+=("$t")
  fi
done
echo "fuzz: total $(($(date +%s) - start)) s"
if ((${#failed[@]})); then
  echo "fuzz: failing targets: ${failed[*]}; inputs in $build/artifacts/"
  exit 1
fi
