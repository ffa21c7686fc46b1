#!/usr/bin/env bash
# The GPU checks (issues 6 and 23) on a machine with an NVIDIA GPU, from the bundle that
# scripts/device_bundle.sh made here (.dev/impq-gpu.tar.xz: the CUDA build of this checkout —
# the device machine has nvcc but none of Debian's gRPC/Abseil/GoogleTest packages, so impq is
# built with CUDA on the build machine and only run there). In order, each step time-boxed so
# that the whole stays within 8 minutes on an H100:
#   1. gpu_test: every kernel against its CPU reference (2/3/4/8-bit packing and dequantization
#      bit for bit), the whole model against the reference and the CPU engine, width sets
#      (2, 3, 4, 8) against LocalEvaluator, prefix reuse against full evaluations;
#   2. gpu_bench on the Llama-3.2-1B and Llama-3.1-8B shapes with widths 2,4: seconds per
#      evaluation, fraction of the bf16 peak, prefix reuse along module and block walks, and the
#      projection of 100 block-player permutations of each shape on 1 and 8 GPUs;
#   3. gpu_bench on the 8B shape with widths 2,3,4,8 (four bf16 variants resident, ~52 GiB of
#      weights; the module walk cut to WIDTHS_WALK_STEPS steps, one whole block ladder walk);
#   4. with SERVICE=1: scripts/device_service_check.sh with a GPU worker only and a
#      --widths 2,3,4,8 job (the width-set job through the coordinator on the GPU).
#
#   here:  scripts/device_bundle.sh
#   there: SCALING=W:S scripts/device_gpu_check.sh          (device tool: carry [".dev"])
# SCALING (required) is the service's measured speed-up of W workers over one, which the
# 8-GPU projection uses: take it from cluster_bench's table in the README (2 workers), or
# measure it again with build/bench/cluster_bench. Optional: SHAPES (default 1b,8b),
# GPU_TEST_FILTER, SKIP_TESTS=1, SKIP_BENCH=1, SKIP_WIDTHS=1, SERVICE=1, and the step limits in
# seconds TEST_S (100), BENCH_S (200), WIDTHS_S (115), SERVICE_S (45): 415 s with SERVICE
# off, 460 s with it, plus ~15 s to unpack.
#
# Results under $OUT (or ./gpu-check-out), at most 7 files (the device tool brings back 8):
# gpu.txt, gpu_test.log, gpu_bench.log, gpu_bench_widths.log, service_widths.log (SERVICE=1),
# summary.md (each step's exit code and time, then the bench tables). Exit: 0 when every step
# that ran passed; else the first failing step's code (124: a step ran past its limit).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out_default=gpu-check-out
if [ -z "${SCALING:-}" ]; then
  echo "device_gpu_check.sh: set SCALING=W:S, the service's measured speed-up S of W workers" \
    "over one (README, cluster_bench's table)" >&2
  exit 2
fi
# shellcheck source=scripts/device_env.sh
source "$root/scripts/device_env.sh"
start_all=$SECONDS
summary="$out/summary.md"
echo "# device_gpu_check $(date -u +%FT%TZ), SCALING=$SCALING" >"$summary"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
  | tee "$out/gpu.txt"
rc=0
step() {  # step NAME LIMIT_S LOG CMD...: runs CMD under `timeout`, its output into LOG
  local name=$1 limit=$2 log=$3 t0=$SECONDS s
  shift 3
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  s=$?
  echo "| $name | exit $s | $((SECONDS - t0)) s (limit $limit s) |" | tee -a "$summary"
  if [ "$s" != 0 ] && [ "$rc" = 0 ]; then rc=$s; fi
  return "$s"
}
echo "| step | result | time |" >>"$summary"
echo "|---|---|---|" >>"$summary"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  step gpu_test "${TEST_S:-100}" "$out/gpu_test.log" \
    "$work/bin/gpu_test" ${GPU_TEST_FILTER:+--gtest_filter=$GPU_TEST_FILTER}
  grep -E '^\[  FAILED  \]|^\[  PASSED  \]|^\[  SKIPPED \] [0-9]+ test|tests? from .* ran' \
    "$out/gpu_test.log" | head -40
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  step "gpu_bench widths 2,4" "${BENCH_S:-200}" "$out/gpu_bench.log" \
    "$work/bin/gpu_bench" --scaling "$SCALING" --shapes "${SHAPES:-1b,8b}" --widths 2,4
fi
if [ "${SKIP_WIDTHS:-0}" != 1 ]; then
  step "gpu_bench 8b widths 2,3,4,8" "${WIDTHS_S:-115}" "$out/gpu_bench_widths.log" \
    "$work/bin/gpu_bench" --scaling "$SCALING" --shapes 8b --widths 2,3,4,8 \
    --walk_steps "${WIDTHS_WALK_STEPS:-48}" --block_walks 1 --iters 3
fi
if [ "${SERVICE:-0}" = 1 ]; then
  svc="$(mktemp -d)"
  step "service --widths 2,3,4,8 (gpu worker)" "${SERVICE_S:-45}" "$svc/run.log" \
    env OUT="$svc" DEVICES=gpu WIDTHS=2,3,4,8 HELDOUT_DOCS=50 WORKER_THREADS=8 \
      "$root/scripts/device_service_check.sh"
  for f in "$svc"/*; do echo "== $(basename "$f")"; cat "$f"; done >"$out/service_widths.log"
fi
echo "| total | | $((SECONDS - start_all)) s |" | tee -a "$summary"
for f in gpu_bench.log gpu_bench_widths.log; do
  if [ -f "$out/$f" ]; then
    { echo; echo "## $f"; grep -E '^(\||GPU:|[0-9]+ permutations|gpu_bench: skipped)' "$out/$f"; } \
      >>"$summary"
  fi
done
cat "$summary"
exit "$rc"
