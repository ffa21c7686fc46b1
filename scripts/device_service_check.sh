#!/usr/bin/env bash
# The service on a GPU machine, from the bundle of scripts/device_bundle.sh: one coordinator,
# one impq-worker with --device gpu, and the same job run again by an impq-worker with
# --device cpu. Prints both results (Shapley values and allocations) so that they can be
# compared; the GPU evaluates in bf16 (kernels.cuh), the CPU in f32, so values differ by the
# bf16 contract's rounding while the allocations should agree. Logs go to $OUT.
# DEVICES (default "gpu cpu") picks the workers, WORKER_THREADS (default 1) their CPU threads,
# HELDOUT_DOCS (default 500) the held-out documents measured; WIDTHS (e.g. 2,3,4,8; default: the job's
# default 2,4) makes it a width-set job, which a GPU worker evaluates on the GPU (plugin API
# version 2; the worker's log names the plugin version).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out_default=service-check-out
# shellcheck source=scripts/device_env.sh
source "$root/scripts/device_env.sh"
data="$work/data"
# The clients' and the workers' tokens (distinct; files, never argv).
(umask 077
 head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token.txt"
 head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/worker_token.txt")
port=50561
"$work/bin/impq-coordinator" --listen "127.0.0.1:$port" --store "$work/impq.db" \
  --data_root "$data" --token_file "$work/token.txt" \
  --worker_token_file "$work/worker_token.txt" --metrics_listen 127.0.0.1:9469 \
  >"$out/coordinator.log" 2>&1 &
coord=$!
sleep 1
ctl=("$work/bin/impqctl" --server "127.0.0.1:$port" --token_file "$work/token.txt")
rc=0
for device in ${DEVICES:-gpu cpu}; do
  "$work/bin/impq-worker" --coordinator "127.0.0.1:$port" --token_file "$work/worker_token.txt" \
    --data_root "$data" --device "$device" --threads "${WORKER_THREADS:-1}" \
    >"$out/worker_$device.log" 2>&1 &
  worker=$!
  sleep 2
  if ! kill -0 "$worker" 2>/dev/null; then
    echo "== $device worker exited at start:"; tail -5 "$out/worker_$device.log"; rc=1; continue
  fi
  start=$(date +%s%N)
  timeout 600 "${ctl[@]}" submit --model "$data/stories260K.bin" --tokenizer "$data/tok512.bin" \
    --calib-text "$data/tinystories_v2_valid_100.txt" --calib-docs 50 \
    --heldout-text "$data/tinystories_valid_a.txt" --heldout-docs "${HELDOUT_DOCS:-500}" \
    --players module --permutations 4 --antithetic --budgets 2.5,3.0 \
    ${WIDTHS:+--widths "$WIDTHS"} --watch >"$out/job_$device.txt" 2>&1 || rc=1
  end=$(date +%s%N)
  echo "== $device worker: job took $(( (end - start) / 1000000 )) ms"
  job="$(grep -o 'job-[0-9]*' "$out/job_$device.txt" | head -1)"
  "${ctl[@]}" result --job "$job" | tee "$out/result_$device.txt"
  grep -i "device\|gpu\|cuda\|widths" "$out/worker_$device.log" | head -8
  kill "$worker"; wait "$worker" 2>/dev/null
done
kill "$coord"; wait "$coord" 2>/dev/null
exit "$rc"
