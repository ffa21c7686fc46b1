// The resident model of the CUDA plugin: the model_* entry points of gpu_api.h.
//
// Layout on the device (one ImpqGpuModel per model_create, on one device):
//   - every linear module's variants (2-, 3-, 4-, 8-bit and full, those that were set) as
//     bf16 [out, in]: an assignment is a table of pointers, changing it moves no data. The
//     quantized widths are dequantized once, when set (LaunchDequantize: the CPU's
//     DequantizeRef bit for bit), so every width then runs the same cuBLAS bf16 GEMMs;
//   - embedding f32 [vocab, dim] (the CPU's values, scaled at lookup), output head bf16,
//     norm multipliers and rotary tables f32 (the CPU's own arrays, see GpuModelTables);
//   - the evaluation set: tokens, the targets of every scored row (compact, in sequence order)
//     and one f32 NLL slot per scored row;
//   - scratch for one batch of up to row_budget rows, the attention workspace, the logits of
//     up to head_rows rows;
//   - the prefix cache: per admitted sequence the inputs of blocks 1..L-1 (f32 [L-1, T, dim];
//     block 0's input is the embedding, recomputed), plus (host) the variants they were
//     computed with.
//
// Evaluation: the orchestration (batches of consecutive sequences up to row_budget rows, the
// restart block of each sequence, which rows go through which kernel, the cache slots, the
// per-sequence f64 sums) is worker/gpu/model_pass.h, shared with a CPU emulation that the CPU
// tests run; this file supplies the device memory and CudaOps (the launchers of kernels.cuh).
// When every sequence restarts at the same block, the runs are the fixed batches, so every
// GEMM has the shape it has in a full evaluation: with deterministic kernels and cuBLAS (fixed
// stream and workspace, no atomics) prefix reuse is then bit-identical to a full evaluation.
//
// Stream ordering: everything of a model runs on its own stream (a blocking stream, so it
// also orders against anything left on the legacy default stream); host->device copies are
// cudaMemcpyAsync on that stream and every entry point synchronizes before it returns, so
// host buffers and temporary device buffers are never used after the call.
//
// Errors: CUDA/cuBLAS failures -> EDEVICE (the model is then marked unusable: later calls
// fail fast with the first error), allocation failures -> ENOMEM (the model stays usable),
// bad arguments -> EINVAL naming the argument.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "worker/gpu/cuda/check.cuh"
#include "worker/gpu/cuda/kernels.cuh"
#include "worker/gpu/cuda/model.cuh"
#include "worker/gpu/cuda/profile.cuh"
#include "worker/gpu/model_pass.h"
#include "worker/quant/block_format.h"

namespace impq::gpu::model_internal {

// cuBLAS workspace (NVIDIA's recommendation for Hopper; fixed for reproducibility).
constexpr int64_t kCublasWorkspaceBytes = int64_t{32} << 20;
// Device memory the prefix cache always leaves free (for cuBLAS, the driver, other users).
constexpr int64_t kMinFreeMargin = int64_t{512} << 20;
// Elements converted per chunk when rounding large f32 host tensors to bf16.
constexpr int64_t kConvertChunk = int64_t{32} << 20;

// Owning device allocation of n elements of T (RAII; move-only).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  ~DeviceArray() { Reset(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      Reset();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  // Frees the old allocation and allocates n elements (none for n == 0).
  cudaError_t Allocate(int64_t n) {
    Reset();
    if (n <= 0) return cudaSuccess;
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(n) * sizeof(T));
    if (e != cudaSuccess) return e;
    p_ = static_cast<T*>(p);
    n_ = n;
    return cudaSuccess;
  }
  void Reset() {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  int64_t size() const { return n_; }
  int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(T)); }
  bool empty() const { return p_ == nullptr; }

 private:
  T* p_ = nullptr;
  int64_t n_ = 0;
};

// Makes `device` current for the scope and restores the previous device.
class DeviceScope {
 public:
  DeviceScope() = default;
  ~DeviceScope() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  // Remembers the current device (restored at the end of the scope).
  cudaError_t Save() {
    int prev = -1;
    const cudaError_t e = cudaGetDevice(&prev);
    if (e != cudaSuccess) return e;
    prev_ = prev;
    return cudaSuccess;
  }
  cudaError_t Enter(int device) {
    const cudaError_t e = Save();
    return e != cudaSuccess ? e : cudaSetDevice(device);
  }

 private:
  int prev_ = -1;
};

struct LayerNormsDev {
  DeviceArray<float> attn, ffn, q, k, post_attn, post_ffn;
};

}  // namespace impq::gpu::model_internal

// The opaque handle of gpu_api.h. Thread-compatible: one call at a time per model.
struct ImpqGpuModel {
  template <typename T>
  using DeviceArray = impq::gpu::model_internal::DeviceArray<T>;
  using bf16 = impq::gpu::bf16;

  int device = 0;
  impq::gpu::pass::Shape shape;

  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  DeviceArray<unsigned char> cublas_workspace;

  DeviceArray<float> embedding, final_norm, rope_cos, rope_sin;
  DeviceArray<bf16> output;
  std::vector<impq::gpu::model_internal::LayerNormsDev> norms;
  // [layer * 7 + kind][variant]
  std::vector<std::array<DeviceArray<bf16>, IMPQ_GPU_NUM_VARIANTS>> linear;

  // Evaluation set.
  bool has_eval = false;
  impq::gpu::pass::Layout layout;
  DeviceArray<int32_t> tokens;   // all sequences, concatenated
  DeviceArray<int32_t> targets;  // [total_scored]
  DeviceArray<float> nll;        // [total_scored]
  std::vector<float> nll_host;
  std::vector<impq::gpu::pass::SeqCache> cache;  // [n]
  std::vector<DeviceArray<float>> states;        // [n]: cache slots, empty when not cached
  int64_t cache_bytes = 0, cached_sequences = 0;

