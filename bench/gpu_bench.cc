// gpu_bench: how fast is the whole-model loss on the GPU, against cuBLAS's own bf16 GEMM peak
// measured in the same run, how much does prefix reuse save along walks, and how long would
// the paper's job (100 permutations of Llama-3.1-8B with block players) take on 1 and 8 GPUs?
//
// For synthetic models with the shapes of Llama-3.2-1B and Llama-3.1-8B (random weights, RTN
// variants at each of --widths quantized on the device from host f32 generated one module at
// a time: model_set_linear_rtn_widths) it evaluates `--seqs` sequences of `--tokens` random
// tokens (every position scored):
//   1. full evaluations (prefix cache off; all-widest, all-narrowest and a random mix): wall
//      time per evaluation, tokens/s, achieved TFLOP/s of the WHOLE evaluation (embedding,
//      norms, attention, head, NLL and the host round trip included), where
//        FLOPs = 2 · linear params · tokens                      (the seven GEMMs per block)
//              + layers · seqs · 4 · (T²/2) · q_dim              (causal q·k and p·v)
//              + 2 · dim · vocab · scored tokens                 (the output head)
//      against cuBLAS bf16 GEMM throughput (api.bench_gemm_tflops) at 8192³ and at the model's
//      own GEMM shapes (rows = the plugin's batch of 8192 rows; the head at its chunk rows),
//      combined into one "model-shape peak" = Σ flops / Σ (flops / peak) over one evaluation;
//   2. permutation walks with the prefix cache on (solver/width_ladder.h: from all-widest to
//      all-narrowest, one player one rung per step), with module players (`--walk_steps` of
//      the walk) and with block players (`--block_walks` whole walks, the paper's players):
//      the saved fraction of block evaluations, seconds per step, the speed-up of a step over
//      a full evaluation, and whether the walk's losses are bit-identical to full evaluations
//      (three steps of the module walk re-run with the cache off);
//   3. the projection (bench/gpu_projection.h): 100 permutations (`--permutations`) of block
//      players on 1 GPU from the measured block walks, and on `--gpus` GPUs with the service's
//      measured parallel efficiency (`--scaling W:S`, required: e.g. cluster_bench's 2-worker
//      speed-up, README "The whole job across worker processes").
// Prints Markdown tables (the device's name first).
//
//   build/bench/gpu_bench --scaling W:S [--shapes 1b,8b] [--widths 2,4] [--seqs 8]
//                         [--tokens 2048] [--iters 3] [--walk_steps 0 (= the whole walk)]
//                         [--block_walks 2] [--permutations 100] [--gpus 1,8] [--device 0]
//
// Exit codes: 0 every shape ran; 1 a shape failed (its error is printed); 2 bad flags;
// 77 skipped: no CUDA plugin, no device, or a plugin too old for --widths (the reason is
// printed; 77 is the "skipped" code of automake and CTest's SKIP_RETURN_CODE convention).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/gpu_projection.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/rng.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"
#include "worker/forward/rope.h"
#include "worker/gpu/gpu_api.h"
#include "worker/gpu/gpu_runtime.h"
#include "worker/model/model.h"

namespace impq {
namespace {

using gpu::GpuRuntime;

struct Shape {
  std::string name;
  int dim, hidden, layers, heads, kv_heads, head_dim, vocab;
  float rope_theta, rope_factor;
};

const Shape kShapes[] = {
    {"llama-3.2-1b", 2048, 8192, 16, 32, 8, 64, 128256, 500000.0f, 32.0f},
    {"llama-3.1-8b", 4096, 14336, 32, 32, 8, 128, 128256, 500000.0f, 8.0f},
};

// Fills v with uniform values of standard deviation `std` (seeded, multi-threaded: the 8B
// shape has 7e9 weights).
void FillRandom(std::vector<float>& v, uint64_t seed, float std_dev) {
  const int threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  const size_t chunk = (v.size() + threads - 1) / threads;
  const float half_width = std_dev * std::sqrt(3.0f);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      uint64_t x = DeriveSeed(seed, static_cast<uint64_t>(t)) | 1;
      const size_t end = std::min(v.size(), (t + 1) * chunk);
      for (size_t i = t * chunk; i < end; ++i) {
        x ^= x << 13;  // xorshift64: fast; statistical quality is irrelevant for timing
        x ^= x >> 7;
        x ^= x << 17;
        const float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        v[i] = half_width * (2.0f * u - 1.0f);
      }
    });
  }
  for (auto& th : pool) th.join();
}

