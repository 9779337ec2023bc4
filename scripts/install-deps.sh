#!/usr/bin/env bash
# Installs the Debian packages syncconfig builds, tests and runs with; skips what is present.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libpq-dev postgresql          # client library; initdb/pg_ctl/postgres for the embedded server
  pgbouncer                     # tests/pgbouncer_test starts its own (skipped without it)
  nlohmann-json3-dev libspdlog-dev libfmt-dev zlib1g-dev
  libssl-dev openssl            # TLS (https://) and named tokens (SHA-256, random secrets); the
                                # openssl program makes the tests' certificates
  libyaml-cpp-dev libcli11-dev   # the service: YAML, command line
  libboost1.74-dev               # the service's HTTP server and client (Beast/Asio)
  libcpp-httplib-dev             # tests only: an HTTP client independent of the server's stack
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev      # scripts/fuzz.sh: libFuzzer with ASan+UBSan
  chromium chromium-driver python3-selenium  # tests only: the console's end-to-end test
)
missing=()
for p in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's postgresql package starts a system cluster, and pgbouncer a system service on port
# 6432; syncconfig never needs either (the tests start their own on free ports).