  // Scratch of one batch (layout.row_budget rows).
  DeviceArray<float> x, q, k, v, proj, g, u, logits;
  DeviceArray<bf16> xb, att, hb, qh, kh, vh, hn;
  DeviceArray<unsigned char> attn_ws;

  int64_t block_evals_done = 0, block_evals_full = 0;

  bool broken = false;  // a device error happened: every later call fails with it
  std::string broken_message;

  std::unique_ptr<impq::gpu::OpProfile> profile;  // $IMPQ_GPU_PROFILE
};

namespace impq::gpu {
namespace {

using model_internal::DeviceArray;
using pass::kNumLinear;

#define IMPQ_MODEL_TRY(expr)             \
  do {                                   \
    const int impq_model_rc_ = (expr);   \
    if (impq_model_rc_ != IMPQ_GPU_OK) { \
      return impq_model_rc_;             \
    }                                    \
  } while (0)

// Runs body() with the model's device current, turning host exceptions into codes and
// recording device errors as sticky (see the file comment).
template <typename Body>
int Guarded(ImpqGpuModel* model, ImpqGpuError* err_in, const char* what, Body body) {
  ImpqGpuError local{};
  ImpqGpuError* err = err_in != nullptr ? err_in : &local;
  err->message[0] = '\0';
  if (model == nullptr) return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: model is null", what);
  if (model->broken) {
    return SetGpuError(err, IMPQ_GPU_EDEVICE,
                       "%s: the model is unusable after an earlier device error: %s", what,
                       model->broken_message.c_str());
  }
  int rc;
  try {
    model_internal::DeviceScope scope;
    rc = IMPQ_GPU_OK;
    if (const cudaError_t e = scope.Enter(model->device); e != cudaSuccess) {
      rc = CudaFail(err, e, "cudaSetDevice", __FILE__, __LINE__);
    } else {
      rc = body(err);
    }
  } catch (const std::bad_alloc&) {
    rc = SetGpuError(err, IMPQ_GPU_ENOMEM, "%s: host memory exhausted", what);
  } catch (const std::exception& e) {
    rc = SetGpuError(err, IMPQ_GPU_EDEVICE, "%s: unexpected exception: %s", what, e.what());
  }
  if (rc == IMPQ_GPU_EDEVICE) {
    model->broken = true;
    model->broken_message = err->message;
  }
  return rc;
}

// Copies n host elements to a device array on the model's stream.
template <typename T>
int Upload(ImpqGpuModel* m, ImpqGpuError* err, const T* host, int64_t n, DeviceArray<T>* dst,
           const char* what) {
  if (n > 0 && host == nullptr) return SetGpuError(err, IMPQ_GPU_EINVAL, "%s is null", what);
  if (dst->size() != n) IMPQ_CUDA_RETURN(err, dst->Allocate(n));
  if (n > 0) {
    IMPQ_CUDA_RETURN(err, cudaMemcpyAsync(dst->get(), host, static_cast<size_t>(n) * sizeof(T),
                                          cudaMemcpyHostToDevice, m->stream));
  }
  return IMPQ_GPU_OK;
}

// Rounds n host f32 values to bf16 into dst (allocated here), in chunks through a bounded
// f32 staging buffer.
int UploadAsBf16(ImpqGpuModel* m, ImpqGpuError* err, const float* host, int64_t n,
                 DeviceArray<bf16>* dst, const char* what) {
  if (host == nullptr) return SetGpuError(err, IMPQ_GPU_EINVAL, "%s is null", what);
  if (dst->size() != n) IMPQ_CUDA_RETURN(err, dst->Allocate(n));
  DeviceArray<float> stage;
  IMPQ_CUDA_RETURN(err, stage.Allocate(std::min(n, model_internal::kConvertChunk)));
  for (int64_t i = 0; i < n; i += stage.size()) {
    const int64_t c = std::min(stage.size(), n - i);
    IMPQ_CUDA_RETURN(err, cudaMemcpyAsync(stage.get(), host + i, static_cast<size_t>(c) * 4,
                                          cudaMemcpyHostToDevice, m->stream));
    IMPQ_LAUNCH_RETURN(err, LaunchF32ToBf16(stage.get(), dst->get() + i, c, m->stream));
  }
  // The staging buffer is freed on return: the conversions must have run.
  IMPQ_CUDA_RETURN(err, cudaStreamSynchronize(m->stream));
  return IMPQ_GPU_OK;
}

int CheckLinear(const ImpqGpuModel* m, ImpqGpuError* err, const char* what, int layer, int kind) {
  if (layer < 0 || layer >= m->shape.n_layers) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: layer = %d; expected 0..%d", what, layer,
                       m->shape.n_layers - 1);
  }
  if (kind < 0 || kind >= kNumLinear) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: kind = %d; expected 0..6 (model::LinearKind)",
                       what, kind);
  }
  return IMPQ_GPU_OK;
}

// The variant buffer of (layer, kind), allocated for rows x cols bf16.
int VariantBuffer(ImpqGpuModel* m, ImpqGpuError* err, int layer, int kind, int variant,
                  bf16** out) {
  DeviceArray<bf16>& buf = m->linear[static_cast<size_t>(layer) * kNumLinear + kind][variant];
  const int64_t n = m->shape.LinearRows(kind) * m->shape.LinearCols(kind);
  if (buf.size() != n) IMPQ_CUDA_RETURN(err, buf.Allocate(n));
  *out = buf.get();
  return IMPQ_GPU_OK;
}

// Any weight change invalidates every cached prefix.
void InvalidateCache(ImpqGpuModel* m) {
  for (pass::SeqCache& c : m->cache) c.valid = false;
}

