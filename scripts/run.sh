#!/usr/bin/env bash
# The README's main command: install dependencies, build, run the main job on the embedded
# default (coordinator and worker in one process, the shared stories260K model), then draw its
# report. Extra arguments go to `impq run` (see `build/cli/impq run --help`).
# Outputs: the run's JSON where --json says (default: impq-run.json in the repository root)
# and the HTML report next to it, FILE.json -> FILE.html (default: impq-run.html).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh

args=("$@")
json=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --help) exec build/cli/impq run "$@" ;;
    --json) json="${args[i + 1]:-}" ;;
    --json=*) json="${args[i]#--json=}" ;;
  esac
done
if [ -z "$json" ]; then
  json="impq-run.json"
  args+=(--json "$json")
fi
report="${json%.json}.html"
build/cli/impq run "${args[@]}"
build/cli/impq report --quiet --from "$json" --out "$report"
echo "results: $json; report: $report (one self-contained HTML file, open it in a browser)"
