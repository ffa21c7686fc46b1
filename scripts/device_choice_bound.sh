#!/usr/bin/env bash
# Runs bench/choice_bound_bench with --device gpu on a machine with an NVIDIA GPU, from the
# bundle of scripts/device_bundle.sh (.dev/impq-gpu.tar.xz). Arguments go to the bench; its
# table and log go to $OUT (or ./choice-bound-out).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out_default=choice-bound-out
# shellcheck source=scripts/device_env.sh
source "$root/scripts/device_env.sh"
"$work/bin/choice_bound_bench" --device gpu --threads "$(nproc)" "$@" \
  >"$out/choice_bound.md" 2>"$out/choice_bound.log"
rc=$?
tail -n 40 "$out/choice_bound.log"
cat "$out/choice_bound.md"
echo "choice_bound_bench exit code: $rc"
exit "$rc"