void ReleaseEval(ImpqGpuModel* m) {
  m->has_eval = false;
  m->cache.clear();
  m->states.clear();
  m->layout = pass::Layout();
  m->cache_bytes = m->cached_sequences = 0;
  for (DeviceArray<float>* a :
       {&m->x, &m->q, &m->k, &m->v, &m->proj, &m->g, &m->u, &m->logits, &m->nll}) {
    a->Reset();
  }
  for (DeviceArray<bf16>* a : {&m->xb, &m->att, &m->hb, &m->qh, &m->kh, &m->vh, &m->hn}) {
    a->Reset();
  }
  m->tokens.Reset();
  m->targets.Reset();
  m->attn_ws.Reset();
  m->nll_host.clear();
}

// Scratch for batches of up to lay.row_budget rows. Returns the cudaError_t of the first
// failed allocation (the caller retries with fewer rows on cudaErrorMemoryAllocation).
cudaError_t AllocateScratch(ImpqGpuModel* m, const pass::Layout& lay) {
  const pass::Shape& sh = m->shape;
  const int64_t D = sh.dim, qd = sh.q_dim(), kvd = sh.kv_dim(), H = sh.hidden;
  const int64_t rows = lay.row_budget, T = lay.max_T;
  const std::pair<DeviceArray<float>*, int64_t> f32[] = {{&m->x, rows * D},
                                                         {&m->q, rows * qd},
                                                         {&m->k, rows * kvd},
                                                         {&m->v, rows * kvd},
                                                         {&m->proj, sh.post_norms ? rows * D : 0},
                                                         {&m->g, rows * H},
                                                         {&m->u, rows * H},
                                                         {&m->logits, lay.head_rows * sh.vocab}};
  for (const auto& [a, n] : f32) {
    if (const cudaError_t e = a->Allocate(n); e != cudaSuccess) return e;
  }
  const std::pair<DeviceArray<bf16>*, int64_t> b16[] = {
      {&m->xb, rows * D}, {&m->att, rows * qd}, {&m->hb, rows * H}, {&m->qh, T * qd},
      {&m->kh, T * kvd},  {&m->vh, T * kvd},    {&m->hn, rows * D}};
  for (const auto& [a, n] : b16) {
    if (const cudaError_t e = a->Allocate(n); e != cudaSuccess) return e;
  }
  return m->attn_ws.Allocate(std::max<int64_t>(
      1, AttentionWorkspaceBytes(T, sh.n_heads, sh.n_kv_heads, sh.head_dim)));
}

// Profile names of the GEMMs, by output width (q/o, k/v, gate/up, down and the head differ).
const char* GemmName(int64_t out) {
  static thread_local char buf[48];
  std::snprintf(buf, sizeof buf, "gemm out=%lld", static_cast<long long>(out));
  return buf;
}

// The kernels of cuda/kernels.cuh as model_pass.h's Ops, on the model's stream.
struct CudaOps {
  using Bf16 = bf16;
  cudaStream_t st;
  cublasHandle_t cublas;
  ImpqGpuError* err;
  OpProfile* prof = nullptr;
  int64_t ws_bytes = 0;  // the attention workspace's size

  int Launched(cudaError_t e, const char* what) const {
    return e == cudaSuccess ? IMPQ_GPU_OK : CudaFail(err, e, what, __FILE__, __LINE__);
  }
  int Embed(const float* table, int dim, const int32_t* tokens, int64_t rows, float scale,
            float* x) const {
    ProfiledOp t(prof, "embed", st);
    return Launched(LaunchEmbed(table, dim, tokens, rows, scale, x, st), "LaunchEmbed");
  }
  int RmsNorm(const float* x, int64_t rows, int dim, const float* mult, float eps,
              bf16* out) const {
    ProfiledOp t(prof, "rmsnorm", st);
    return Launched(LaunchRmsNorm(x, rows, dim, mult, eps, nullptr, out, st), "LaunchRmsNorm");
  }
  int RmsNormAdd(const float* in, int64_t rows, int dim, const float* mult, float eps,
                 float* x) const {
    ProfiledOp t(prof, "rmsnorm_add", st);
    return Launched(LaunchRmsNormAdd(in, rows, dim, mult, eps, x, st), "LaunchRmsNormAdd");
  }
  int Gemm(const bf16* x, int64_t rows, int64_t in, const bf16* w, int64_t out, float beta,
           float* y) const {
    ProfiledOp t(prof, GemmName(out), st);
    const cublasStatus_t s = GemmBf16(cublas, x, rows, in, w, out, beta, y);
    return s == CUBLAS_STATUS_SUCCESS ? IMPQ_GPU_OK
                                      : CublasFail(err, s, "GemmBf16", __FILE__, __LINE__);
  }
  int Rope(const float* x, int64_t T, int heads, int hd, const float* head_mult, float eps,
           const float* cos, const float* sin, int style, bf16* out) const {
    ProfiledOp t(prof, "rope", st);
    return Launched(LaunchRope(x, T, heads, hd, head_mult, eps, cos, sin, style, out, st),
                    "LaunchRope");
  }
  int ToHeadMajor(const float* x, int64_t T, int heads, int hd, bf16* out) const {
    ProfiledOp t(prof, "to_head_major", st);
    return Launched(LaunchToHeadMajor(x, T, heads, hd, out, st), "LaunchToHeadMajor");
  }
  int Glu(const float* gate, const float* up, int64_t n, int activation, bf16* out) const {
    ProfiledOp t(prof, "glu", st);
    return Launched(LaunchGlu(gate, up, n, activation, out, st), "LaunchGlu");
  }
  int Attention(const bf16* q, const bf16* k, const bf16* v, int64_t T, int H, int Hkv, int hd,
                float scale, float softcap, int window, void* ws, bf16* out, int layer,
                int64_t seq) const {
    ProfiledOp t(prof, "attention", st);
    const std::string e =
        RunAttention(cublas, q, k, v, T, H, Hkv, hd, scale, softcap, window, ws, ws_bytes, out,
                     st, prof);
    if (e.empty()) return IMPQ_GPU_OK;
    cudaGetLastError();
    return SetGpuError(err, IMPQ_GPU_EDEVICE, "RunAttention (layer %d, sequence %lld): %s", layer,
                       static_cast<long long>(seq), e.c_str());
  }
  int Nll(const float* logits, int64_t rows, int vocab, const int32_t* targets, float softcap,
          float* nll) const {
    ProfiledOp t(prof, "nll", st);
    return Launched(LaunchNll(logits, rows, vocab, targets, softcap, nll, st), "LaunchNll");
  }
  int Copy(float* dst, const float* src, int64_t n) const {
    ProfiledOp t(prof, "prefix_cache_copy", st);
    return Launched(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(float),
                                    cudaMemcpyDeviceToDevice, st),
                    "cudaMemcpyAsync (prefix cache)");
  }
};

