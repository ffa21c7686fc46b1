#!/usr/bin/env bash
# Runs the GPU checks of issue 6 on a machine with an NVIDIA GPU from the bundle that
# scripts/device_bundle.sh made (.dev/impq-gpu.tar.xz): the gpu_test suite (every kernel and
# the whole model against the CPU references) and then bench/gpu_bench. Logs go to $OUT (or
# ./gpu-check-out). Extra arguments are passed to gpu_bench.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out_default=gpu-check-out
# shellcheck source=scripts/device_env.sh
source "$root/scripts/device_env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
rc=0
"$work/bin/gpu_test" ${GPU_TEST_FILTER:+--gtest_filter=$GPU_TEST_FILTER} 2>&1 | tee "$out/gpu_test.log" | grep -v '^\[       OK\|^\[ RUN' ; rc=${PIPESTATUS[0]}
echo "gpu_test exit code: $rc"
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  "$work/bin/gpu_bench" "$@" 2>&1 | tee "$out/gpu_bench.log"; brc=${PIPESTATUS[0]}
  echo "gpu_bench exit code: $brc"
  [ "$brc" = 0 ] || rc=$brc
fi
exit "$rc"
