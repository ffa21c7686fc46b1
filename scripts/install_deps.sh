#!/usr/bin/env bash
# Installs impq's build dependencies from Debian 12's packages (idempotent); with --test also
# what only the tests use (scripts/test.sh passes it), so that scripts/run.sh on a fresh
# machine does not wait for a browser download.
# CUDA is not a Debian package: when /usr/local/cuda exists the CUDA plugin is built too.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libopenblas-dev libsqlite3-dev libsentencepiece-dev openssl
)
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(libxml2-utils chromium)  # xmllint and a headless browser for the report tests
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
mkdir -p build
log="build/install.log"
echo "install_deps: installing ${#missing[@]} packages (${missing[*]}); log: $log"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
start=$SECONDS
if ! { $SUDO apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$log" 2>&1; then
  echo "install_deps: FAILED; the end of $log:" >&2
  tail -n 20 "$log" | sed 's/^/  /' >&2
  exit 1
fi
echo "install_deps: done in $((SECONDS - start)) s"