// The device pointers model_pass.h reads and writes.
pass::Weights<bf16> WeightsView(const ImpqGpuModel* m) {
  pass::Weights<bf16> w;
  w.embedding = m->embedding.get();
  w.output = m->output.get();
  w.final_norm = m->final_norm.get();
  w.rope_cos = m->rope_cos.get();
  w.rope_sin = m->rope_sin.get();
  for (const model_internal::LayerNormsDev& n : m->norms) {
    w.norms.push_back(
        {n.attn.get(), n.ffn.get(), n.q.get(), n.k.get(), n.post_attn.get(), n.post_ffn.get()});
  }
  for (const auto& variants : m->linear) {
    std::array<const bf16*, IMPQ_GPU_NUM_VARIANTS> p{};
    for (int v = 0; v < IMPQ_GPU_NUM_VARIANTS; ++v) p[v] = variants[v].get();
    w.linear.push_back(p);
  }
  return w;
}

pass::Scratch<bf16> ScratchView(ImpqGpuModel* m) {
  pass::Scratch<bf16> sc;
  sc.x = m->x.get();
  sc.q = m->q.get();
  sc.k = m->k.get();
  sc.v = m->v.get();
  sc.proj = m->proj.get();
  sc.g = m->g.get();
  sc.u = m->u.get();
  sc.logits = m->logits.get();
  sc.xb = m->xb.get();
  sc.att = m->att.get();
  sc.hb = m->hb.get();
  sc.qh = m->qh.get();
  sc.kh = m->kh.get();
  sc.vh = m->vh.get();
  sc.hn = m->hn.get();
  sc.attn_ws = m->attn_ws.get();
  sc.tokens = m->tokens.get();
  sc.targets = m->targets.get();
  sc.nll = m->nll.get();
  for (const DeviceArray<float>& st : m->states) sc.states.push_back(st.get());
  return sc;
}

// ---- entry points ----

