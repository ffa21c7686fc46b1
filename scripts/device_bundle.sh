#!/usr/bin/env bash
# Packs what the GPU checks need for a machine that has a GPU but none of Debian's packages
# (the device machine): stripped gpu_test / gpu_bench / choice_bound_bench / libimpq_cuda.so and the service
# binaries (impq-coordinator, impq-worker, impqctl), the non-system
# shared libraries they link (Abseil, OpenBLAS, ...), and the few shared-data files the GPU
# tests read. CUDA's own libraries (cudart, cuBLAS) are NOT packed: the target machine has them.
#
#   scripts/device_bundle.sh [build-dir]      -> .dev/impq-gpu.tar.xz  (.dev/ is git-ignored)
# On the GPU machine: SCALING=W:S scripts/device_gpu_check.sh (unpacks it, runs the tests and
# the benches; see there)
# and scripts/device_service_check.sh (a coordinator, a GPU worker and a CPU worker serve the
# same job).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
data="${IMPQ_SHARED_DATA:-$root/../shared/data}"
cmake --build "$build" --target gpu_test gpu_bench choice_bound_bench impq_cuda \
  impq_fake_gpu_plugin_v1 \
  impq-coordinator impq-worker impqctl -j"$(nproc)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
bins=("$build/worker/gpu/gpu_test" "$build/bench/gpu_bench" "$build/bench/choice_bound_bench"
  "$build/coordinator/impq-coordinator"
  "$build/worker/service/impq-worker" "$build/cli/impqctl/impqctl")
for b in "${bins[@]}"; do strip -o "$stage/bin/$(basename "$b")" "$b"; done
strip -o "$stage/bin/libimpq_cuda.so" "$build/worker/gpu/libimpq_cuda.so"
strip -o "$stage/bin/libimpq_fake_gpu_plugin_v1.so" "$build/worker/gpu/libimpq_fake_gpu_plugin_v1.so"
# Shared libraries outside glibc/libstdc++/CUDA (the GPU machine has those, newer).
ldd "${bins[@]}" | awk '/=> \//{print $1, $3}' | sort -u | while read -r name path; do
  case "$name" in
    libc.so*|libm.so*|libstdc++*|libgcc_s*|libdl.so*|libpthread*|librt.so*|libcuda*|libcublas*) ;;
    *) cp -L "$path" "$stage/lib/$name" ;;
  esac
done
for f in stories260K.bin tok512.bin tinystories_v2_valid_100.txt tinystories_valid_a.txt; do cp "$data/$f" "$stage/data/"; done
mkdir -p "$root/.dev"
tar -C "$stage" -cJf "$root/.dev/impq-gpu.tar.xz" .
ls -la "$root/.dev/impq-gpu.tar.xz"
