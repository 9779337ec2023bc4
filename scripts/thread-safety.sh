#!/usr/bin/env bash
# Clang's thread-safety analysis over src/ (the library, the HTTP tier, the program): every
# SC_GUARDED_BY / SC_REQUIRES / SC_EXCLUDES there (util/thread_annotations.h) is checked, and a
# warning fails. Each file is compiled with -fsyntax-only, with the flags CMake gives it
# (compile_commands.json of a clang configuration in ./build-tsa), so nothing is linked.
#   scripts/thread-safety.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=build-tsa
start=$(date +%s)
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DSYNCCONFIG_BUILD_TESTS=OFF -DSYNCCONFIG_BUILD_BENCH=OFF -DSYNCCONFIG_BUILD_EXAMPLES=OFF \
  >/dev/null
python3 - "$build/compile_commands.json" "$PWD/src/" "$(nproc)" <<'PY'
import concurrent.futures, json, shlex, subprocess, sys
commands, src, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
units = [u for u in json.load(open(commands)) if u["file"].startswith(src)]
def check(unit):
    args = shlex.split(unit["command"])
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-c"):
            skip = a == "-o"
        else:
            out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety"]
    r = subprocess.run(out, cwd=unit["directory"], capture_output=True, text=True)
    return unit["file"], r.returncode, r.stderr
failed = 0
with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    for file, code, err in pool.map(check, units):
        if code != 0:
            failed += 1
            print(f"thread-safety: {file}:\n{err}", end="")
print(f"thread-safety: {len(units)} files of src/ checked, {failed} failed")
sys.exit(1 if failed else 0)
PY
echo "thread-safety: done in $(($(date +%s) - start)) s"