int CreateImpl(int device, const ImpqGpuModelDesc* d, ImpqGpuModel* m, ImpqGpuError* err) {
  auto positive = [&](const char* field, int v) {
    return v > 0 ? IMPQ_GPU_OK
                 : SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.%s = %d; expected > 0",
                               field, v);
  };
  if (const char* p = std::getenv("IMPQ_GPU_PROFILE");
      p != nullptr && *p != '\0' && std::strcmp(p, "0") != 0) {
    m->profile = std::make_unique<impq::gpu::OpProfile>();
  }
  IMPQ_MODEL_TRY(positive("dim", d->dim));
  IMPQ_MODEL_TRY(positive("hidden_dim", d->hidden_dim));
  IMPQ_MODEL_TRY(positive("n_layers", d->n_layers));
  IMPQ_MODEL_TRY(positive("n_heads", d->n_heads));
  IMPQ_MODEL_TRY(positive("n_kv_heads", d->n_kv_heads));
  IMPQ_MODEL_TRY(positive("head_dim", d->head_dim));
  IMPQ_MODEL_TRY(positive("vocab_size", d->vocab_size));
  IMPQ_MODEL_TRY(positive("seq_len", d->seq_len));
  if (d->n_heads % d->n_kv_heads != 0) {
    return SetGpuError(err, IMPQ_GPU_EINVAL,
                       "model_create: desc.n_heads = %d is not a multiple of n_kv_heads = %d",
                       d->n_heads, d->n_kv_heads);
  }
  if (d->head_dim % 2 != 0) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.head_dim = %d is odd",
                       d->head_dim);
  }
  if (!(d->norm_eps >= 0.0f)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.norm_eps = %g; expected >= 0",
                       d->norm_eps);
  }
  if (d->rope_style != IMPQ_GPU_ROPE_INTERLEAVED && d->rope_style != IMPQ_GPU_ROPE_HALF) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.rope_style = %d; expected 0 or 1",
                       d->rope_style);
  }
  if (d->ffn_activation != IMPQ_GPU_ACT_SILU && d->ffn_activation != IMPQ_GPU_ACT_GELU_TANH) {
    return SetGpuError(err, IMPQ_GPU_EINVAL,
                       "model_create: desc.ffn_activation = %d; expected 0 or 1",
                       d->ffn_activation);
  }
  if (!(d->attn_scale > 0.0f) || !(d->embed_scale > 0.0f) || !(d->attn_logit_softcap >= 0.0f) ||
      !(d->final_logit_softcap >= 0.0f) || d->sliding_window < 0) {
    return SetGpuError(err, IMPQ_GPU_EINVAL,
                       "model_create: desc.attn_scale = %g, embed_scale = %g (expected > 0), "
                       "attn_logit_softcap = %g, final_logit_softcap = %g, sliding_window = %d "
                       "(expected >= 0)",
                       d->attn_scale, d->embed_scale, d->attn_logit_softcap, d->final_logit_softcap,
                       d->sliding_window);
  }
  const std::pair<const char*, const void*> required[] = {
      {"embedding", d->embedding}, {"output", d->output},     {"final_norm", d->final_norm},
      {"rope_cos", d->rope_cos},   {"rope_sin", d->rope_sin}, {"layers", d->layers}};
  for (const auto& [name, p] : required) {
    if (p == nullptr)
      return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.%s is null", name);
  }
  for (int l = 0; l < d->n_layers; ++l) {
    const ImpqGpuLayerNorms& n = d->layers[l];
    const char* missing = n.attn == nullptr                         ? "attn"
                          : n.ffn == nullptr                        ? "ffn"
                          : d->qk_norm && n.q == nullptr            ? "q"
                          : d->qk_norm && n.k == nullptr            ? "k"
                          : d->post_norms && n.post_attn == nullptr ? "post_attn"
                          : d->post_norms && n.post_ffn == nullptr  ? "post_ffn"
                                                                    : nullptr;
    if (missing != nullptr) {
      return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc.layers[%d].%s is null", l,
                         missing);
    }
  }
  int count = 0;
  IMPQ_CUDA_RETURN(err, cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: device = %d; %d device(s) present",
                       device, count);
  }

  m->device = device;
  pass::Shape& sh = m->shape;
  sh.dim = d->dim;
  sh.hidden = d->hidden_dim;
  sh.n_layers = d->n_layers;
  sh.n_heads = d->n_heads;
  sh.n_kv_heads = d->n_kv_heads;
  sh.head_dim = d->head_dim;
  sh.vocab = d->vocab_size;
  sh.seq_len = d->seq_len;
  sh.eps = d->norm_eps;
  sh.embed_scale = d->embed_scale;
  sh.attn_scale = d->attn_scale;
  sh.attn_softcap = d->attn_logit_softcap;
  sh.final_softcap = d->final_logit_softcap;
  sh.rope_style = d->rope_style;
  sh.qk_norm = d->qk_norm != 0 ? 1 : 0;
  sh.post_norms = d->post_norms != 0 ? 1 : 0;
  sh.activation = d->ffn_activation;
  sh.sliding_window = d->sliding_window;

  IMPQ_CUDA_RETURN(err, cudaSetDevice(device));
  // A blocking stream: ordered against the legacy default stream too (see the file comment).
  IMPQ_CUDA_RETURN(err, cudaStreamCreate(&m->stream));
  IMPQ_CUBLAS_RETURN(err, cublasCreate(&m->cublas));
  IMPQ_CUBLAS_RETURN(err, cublasSetStream(m->cublas, m->stream));
  IMPQ_CUDA_RETURN(err, m->cublas_workspace.Allocate(model_internal::kCublasWorkspaceBytes));
  IMPQ_CUBLAS_RETURN(err, cublasSetWorkspace(m->cublas, m->cublas_workspace.get(),
                                             static_cast<size_t>(m->cublas_workspace.bytes())));

  const int64_t D = sh.dim, V = sh.vocab;
  IMPQ_MODEL_TRY(Upload(m, err, d->embedding, V * D, &m->embedding, "desc.embedding"));
  IMPQ_MODEL_TRY(UploadAsBf16(m, err, d->output, V * D, &m->output, "desc.output"));
  IMPQ_MODEL_TRY(Upload(m, err, d->final_norm, D, &m->final_norm, "desc.final_norm"));
  const int64_t rope_n = static_cast<int64_t>(sh.seq_len) * (sh.head_dim / 2);
  IMPQ_MODEL_TRY(Upload(m, err, d->rope_cos, rope_n, &m->rope_cos, "desc.rope_cos"));
  IMPQ_MODEL_TRY(Upload(m, err, d->rope_sin, rope_n, &m->rope_sin, "desc.rope_sin"));
  m->norms.resize(static_cast<size_t>(sh.n_layers));
  for (int l = 0; l < sh.n_layers; ++l) {
    const ImpqGpuLayerNorms& n = d->layers[l];
    model_internal::LayerNormsDev& dst = m->norms[l];
    IMPQ_MODEL_TRY(Upload(m, err, n.attn, D, &dst.attn, "desc.layers[].attn"));
    IMPQ_MODEL_TRY(Upload(m, err, n.ffn, D, &dst.ffn, "desc.layers[].ffn"));
    if (sh.qk_norm) {
      IMPQ_MODEL_TRY(Upload(m, err, n.q, sh.head_dim, &dst.q, "desc.layers[].q"));
      IMPQ_MODEL_TRY(Upload(m, err, n.k, sh.head_dim, &dst.k, "desc.layers[].k"));
    }
    if (sh.post_norms) {
      IMPQ_MODEL_TRY(Upload(m, err, n.post_attn, D, &dst.post_attn, "desc.layers[].post_attn"));
      IMPQ_MODEL_TRY(Upload(m, err, n.post_ffn, D, &dst.post_ffn, "desc.layers[].post_ffn"));
    }
  }
  m->linear.resize(static_cast<size_t>(sh.n_layers) * kNumLinear);
  IMPQ_CUDA_RETURN(err, cudaStreamSynchronize(m->stream));
  return IMPQ_GPU_OK;
}

void DestroyResources(ImpqGpuModel* m) {
  if (m->stream != nullptr) cudaStreamSynchronize(m->stream);
  if (m->profile) {
    m->profile->Print();
    m->profile.reset();
  }
  ReleaseEval(m);
  m->linear.clear();
  m->norms.clear();
  m->embedding.Reset();
  m->output.Reset();
  m->final_norm.Reset();
  m->rope_cos.Reset();
  m->rope_sin.Reset();
  if (m->cublas != nullptr) cublasDestroy(m->cublas);
  m->cublas = nullptr;
  m->cublas_workspace.Reset();
  if (m->stream != nullptr) cudaStreamDestroy(m->stream);
  m->stream = nullptr;
  cudaGetLastError();  // leave no error behind for the thread's next call
}

