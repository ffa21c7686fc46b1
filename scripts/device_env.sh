# Sourced by the scripts/device_*_check.sh scripts: unpacks the bundle of
# scripts/device_bundle.sh (.dev/impq-gpu.tar.xz) into a temporary directory and points the
# environment at it. Expects `root` (the repository) and `out_default` (a folder name) to be
# set; sets `out` ($OUT or root/out_default, created), `work` (the unpacked bundle: bin/, lib/,
# data/) and exports LD_LIBRARY_PATH (bundle libraries, then CUDA's), IMPQ_CUDA_PLUGIN,
# IMPQ_FAKE_GPU_PLUGIN_V1 (gpu_test's older-plugin stand-in) and IMPQ_SHARED_DATA.
out="${OUT:-$root/$out_default}"
mkdir -p "$out"
work="$(mktemp -d)"
tar -C "$work" -xJf "$root/.dev/impq-gpu.tar.xz" || exit 1
cuda_libs="$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/lib \
  /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | paste -sd:)"
export LD_LIBRARY_PATH="$work/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export IMPQ_CUDA_PLUGIN="$work/bin/libimpq_cuda.so"
export IMPQ_FAKE_GPU_PLUGIN_V1="$work/bin/libimpq_fake_gpu_plugin_v1.so"
export IMPQ_SHARED_DATA="$work/data"