struct Check {
  const ImpqGpuApi& api;
  bool operator()(int rc, const ImpqGpuError& err, const std::string& what) const {
    if (rc == IMPQ_GPU_OK) return true;
    std::cerr << "gpu_bench: " << GpuRuntime::ToStatus(rc, err, what) << "\n";
    return false;
  }
};

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

constexpr int kExitSkipped = 77;

// One permutation walk's figures.
struct Walk {
  std::string players;  // "module" / "block"
  int n_players = 0, walks = 0, steps = 0;  // steps: evaluations over all walks
  double seconds = 0;                       // wall time of all steps
  double saved = 0;                         // saved fraction of block evaluations
  int64_t cache_bytes = 0, cached = 0;
  bool identical = true;
  int identical_checked = 0;  // steps re-run with the cache off (module walk only)
};

struct Result {
  std::string shape;
  double linear_params = 0, setup_s = 0, eval_s = 0, tokens_per_s = 0, tflops = 0;
  double peak_square = 0, peak_model = 0;
  std::vector<std::string> gemm_rows;  // the per-shape GEMM table
  std::vector<Walk> walks;             // module walk, block walks
};

// The plugin's variant table with player p (covering `per_player` consecutive modules of
// layer-major order: 1 for module players, 7 for block players) at bits[p].
std::vector<uint8_t> VariantsOfBits(const std::vector<int>& bits, int per_player) {
  std::vector<uint8_t> v(bits.size() * static_cast<size_t>(per_player));
  for (size_t p = 0; p < bits.size(); ++p) {
    for (int j = 0; j < per_player; ++j) {
      v[p * per_player + j] = static_cast<uint8_t>(impq_gpu_variant_of_bits(bits[p]));
    }
  }
  return v;
}

// The bits per player of every step of walks [0, walks) of the widths' ladder over n players
// (for two widths: SeededPermutationSampler's walks, all-wider to all-narrower).
std::vector<std::vector<int>> WalkBits(int n, const std::vector<int>& widths, uint64_t seed,
                                       int walks, int64_t max_steps) {
  auto ladder = solver::WidthLadder::Create(n, widths);
  IMPQ_CHECK(ladder.ok()) << ladder.status();  // widths validated by Main
  const solver::LadderPermutationSampler sampler(*ladder, seed, false);
  std::vector<std::vector<int>> out;
  for (int k = 0; k < walks; ++k) {
    std::vector<solver::Coalition> walk = solver::WalkCoalitions(sampler.Get(k));
    if (max_steps > 0 && static_cast<size_t>(max_steps) < walk.size()) walk.resize(max_steps);
    for (const solver::Coalition& q : walk) {
      auto bits = ladder->BitsOf(q);
      IMPQ_CHECK(bits.ok()) << bits.status();
      out.push_back(*std::move(bits));
    }
  }
  return out;
}