int SetEvalImpl(ImpqGpuModel* m, ImpqGpuError* err, const int32_t* tokens, const int64_t* offsets,
                int64_t n_seqs, const int64_t* score_begin, int64_t max_cache_bytes) {
  if (const std::string bad = pass::CheckEvalSet(m->shape, tokens, offsets, n_seqs, score_begin);
      !bad.empty()) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_set_eval: %s", bad.c_str());
  }
  if (max_cache_bytes < 0) {
    return SetGpuError(err, IMPQ_GPU_EINVAL,
                       "model_set_eval: max_cache_bytes = %lld; expected >= 0",
                       static_cast<long long>(max_cache_bytes));
  }
  // Replace the previous set: nothing of it may be in flight while it is freed.
  IMPQ_CUDA_RETURN(err, cudaStreamSynchronize(m->stream));
  ReleaseEval(m);
  auto fail = [&](int rc) {
    ReleaseEval(m);
    return rc;
  };

  // Scratch first (it is required), halving the row budget on out-of-memory down to the
  // longest sequence.
  const pass::Shape& sh = m->shape;
  pass::Layout lay = pass::MakeLayout(offsets, n_seqs, score_begin, 1, sh.vocab);
  int64_t rows = pass::InitialRowBudget(lay);
  while (true) {
    lay = pass::MakeLayout(offsets, n_seqs, score_begin, rows, sh.vocab);
    const cudaError_t e = AllocateScratch(m, lay);
    if (e == cudaSuccess) break;
    cudaGetLastError();
    if (e != cudaErrorMemoryAllocation || rows == lay.max_T) {
      return fail(CudaFail(err, e, "model_set_eval: scratch allocation", __FILE__, __LINE__));
    }
    rows = std::max(lay.max_T, rows / 2);
  }
  m->layout = std::move(lay);
  const pass::Layout& L = m->layout;

  if (int rc = Upload(m, err, tokens, L.total_rows, &m->tokens, "tokens"); rc != IMPQ_GPU_OK) {
    return fail(rc);
  }
  const std::vector<int32_t> targets = pass::Targets(L, tokens);
  if (int rc = Upload(m, err, targets.data(), L.total_scored, &m->targets, "targets");
      rc != IMPQ_GPU_OK) {
    return fail(rc);
  }
  if (const cudaError_t e = m->nll.Allocate(L.total_scored); e != cudaSuccess) {
    return fail(CudaFail(err, e, "model_set_eval: nll allocation", __FILE__, __LINE__));
  }
  m->nll_host.assign(static_cast<size_t>(L.total_scored), 0.0f);

  // Prefix cache: admit sequences in order while the total fits max_cache_bytes and the device
  // keeps a margin free; stop at the first that does not fit (so the cached sequences are a
  // prefix of the set and, in a batch, all restart together).
  m->cache.assign(static_cast<size_t>(n_seqs), pass::SeqCache());
  m->states.resize(static_cast<size_t>(n_seqs));
  size_t free_b = 0, total_b = 0;
  if (const cudaError_t e = cudaMemGetInfo(&free_b, &total_b); e != cudaSuccess) {
    return fail(CudaFail(err, e, "cudaMemGetInfo", __FILE__, __LINE__));
  }
  const int64_t margin =
      std::max(model_internal::kMinFreeMargin, static_cast<int64_t>(total_b / 32));
  int64_t free_left = static_cast<int64_t>(free_b);
  for (int64_t s = 0; s < n_seqs && max_cache_bytes > 0; ++s) {
    const int64_t bytes = pass::CacheBytes(L.SeqLen(s), sh);
    if (m->cache_bytes + bytes > max_cache_bytes || free_left - bytes < margin) break;
    if (const cudaError_t e = m->states[s].Allocate(bytes / 4); e != cudaSuccess) {
      cudaGetLastError();
      if (e != cudaErrorMemoryAllocation) {
        return fail(CudaFail(err, e, "model_set_eval: cache allocation", __FILE__, __LINE__));
      }
      break;  // out of memory after all: stop admitting, not an error
    }
    m->cache[s].enabled = true;
    m->cache_bytes += bytes;
    free_left -= bytes;
    ++m->cached_sequences;
  }
  if (const cudaError_t e = cudaStreamSynchronize(m->stream); e != cudaSuccess) {
    return fail(CudaFail(err, e, "model_set_eval: upload", __FILE__, __LINE__));
  }
  m->block_evals_done = m->block_evals_full = 0;
  m->has_eval = true;
  return IMPQ_GPU_OK;
}

