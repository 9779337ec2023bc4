#!/usr/bin/env bash
# Tests what syncconfig installs, as a user of it would see it:
#   1. a Release build, `cmake --install` into a temporary prefix;
#   2. tests/consumer built against that prefix with CMake (find_package) and with pkg-config,
#      both run (they must print "consumer ok");
#   3. `cpack -G DEB`, the package inspected (dpkg-deb), installed with apt-get, checked
#      (/usr/bin/syncconfig --help, the systemd unit, the conffile, the user, the installed CMake
#      package and pkg-config file, the sample configuration parses), then removed again.
# Needs root or sudo for step 3 (apt-get). Exits non-zero on the first failure; the package and
# the temporary directories are removed in every case.
#
# Environment: SYNCCONFIG_PKG_BUILD_DIR=DIR reuses (or creates) that build directory instead of a
# temporary one (it is kept); JOBS=N sets the build parallelism (default: nproc).
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${JOBS:-$(nproc)}"
work="$(mktemp -d /tmp/syncconfig-package-test.XXXXXX)"
build="${SYNCCONFIG_PKG_BUILD_DIR:-$work/build}"
prefix="$work/prefix"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

package_installed=0
user_existed=0
getent passwd syncconfig >/dev/null && user_existed=1

step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "package-test: FAILED: $*" >&2
  exit 1
}

cleanup() {
  local rc=$?
  if ((package_installed)); then
    step "removing the package"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get remove --purge -y -qq syncconfig >/dev/null ||
      rc=1
    # The package keeps its system user (Debian practice); remove it if this test created it.
    if ((!user_existed)) && getent passwd syncconfig >/dev/null; then
      $SUDO deluser --quiet --system syncconfig >/dev/null 2>&1 || rc=1
      if getent group syncconfig >/dev/null; then
        $SUDO delgroup --quiet --system syncconfig >/dev/null 2>&1 || rc=1
      fi
    fi
  fi
  rm -rf "$work"
  if ((rc == 0)); then echo "package-test: all checks passed"; else echo "package-test: FAILED" >&2; fi
  exit "$rc"
}
trap cleanup EXIT

if [[ "$(dpkg-query -W -f='${Status}' syncconfig 2>/dev/null)" == "install ok installed" ]]; then
  fail "a syncconfig package is already installed; remove it first (apt-get remove syncconfig)"
fi
for tool in cmake cpack pkg-config g++ dpkg-deb dpkg-shlibdeps apt-get; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

step "configure and build (Release) in $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSYNCCONFIG_BUILD_TESTS=OFF \
  -DSYNCCONFIG_BUILD_BENCH=OFF -DSYNCCONFIG_BUILD_EXAMPLES=OFF >"$work/configure.log" ||
  { cat "$work/configure.log"; fail "configure"; }
cmake --build "$build" -j "$jobs" >"$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log"; fail "build"; }

step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "cmake --install"; }
for f in bin/syncconfig lib/libsyncconfig.a lib/libsyncconfig_embedded.a \
  include/syncconfig/syncconfig.h include/syncconfig/store.h include/syncconfig/embedded_postgres.h \
  lib/pkgconfig/syncconfig-embedded.pc lib/cmake/syncconfig/syncconfigConfig.cmake \
  lib/cmake/syncconfig/syncconfigConfigVersion.cmake lib/cmake/syncconfig/syncconfigTargets.cmake \
  lib/pkgconfig/syncconfig.pc lib/systemd/system/syncconfig.service etc/syncconfig/config.yaml; do
  [ -e "$prefix/$f" ] || fail "cmake --install did not install $f"
done
"$prefix/bin/syncconfig" --help >/dev/null || fail "$prefix/bin/syncconfig --help"