// Everything for one shape; false when it could not run (message printed).
bool RunShape(GpuRuntime& rt, int device, const Shape& s, const std::vector<int>& widths,
              int64_t seqs, int64_t T, int64_t iters, int64_t walk_steps, int64_t block_walks,
              Result* out) {
  const ImpqGpuApi& api = rt.api();
  Check ok{api};
  ImpqGpuError err{};
  Result& r = *out;
  r.shape = s.name;
  model::ModelConfig c;
  c.dim = s.dim;
  c.hidden_dim = s.hidden;
  c.n_layers = s.layers;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.vocab_size = s.vocab;
  c.seq_len = static_cast<int>(T);
  c.rope_theta = s.rope_theta;
  c.rope_style = model::RopeStyle::kHalf;
  c.rope_scaling.factor = s.rope_factor;
  const int64_t D = c.dim, qd = c.q_dim(), kvd = c.kv_dim(), H = c.hidden_dim, V = c.vocab_size;
  const int L = c.n_layers;

  const auto t_setup = std::chrono::steady_clock::now();
  // Everything but the linear modules (tied head: Llama-3.2-1B's choice; the plugin keeps a
  // bf16 copy of the head either way).
  std::vector<float> embedding(static_cast<size_t>(V * D));
  FillRandom(embedding, 1, 0.02f);
  std::vector<float> ones(static_cast<size_t>(D), 1.0f);
  const int half = c.head_dim / 2;
  const std::vector<double> inv_freq = forward::RopeInvFrequencies(c);
  std::vector<float> cos(static_cast<size_t>(T * half)), sin(cos.size());
  for (int64_t p = 0; p < T; ++p) {
    for (int i = 0; i < half; ++i) {
      cos[p * half + i] = static_cast<float>(std::cos(p * inv_freq[i]));
      sin[p * half + i] = static_cast<float>(std::sin(p * inv_freq[i]));
    }
  }
  std::vector<ImpqGpuLayerNorms> norms(
      static_cast<size_t>(L), {ones.data(), ones.data(), nullptr, nullptr, nullptr, nullptr});
  ImpqGpuModelDesc d{};
  d.dim = c.dim;
  d.hidden_dim = c.hidden_dim;
  d.n_layers = L;
  d.n_heads = c.n_heads;
  d.n_kv_heads = c.n_kv_heads;
  d.head_dim = c.head_dim;
  d.vocab_size = c.vocab_size;
  d.seq_len = c.seq_len;
  d.norm_eps = 1e-5f;
  d.rope_style = IMPQ_GPU_ROPE_HALF;
  d.rope_cos = cos.data();
  d.rope_sin = sin.data();
  d.embed_scale = 1.0f;
  d.ffn_activation = IMPQ_GPU_ACT_SILU;
  d.attn_scale = c.AttentionScale();
  d.embedding = embedding.data();
  d.output = embedding.data();
  d.final_norm = ones.data();
  d.layers = norms.data();
  ImpqGpuModel* raw = nullptr;
  if (!ok(api.model_create(device, &d, &raw, &err), err, s.name + ": model_create")) return false;
  std::unique_ptr<ImpqGpuModel, void (*)(ImpqGpuModel*)> m(raw, api.model_destroy);
  embedding = {};

  unsigned mask = 0;
  for (int b : widths) mask |= IMPQ_GPU_WIDTH_MASK(b);
  std::vector<float> w;
  for (int l = 0; l < L; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) {
      const auto kind = static_cast<model::LinearKind>(k);
      w.resize(static_cast<size_t>(c.LinearRows(kind) * c.LinearCols(kind)));
      FillRandom(w, DeriveSeed(100 + l, k), 0.02f);
      r.linear_params += static_cast<double>(w.size());
      // A version-1 plugin has no model_set_linear_rtn_widths; Main let it through only for
      // widths {2, 4}, which its model_set_linear_rtn quantizes.
      const int rc = api.model_set_linear_rtn_widths != nullptr
                         ? api.model_set_linear_rtn_widths(m.get(), l, k, w.data(), 64, mask, 0,
                                                           &err)
                         : api.model_set_linear_rtn(m.get(), l, k, w.data(), 64, 0, &err);
      if (!ok(rc, err, s.name + ": model_set_linear_rtn_widths")) return false;
    }
  }
  w = {};
  r.setup_s = Seconds(t_setup);

  // The evaluation set: random tokens, every position after the first scored.
  Rng rng(7);
  std::vector<int32_t> tokens(static_cast<size_t>(seqs * T));
  for (auto& t : tokens) t = static_cast<int32_t>(rng.Below(static_cast<uint64_t>(V)));
  std::vector<int64_t> offsets(static_cast<size_t>(seqs + 1)), begin(static_cast<size_t>(seqs), 0);
  for (int64_t i = 0; i <= seqs; ++i) offsets[i] = i * T;
  const double scored = static_cast<double>(seqs * (T - 1));
  auto set_eval = [&](int64_t cache) {
    return ok(
        api.model_set_eval(m.get(), tokens.data(), offsets.data(), seqs, begin.data(), cache, &err),
        err, s.name + ": model_set_eval");
  };
  const int n_modules = L * model::kNumLinear;
  const size_t nv = static_cast<size_t>(n_modules);
  std::vector<int> mixed_bits(nv);
  for (int& b : mixed_bits) b = widths[rng.Below(widths.size())];
  const std::vector<uint8_t> widest = VariantsOfBits(std::vector<int>(nv, widths.back()), 1);
  const std::vector<uint8_t> narrowest = VariantsOfBits(std::vector<int>(nv, widths.front()), 1);
  const std::vector<uint8_t> mixed = VariantsOfBits(mixed_bits, 1);
  std::vector<double> sums(static_cast<size_t>(seqs));

  // 1. Full evaluations.
  if (!set_eval(0)) return false;
  if (!ok(api.model_evaluate(m.get(), widest.data(), sums.data(), &err), err, "warm-up"))
    return false;
  const std::vector<uint8_t>* assignments[] = {&widest, &narrowest, &mixed};
  const auto t_eval = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) {
    if (!ok(api.model_evaluate(m.get(), assignments[i % 3]->data(), sums.data(), &err), err,
            "model_evaluate")) {
      return false;
    }
  }
  r.eval_s = Seconds(t_eval) / static_cast<double>(iters);
  const double n_tok = static_cast<double>(seqs * T);
  const double flops = 2.0 * r.linear_params * n_tok +
                       static_cast<double>(L) * seqs * 4.0 * (static_cast<double>(T) * T / 2) * qd +
                       2.0 * D * V * scored;
  r.tokens_per_s = n_tok / r.eval_s;
  r.tflops = flops / r.eval_s / 1e12;

  // cuBLAS peak in the same run.
  double peak = 0;
  if (!ok(api.bench_gemm_tflops(device, 8192, 8192, 8192, 20, &peak, &err), err, "bench_gemm")) {
    return false;
  }
  r.peak_square = peak;
  const int64_t rows = std::min<int64_t>(8192, seqs * T);  // the plugin's batch (model.cu)
  const int64_t head_rows = std::max<int64_t>(64, ((int64_t{512} << 20) / (V * 4)) / 64 * 64);
  struct Gemm {
    const char* what;
    int64_t m, n, k;
    double per_eval;  // FLOPs of this shape in one evaluation
  };
  const Gemm gemms[] = {
      {"q", rows, qd, D, 2.0 * n_tok * qd * D * L},
      {"k, v", rows, kvd, D, 2.0 * 2 * n_tok * kvd * D * L},
      {"o", rows, D, qd, 2.0 * n_tok * D * qd * L},
      {"gate, up", rows, H, D, 2.0 * 2 * n_tok * H * D * L},
      {"down", rows, D, H, 2.0 * n_tok * D * H * L},
      {"head", head_rows, V, D, 2.0 * scored * V * D},
  };
  double f_sum = 0, t_sum = 0;
  for (const Gemm& g : gemms) {
    double tf = 0;
    if (!ok(api.bench_gemm_tflops(device, g.m, g.n, g.k, 20, &tf, &err), err, "bench_gemm")) {
      return false;
    }
    f_sum += g.per_eval;
    t_sum += g.per_eval / tf;
    char line[256];
    std::snprintf(line, sizeof(line), "| %s | %s | %lld x %lld x %lld | %.1f |", s.name.c_str(),
                  g.what, static_cast<long long>(g.m), static_cast<long long>(g.n),
                  static_cast<long long>(g.k), tf);
    r.gemm_rows.push_back(line);
  }
  r.peak_model = f_sum / t_sum;

  // 2. Permutation walks with prefix reuse: module players, then block players (7 modules
  // each). Each walk set starts from a fresh cache (model_set_eval), so its first step is a
  // full evaluation, as the first step of every walk of a job is.
  auto run_walks = [&](const char* players, int per_player, int walks, int64_t max_steps,
                       bool check_identity, Walk* wk) {
    const int n = n_modules / per_player;
    wk->players = players;
    wk->n_players = n;
    wk->walks = walks;
    const std::vector<std::vector<int>> steps = WalkBits(n, widths, 11, walks, max_steps);
    wk->steps = static_cast<int>(steps.size());
    if (!set_eval(int64_t{1} << 40)) return false;  // the plugin caps it by free memory
    std::vector<std::vector<double>> walk_sums;
    const auto t_walk = std::chrono::steady_clock::now();
    for (const std::vector<int>& bits : steps) {
      if (!ok(api.model_evaluate(m.get(), VariantsOfBits(bits, per_player).data(), sums.data(),
                                 &err),
              err, std::string(players) + " walk model_evaluate")) {
        return false;
      }
      if (check_identity) walk_sums.push_back(sums);
    }
    wk->seconds = Seconds(t_walk);
    ImpqGpuEvalStats st{};
    if (!ok(api.model_stats(m.get(), &st, &err), err, "model_stats")) return false;
    wk->saved = st.block_evals_full > 0
                    ? 1.0 - static_cast<double>(st.block_evals_done) / st.block_evals_full
                    : 0.0;
    wk->cache_bytes = st.cache_bytes;
    wk->cached = st.cached_sequences;
    if (check_identity) {
      // Bit-identity with full evaluations at the first, middle and last step.
      if (!set_eval(0)) return false;
      for (size_t k : {size_t{0}, steps.size() / 2, steps.size() - 1}) {
        if (!ok(api.model_evaluate(m.get(), VariantsOfBits(steps[k], per_player).data(),
                                   sums.data(), &err),
                err, "check model_evaluate")) {
          return false;
        }
        wk->identical = wk->identical && std::memcmp(sums.data(), walk_sums[k].data(),
                                                     sums.size() * sizeof(double)) == 0;
        ++wk->identical_checked;
      }
    }
    return true;
  };
  r.walks.resize(2);
  if (!run_walks("module", 1, 1, walk_steps, true, &r.walks[0])) return false;
  if (!run_walks("block", model::kNumLinear, static_cast<int>(block_walks), 0, false,
                 &r.walks[1])) {
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  std::string shapes = "1b,8b", widths_text = "2,4", scaling_text, gpus_text = "1,8";
  int64_t seqs = 8, tokens = 2048, iters = 3, walk_steps = 0, block_walks = 2,
          permutations = 100, device = 0;
  FlagSet flags("gpu_bench");
  flags.String("scaling", &scaling_text,
               "W:S, the service's measured speed-up S with W workers over one (e.g. "
               "cluster_bench's 2-worker ratio); projects the job on --gpus GPUs",
               /*required=*/true);
  flags.String("shapes", &shapes, "comma-separated: 1b (Llama-3.2-1B), 8b (Llama-3.1-8B)");
  flags.String("widths", &widths_text,
               "the game's widths, ascending, of 2, 3, 4, 8 (each kept on the device as bf16)");
  flags.Int("seqs", &seqs, "sequences per evaluation");
  flags.Int("tokens", &tokens, "tokens per sequence");
  flags.Int("iters", &iters, "timed full evaluations per shape");
  flags.Int("walk_steps", &walk_steps, "steps of the module-player walk (0: the whole walk)");
  flags.Int("block_walks", &block_walks, "whole block-player walks timed for the projection");
  flags.Int("permutations", &permutations, "permutations of the projected job");
  flags.String("gpus", &gpus_text, "comma-separated GPU counts of the projection");
  flags.Int("device", &device, "CUDA device ordinal");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (seqs < 1 || tokens < 2 || iters < 1 || walk_steps < 0 || block_walks < 1 ||
      permutations < 1) {
    std::cerr << "gpu_bench: --seqs >= 1, --tokens >= 2, --iters >= 1, --walk_steps >= 0, "
                 "--block_walks >= 1, --permutations >= 1\n";
    return 2;
  }
  const absl::StatusOr<bench::ScalingFigure> scaling = bench::ParseScaling(scaling_text);
  if (!scaling.ok()) {
    std::cerr << "gpu_bench: " << scaling.status().message() << "\n";
    return 2;
  }
  std::vector<int64_t> gpus;
  for (absl::string_view g : absl::StrSplit(gpus_text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(g, &v) || v < 1) {
      std::cerr << "gpu_bench: --gpus \"" << gpus_text << "\": expected counts >= 1\n";
      return 2;
    }
    gpus.push_back(v);
  }
  std::vector<int> widths;
  for (absl::string_view b : absl::StrSplit(widths_text, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(b, &v) || impq_gpu_variant_of_bits(v) < 0 ||
        (!widths.empty() && v <= widths.back())) {
      std::cerr << "gpu_bench: --widths \"" << widths_text
                << "\": expected ascending widths of 2, 3, 4, 8\n";
      return 2;
    }
    widths.push_back(v);
  }
  if (widths.size() < 2) {
    std::cerr << "gpu_bench: --widths \"" << widths_text << "\": at least two widths\n";
    return 2;
  }
  std::vector<const Shape*> chosen;
  for (absl::string_view name : absl::StrSplit(shapes, ',')) {
    const Shape* shape = nullptr;
    for (const Shape& s : kShapes) {
      if (s.name.find(std::string(name)) != std::string::npos) shape = &s;
    }
    if (shape == nullptr) {
      std::cerr << "gpu_bench: unknown shape \"" << name << "\" (1b, 8b)\n";
      return 2;
    }
    chosen.push_back(shape);
  }

  auto rt = GpuRuntime::Load();
  if (!rt.ok()) {
    std::cout << "gpu_bench: skipped (exit " << kExitSkipped
              << "), the CUDA plugin did not load: " << rt.status().message() << "\n";
    return kExitSkipped;
  }
  if ((*rt)->device_count() == 0) {
    std::cout << "gpu_bench: skipped (exit " << kExitSkipped
              << "), no CUDA device: " << (*rt)->no_device_reason() << "\n";
    return kExitSkipped;
  }
  if (absl::Status w = GpuRuntime::CheckWidths((*rt)->api_version(), (*rt)->plugin_path(), widths);
      !w.ok()) {
    std::cout << "gpu_bench: skipped (exit " << kExitSkipped << "), " << w.message() << "\n";
    return kExitSkipped;
  }
  auto info = (*rt)->DeviceInfo(static_cast<int>(device));
  if (!info.ok()) {
    std::cerr << "gpu_bench: " << info.status() << "\n";
    return 2;
  }
  std::vector<Result> results;
  for (const Shape* shape : chosen) {
    Result r;
    std::cerr << "gpu_bench: " << shape->name << " ...\n";
    if (RunShape(**rt, static_cast<int>(device), *shape, widths, seqs, tokens, iters, walk_steps,
                 block_walks, &r)) {
      results.push_back(r);
    } else {
      std::cerr << "gpu_bench: " << shape->name << " did not run (see above)\n";
    }
  }
  std::printf("GPU: %s (sm_%d%d, %d SMs, %.1f GiB), driver %d, runtime %d, plugin API %d; "
              "widths [%s]\n\n",
              info->name, info->cc_major, info->cc_minor, info->sm_count,
              static_cast<double>(info->total_bytes) / (1 << 30), info->driver_version,
              info->runtime_version, (*rt)->api_version(), absl::StrJoin(widths, ", ").c_str());
  std::printf(
      "| shape | linear params | seqs x tokens | setup s | s / evaluation | tokens/s | "
      "TFLOP/s | cuBLAS bf16 8192^3 | cuBLAS at model shapes | of 8192^3 peak | of "
      "model-shape peak |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Result& r : results) {
    std::printf(
        "| %s | %.2fB | %lld x %lld | %.1f | %.3f | %.0f | %.1f | %.1f | %.1f | %.1f%% | "
        "%.1f%% |\n",
        r.shape.c_str(), r.linear_params / 1e9, static_cast<long long>(seqs),
        static_cast<long long>(tokens), r.setup_s, r.eval_s, r.tokens_per_s, r.tflops,
        r.peak_square, r.peak_model, 100 * r.tflops / r.peak_square, 100 * r.tflops / r.peak_model);
  }
  std::printf("\n| shape | GEMM | m x n x k | cuBLAS TFLOP/s |\n|---|---|---|---:|\n");
  for (const Result& r : results) {
    for (const std::string& line : r.gemm_rows) std::printf("%s\n", line.c_str());
  }
  std::printf(
      "\n| shape | players | walks | steps | sequences cached | cache GiB | saved block "
      "evaluations | walk s | s / step | speed-up over full evaluation | bit-identical to "
      "full (steps checked) |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Result& r : results) {
    for (const Walk& wk : r.walks) {
      const double per_step = wk.seconds / wk.steps;
      std::printf("| %s | %d %s | %d | %d | %lld | %.1f | %.1f%% | %.1f | %.3f | %.2fx | %s |\n",
                  r.shape.c_str(), wk.n_players, wk.players.c_str(), wk.walks, wk.steps,
                  static_cast<long long>(wk.cached),
                  static_cast<double>(wk.cache_bytes) / (1 << 30), 100 * wk.saved, wk.seconds,
                  per_step, r.eval_s / per_step,
                  wk.identical_checked == 0
                      ? "not checked"
                      : (std::string(wk.identical ? "yes" : "NO") + " (" +
                         std::to_string(wk.identical_checked) + ")")
                            .c_str());
    }
  }
  std::printf(
      "\n%lld permutations with block players, from the measured block walks; more than one "
      "GPU at the service's measured parallel efficiency %.3f (--scaling %lld:%.3f):\n\n"
      "| shape | widths | calibration seqs x tokens | evaluations / permutation | "
      "s / permutation (1 GPU) |",
      static_cast<long long>(permutations), scaling->Efficiency(),
      static_cast<long long>(scaling->workers), scaling->speedup);
  for (int64_t g : gpus) {
    std::printf(" %lld GPU%s hours |", static_cast<long long>(g), g > 1 ? "s" : "");
  }
  std::printf("\n|---|---|---:|---:|---:|");
  for (size_t i = 0; i < gpus.size(); ++i) std::printf("---:|");
  std::printf("\n");
  for (const Result& r : results) {
    const Walk& wk = r.walks[1];
    const double per_walk = wk.seconds / wk.walks;
    std::printf("| %s | %s | %lld x %lld | %d | %.1f |", r.shape.c_str(),
                absl::StrJoin(widths, ",").c_str(), static_cast<long long>(seqs),
                static_cast<long long>(tokens), wk.steps / wk.walks, per_walk);
    for (int64_t g : gpus) {
      std::printf(" %.2f |", bench::ProjectedSeconds(per_walk, permutations, g, *scaling) / 3600);
    }
    std::printf("\n");
  }
  return results.size() == chosen.size() ? 0 : 1;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
