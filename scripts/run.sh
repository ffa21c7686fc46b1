#!/usr/bin/env bash
# The README's main command: install dependencies, build, run the main job on the embedded
# default (coordinator and worker in one process, the shared stories260K model).
# Extra arguments go to `impq run` (see `build/cli/impq run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
exec build/cli/impq run "$@"