# Builds tests/consumer with CMake into $1 (extra cmake arguments follow) and runs it.
consumer_cmake() {
  local dir="$1"
  shift
  cmake -S "$src/tests/consumer" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.log" 2>&1 ||
    { cat "$dir.log"; fail "configuring the consumer ($*)"; }
  cmake --build "$dir" >>"$dir.log" 2>&1 || { cat "$dir.log"; fail "building the consumer ($*)"; }
  local out exe
  for exe in consumer consumer_embedded; do
    out="$("$dir/$exe")" || fail "the CMake $exe exited with $?"
    [ "$out" = "consumer ok" ] || fail "the CMake $exe printed: $out"
    echo "cmake $exe: $out"
  done
}

# Builds tests/consumer with the pkg-config line into $1 and runs it (PKG_CONFIG_PATH as set).
consumer_pkgconfig() {
  local exe="$1"
  pkg-config --exists syncconfig || fail "pkg-config does not find syncconfig"
  # shellcheck disable=SC2046  # the flags are meant to be split
  g++ -std=c++20 "$src/tests/consumer/main.cc" $(pkg-config --cflags --libs syncconfig) \
    -o "$exe" || fail "building the consumer with pkg-config"
  local out
  out="$("$exe")" || fail "the pkg-config consumer exited with $?"
  [ "$out" = "consumer ok" ] || fail "the pkg-config consumer printed: $out"
  echo "pkg-config consumer: $out"
  pkg-config --exists syncconfig-embedded || fail "pkg-config does not find syncconfig-embedded"
  # shellcheck disable=SC2046
  g++ -std=c++20 "$src/tests/consumer/embedded.cc" $(pkg-config --cflags --libs syncconfig-embedded) \
    -o "$exe-embedded" || fail "building the embedded consumer with pkg-config"
  out="$("$exe-embedded")" || fail "the pkg-config embedded consumer exited with $?"
  [ "$out" = "consumer ok" ] || fail "the pkg-config embedded consumer printed: $out"
  echo "pkg-config consumer_embedded: $out"
}

step "consumer against the prefix: find_package(syncconfig 0.1) and pkg-config"
consumer_cmake "$work/consumer-cmake" -DCMAKE_PREFIX_PATH="$prefix"
pcdir="$(dirname "$(find "$prefix" -name syncconfig.pc -print -quit)")"
PKG_CONFIG_PATH="$pcdir" consumer_pkgconfig "$work/consumer_pc"

