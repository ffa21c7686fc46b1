#!/usr/bin/env bash
# The README's main command: install dependencies, build, run the main job on the embedded
# default (coordinator and worker in one process, the shared stories260K model), then draw its
# report. Extra arguments go to `impq run` (see `build/cli/impq run --help`).
# Outputs: the run's JSON where --json says (default: impq-run.json in the repository root)
# and the HTML report next to it, FILE.json -> FILE.html (default: impq-run.html).
# Builds only what it runs: the `impq` binary (the job, the embedded coordinator, the report),
# not the tests, benchmarks, service binaries or the CUDA plugin (`impq run` computes on the
# CPU); scripts/test.sh builds the rest into the same ./build, reusing what this built.
set -euo pipefail
cd "$(dirname "$0")/.."
clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
t0=$SECONDS
scripts/install_deps.sh
t1=$SECONDS
scripts/build.sh --target impq
t2=$SECONDS

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
echo "job: build/cli/impq run ${args[*]}"
build/cli/impq run "${args[@]}"
t3=$SECONDS
build/cli/impq report --quiet --from "$json" --out "$report"
echo "results: $json; report: $report (one self-contained HTML file, open it in a browser)"
echo "run.sh: packages $(clock $((t1 - t0))), build $(clock $((t2 - t1))), job $(clock $((t3 - t2))), report $(clock $((SECONDS - t3))); total $(clock $((SECONDS - t0)))"
