#!/usr/bin/env bash
# The README's test command: install dependencies, build, run every test (CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --test
scripts/build.sh
data="${IMPQ_SHARED_DATA:-$PWD/../shared/data}"
if [ ! -f "$data/stories260K.bin" ]; then
  echo "test.sh: $data/stories260K.bin not found; set IMPQ_SHARED_DATA to the shared data directory" >&2
  exit 1
fi
export IMPQ_SHARED_DATA="$data"
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
cd ..
scripts/asan_readers.sh
