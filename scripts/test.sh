#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
if [ ! -f ../shared/data/stories260K.bin ] && [ -z "${IMPQ_SHARED_DATA:-}" ]; then
  echo "test.sh: ../shared/data/stories260K.bin not found; set IMPQ_SHARED_DATA to the shared data directory" >&2
  exit 1
fi
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