int EvaluateImpl(ImpqGpuModel* m, ImpqGpuError* err, const uint8_t* variants, double* seq_nll) {
  if (variants == nullptr || seq_nll == nullptr) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_evaluate: %s is null",
                       variants == nullptr ? "variants" : "seq_nll");
  }
  if (!m->has_eval) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_evaluate: no evaluation set (model_set_eval)");
  }
  const pass::Shape& sh = m->shape;
  const std::string bad = pass::CheckVariants(
      sh, variants, [&](int i, int v) { return !m->linear[static_cast<size_t>(i)][v].empty(); });
  if (!bad.empty()) return SetGpuError(err, IMPQ_GPU_EINVAL, "model_evaluate: %s", bad.c_str());

  const pass::Layout& lay = m->layout;
  const std::vector<int> start = pass::RestartBlocks(sh, m->cache, variants);
  std::vector<bool> cached(static_cast<size_t>(lay.n_seqs));
  for (int64_t s = 0; s < lay.n_seqs; ++s) {
    cached[s] = m->cache[s].enabled;
    // The states of a sequence that runs are about to be overwritten: until this call
    // succeeds they belong to no assignment.
    if (start[s] < sh.n_layers) m->cache[s].valid = false;
  }
  const pass::Weights<bf16> w = WeightsView(m);
  const pass::Scratch<bf16> sc = ScratchView(m);
  if (m->profile) m->profile->Discard();
  CudaOps ops{m->stream, m->cublas, err, m->profile.get(), m->attn_ws.bytes()};
  pass::Pass<CudaOps> run(ops, sh, lay, w, sc);
  IMPQ_MODEL_TRY(run.Run(variants, start, cached));
  IMPQ_CUDA_RETURN(
      err, cudaMemcpyAsync(m->nll_host.data(), m->nll.get(), m->nll_host.size() * sizeof(float),
                           cudaMemcpyDeviceToHost, m->stream));
  IMPQ_CUDA_RETURN(err, cudaStreamSynchronize(m->stream));
  if (m->profile) m->profile->Collect();
  m->block_evals_done +=
      pass::Finish(sh, lay, start, m->nll_host.data(), variants, m->cache, seq_nll);
  m->block_evals_full += lay.n_seqs * sh.n_layers;
  return IMPQ_GPU_OK;
}

}  // namespace

int ModelCreate(int device, const ImpqGpuModelDesc* desc, ImpqGpuModel** out, ImpqGpuError* err) {
  ImpqGpuError local{};
  if (err == nullptr) err = &local;
  err->message[0] = '\0';
  if (out == nullptr) return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: out is null");
  *out = nullptr;
  if (desc == nullptr) return SetGpuError(err, IMPQ_GPU_EINVAL, "model_create: desc is null");
  ImpqGpuModel* m = nullptr;
  int rc;
  try {
    m = new ImpqGpuModel();
    model_internal::DeviceScope scope;  // CreateImpl selects `device` once it is checked
    if (const cudaError_t e = scope.Save(); e != cudaSuccess) {
      rc = CudaFail(err, e, "model_create: cudaGetDevice", __FILE__, __LINE__);
    } else {
      rc = CreateImpl(device, desc, m, err);
      if (rc != IMPQ_GPU_OK) DestroyResources(m);
    }
  } catch (const std::bad_alloc&) {
    rc = SetGpuError(err, IMPQ_GPU_ENOMEM, "model_create: host memory exhausted");
    if (m != nullptr) DestroyResources(m);
  }
  if (rc != IMPQ_GPU_OK) {
    delete m;
    return rc;
  }
  *out = m;
  return IMPQ_GPU_OK;
}

void ModelDestroy(ImpqGpuModel* model) {
  if (model == nullptr) return;
  {
    model_internal::DeviceScope scope;
    scope.Enter(model->device);
    DestroyResources(model);
  }
  delete model;
}

int ModelSetLinearPacked(ImpqGpuModel* model, int layer, int kind, int bits, int64_t group,
                         const uint8_t* packed, const float* scales, const float* zeros,
                         ImpqGpuError* err) {
  return Guarded(model, err, "model_set_linear_packed", [&](ImpqGpuError* e) -> int {
    ImpqGpuModel* m = model;
    IMPQ_MODEL_TRY(CheckLinear(m, e, "model_set_linear_packed", layer, kind));
    const int variant = impq_gpu_variant_of_bits(bits);
    if (variant < 0) {
      return SetGpuError(e, IMPQ_GPU_EINVAL,
                         "model_set_linear_packed: bits = %d; expected 2, 3, 4 or 8", bits);
    }
    const int64_t rows = m->shape.LinearRows(kind), cols = m->shape.LinearCols(kind);
    if (group <= 0) {
      return SetGpuError(e, IMPQ_GPU_EINVAL, "model_set_linear_packed: group = %lld; expected > 0",
                         static_cast<long long>(group));
    }
    if (packed == nullptr || scales == nullptr || zeros == nullptr) {
      return SetGpuError(e, IMPQ_GPU_EINVAL, "model_set_linear_packed: %s is null",
                         packed == nullptr   ? "packed"
                         : scales == nullptr ? "scales"
                                             : "zeros");
    }
    InvalidateCache(m);
    DeviceArray<uint8_t> d_packed;
    DeviceArray<float> d_scales, d_zeros;
    const int64_t code_bytes = rows * impq_code_bytes(bits, cols);
    const int64_t params = rows * impq_groups_per_row(cols, group);
    IMPQ_MODEL_TRY(Upload(m, e, packed, code_bytes, &d_packed, "packed"));
    IMPQ_MODEL_TRY(Upload(m, e, scales, params, &d_scales, "scales"));
    IMPQ_MODEL_TRY(Upload(m, e, zeros, params, &d_zeros, "zeros"));
    bf16* dst = nullptr;
    IMPQ_MODEL_TRY(VariantBuffer(m, e, layer, kind, variant, &dst));
    IMPQ_LAUNCH_RETURN(e, LaunchDequantize(bits, rows, cols, group, d_packed.get(), d_scales.get(),
                                           d_zeros.get(), nullptr, dst, m->stream));
    IMPQ_CUDA_RETURN(e, cudaStreamSynchronize(m->stream));  // before the temporaries go
    return IMPQ_GPU_OK;
  });
}

int ModelSetLinearF32(ImpqGpuModel* model, int layer, int kind, const float* w, ImpqGpuError* err) {
  return Guarded(model, err, "model_set_linear_f32", [&](ImpqGpuError* e) -> int {
    ImpqGpuModel* m = model;
    IMPQ_MODEL_TRY(CheckLinear(m, e, "model_set_linear_f32", layer, kind));
    InvalidateCache(m);
    DeviceArray<bf16>& buf =
        m->linear[static_cast<size_t>(layer) * kNumLinear + kind][IMPQ_GPU_VARIANT_FULL];
    return UploadAsBf16(m, e, w, m->shape.LinearRows(kind) * m->shape.LinearCols(kind), &buf, "w");
  });
}