step "cpack -G DEB"
rm -f "$build"/syncconfig_*.deb
(cd "$build" && cpack -G DEB >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
debs=("$build"/syncconfig_*.deb)
[ -f "${debs[0]}" ] || fail "cpack made no syncconfig_*.deb"
deb="${debs[0]}"
echo "package: $deb"
dpkg-deb -I "$deb" >"$work/deb-info.txt" || fail "dpkg-deb -I"
dpkg-deb -c "$deb" >"$work/deb-contents.txt" || fail "dpkg-deb -c"
for field in "Package: syncconfig" "Depends:.*libpq5" "Depends:.*adduser" "Recommends: postgresql"; do
  grep -q "$field" "$work/deb-info.txt" || { cat "$work/deb-info.txt"; fail "control lacks $field"; }
done
for f in ./usr/bin/syncconfig ./usr/lib/systemd/system/syncconfig.service \
  ./etc/syncconfig/config.yaml ./usr/lib/libsyncconfig.a ./usr/include/syncconfig/store.h \
  ./usr/lib/cmake/syncconfig/syncconfigConfig.cmake ./usr/lib/pkgconfig/syncconfig.pc \
  ./usr/lib/libsyncconfig_embedded.a ./usr/lib/pkgconfig/syncconfig-embedded.pc; do
  grep -q " $f\$" "$work/deb-contents.txt" || fail "the package lacks $f"
done
# Listed first, then searched: `producer | grep -q` under pipefail fails whenever grep exits
# before the producer is done writing (SIGPIPE), which once failed CI with "no postinst".
control_files=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
grep -qx './conffiles' <<<"$control_files" || fail "no conffiles"
grep -qx './postinst' <<<"$control_files" || fail "no postinst"

step "apt-get install $(basename "$deb")"
# Recommends (postgresql) are not pulled in: the test must not need the network.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$deb" \
  >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install"; }
package_installed=1
[ "$(command -v syncconfig)" = /usr/bin/syncconfig ] ||
  fail "syncconfig on PATH is $(command -v syncconfig), not /usr/bin/syncconfig"
/usr/bin/syncconfig --help >"$work/help.txt" || fail "/usr/bin/syncconfig --help"
grep -q "serve" "$work/help.txt" || fail "syncconfig --help does not mention serve"
unit=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [ -f "$d/syncconfig.service" ] && unit="$d/syncconfig.service" && break
done
[ -n "$unit" ] || fail "the systemd unit syncconfig.service is not installed"
grep -q '^ExecStart=/usr/bin/syncconfig serve --config /etc/syncconfig/config.yaml$' "$unit" ||
  fail "unexpected ExecStart in $unit"
grep -q '^User=syncconfig$' "$unit" || fail "$unit does not run as User=syncconfig"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
fi
[ -f /etc/syncconfig/config.yaml ] || fail "/etc/syncconfig/config.yaml is not installed"
grep -qx /etc/syncconfig/config.yaml /var/lib/dpkg/info/syncconfig.conffiles ||
  fail "/etc/syncconfig/config.yaml is not a conffile"
getent passwd syncconfig >/dev/null || fail "postinst did not create the syncconfig user"

step "the sample configuration parses (a database error, exit 3, not a configuration error, 2)"
set +e
SYNCCONFIG_DSN="postgresql://syncconfig@127.0.0.1:1/syncconfig?connect_timeout=2" \
  timeout 30 /usr/bin/syncconfig serve --config /etc/syncconfig/config.yaml \
  --listen 127.0.0.1:0 >"$work/serve.log" 2>&1
rc=$?
set -e
[ "$rc" -eq 3 ] || { cat "$work/serve.log"; fail "serve with the sample config exited $rc, expected 3"; }

step "the installed binary serves the web console offline, built in (GET /ui/app.js)"
# On its embedded PostgreSQL (as root it runs the server as the postgres user, who must be able
# to reach the data directory).
ui_dir="$(mktemp -d /tmp/syncconfig-package-ui.XXXXXX)"
chmod 755 "$ui_dir"
/usr/bin/syncconfig serve --data-dir "$ui_dir/pg" --listen 127.0.0.1:0 >"$ui_dir/serve.log" 2>&1 &
ui_pid=$!
ui_port=""
for _ in $(seq 1 120); do
  ui_port=$(sed -n 's|.*web console at http://127.0.0.1:\([0-9]*\)/ui/.*|\1|p' "$ui_dir/serve.log")
  [ -n "$ui_port" ] && break
  kill -0 "$ui_pid" 2>/dev/null || break
  sleep 0.5
done
ui_ok=0
if [ -n "$ui_port" ] && python3 - "$ui_port" "$src/src/ui/app.js" <<'PY'
import sys, urllib.request
port, source = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/app.js", timeout=10) as r:
    served = r.read()
sys.exit(0 if served == open(source, "rb").read() else 1)
PY
then ui_ok=1; fi
kill "$ui_pid" 2>/dev/null || true
wait "$ui_pid" 2>/dev/null || true
if ((!ui_ok)); then
  cat "$ui_dir/serve.log"
  rm -rf "$ui_dir"
  fail "the installed syncconfig does not serve src/ui/app.js at /ui/app.js"
fi
rm -rf "$ui_dir"

step "consumer against the package (/usr): find_package and pkg-config"
consumer_cmake "$work/consumer-system"
PKG_CONFIG_PATH="" consumer_pkgconfig "$work/consumer_pc_system"