int ModelSetLinearRtnWidths(ImpqGpuModel* model, int layer, int kind, const float* w,
                            int64_t group, unsigned widths_mask, int keep_full,
                            ImpqGpuError* err) {
  return Guarded(model, err, "model_set_linear_rtn_widths", [&](ImpqGpuError* e) -> int {
    ImpqGpuModel* m = model;
    IMPQ_MODEL_TRY(CheckLinear(m, e, "model_set_linear_rtn_widths", layer, kind));
    if (group <= 0) {
      return SetGpuError(e, IMPQ_GPU_EINVAL,
                         "model_set_linear_rtn_widths: group = %lld; expected > 0",
                         static_cast<long long>(group));
    }
    constexpr unsigned kAllWidths = IMPQ_GPU_WIDTH_MASK(2) | IMPQ_GPU_WIDTH_MASK(3) |
                                    IMPQ_GPU_WIDTH_MASK(4) | IMPQ_GPU_WIDTH_MASK(8);
    if (widths_mask == 0 || (widths_mask & ~kAllWidths) != 0) {
      return SetGpuError(e, IMPQ_GPU_EINVAL,
                         "model_set_linear_rtn_widths: widths_mask = 0x%x; expected a non-empty "
                         "set of the bits 2, 3, 4, 8 (mask 0x%x)",
                         widths_mask, kAllWidths);
    }
    InvalidateCache(m);
    const int64_t rows = m->shape.LinearRows(kind), cols = m->shape.LinearCols(kind);
    DeviceArray<float> d_w;
    IMPQ_MODEL_TRY(Upload(m, e, w, rows * cols, &d_w, "w"));
    for (int bits : {2, 3, 4, 8}) {
      if ((widths_mask & IMPQ_GPU_WIDTH_MASK(bits)) == 0) continue;
      DeviceArray<uint8_t> d_packed;
      DeviceArray<float> d_scales, d_zeros;
      const int64_t params = rows * impq_groups_per_row(cols, group);
      IMPQ_CUDA_RETURN(e, d_packed.Allocate(rows * impq_code_bytes(bits, cols)));
      IMPQ_CUDA_RETURN(e, d_scales.Allocate(params));
      IMPQ_CUDA_RETURN(e, d_zeros.Allocate(params));
      IMPQ_LAUNCH_RETURN(e, LaunchRtnQuantize(bits, rows, cols, group, d_w.get(), d_packed.get(),
                                              d_scales.get(), d_zeros.get(), m->stream));
      bf16* dst = nullptr;
      IMPQ_MODEL_TRY(VariantBuffer(m, e, layer, kind, impq_gpu_variant_of_bits(bits), &dst));
      IMPQ_LAUNCH_RETURN(e,
                         LaunchDequantize(bits, rows, cols, group, d_packed.get(), d_scales.get(),
                                          d_zeros.get(), nullptr, dst, m->stream));
      IMPQ_CUDA_RETURN(e, cudaStreamSynchronize(m->stream));  // before the temporaries go
    }
    if (keep_full != 0) {
      bf16* dst = nullptr;
      IMPQ_MODEL_TRY(VariantBuffer(m, e, layer, kind, IMPQ_GPU_VARIANT_FULL, &dst));
      IMPQ_LAUNCH_RETURN(e, LaunchF32ToBf16(d_w.get(), dst, rows * cols, m->stream));
    }
    IMPQ_CUDA_RETURN(e, cudaStreamSynchronize(m->stream));
    return IMPQ_GPU_OK;
  });
}

int ModelSetLinearRtn(ImpqGpuModel* model, int layer, int kind, const float* w, int64_t group,
                      int keep_full, ImpqGpuError* err) {
  return ModelSetLinearRtnWidths(model, layer, kind, w, group,
                                 IMPQ_GPU_WIDTH_MASK(2) | IMPQ_GPU_WIDTH_MASK(4), keep_full, err);
}

int ModelSetEval(ImpqGpuModel* model, const int32_t* tokens, const int64_t* offsets, int64_t n_seqs,
                 const int64_t* score_begin, int64_t max_cache_bytes, ImpqGpuError* err) {
  return Guarded(model, err, "model_set_eval", [&](ImpqGpuError* e) {
    return SetEvalImpl(model, e, tokens, offsets, n_seqs, score_begin, max_cache_bytes);
  });
}

int ModelEvaluate(ImpqGpuModel* model, const uint8_t* variants, double* seq_nll,
                  ImpqGpuError* err) {
  return Guarded(model, err, "model_evaluate",
                 [&](ImpqGpuError* e) { return EvaluateImpl(model, e, variants, seq_nll); });
}

int ModelStats(ImpqGpuModel* model, ImpqGpuEvalStats* stats, ImpqGpuError* err) {
  ImpqGpuError local{};
  if (err == nullptr) err = &local;
  if (model == nullptr || stats == nullptr) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "model_stats: %s is null",
                       model == nullptr ? "model" : "stats");
  }
  stats->block_evals_done = model->block_evals_done;
  stats->block_evals_full = model->block_evals_full;
  stats->cache_bytes = model->cache_bytes;
  stats->cached_sequences = model->cached_sequences;
  int64_t resident = model->embedding.bytes() + model->output.bytes();
  for (const auto& variants : model->linear) {
    for (const auto& v : variants) resident += v.bytes();
  }
  stats->resident_bytes = resident;
  return IMPQ_GPU_OK;
}

}  // namespace impq::gpu
