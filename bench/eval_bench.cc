// eval_bench: how fast is the CPU evaluator, against the machine's own sgemm peak?
//
// Prints a Markdown table: evaluation tokens/s and achieved GFLOP/s for the shared
// stories260K model (document mode on real text) and for a synthetic model of realistic shape
// (dim 768, 12 layers, hidden 2048, vocab 32000, random weights; stream mode, ctx 512, random
// tokens), at 1 and 2 threads, next to OpenBLAS's sgemm GFLOP/s measured in the same run at
// the same thread count (its own threading, best of several shapes), and the ratio.
//
// FLOPs counted: 2·T·(linear parameters) per sequence, the causal attention products
// (2 · 2 · head_dim · T(T+1)/2 per head and layer), and the output head for the scored rows
// only (the evaluator computes logits for those rows only). Norms, rotary embeddings and
// softmaxes are not counted.
//
//   build/bench/eval_bench [--threads-max 2] [--windows 2] [--quick]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/rng.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/matmul.h"
#include "worker/model/loader.h"

namespace impq {
namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best sgemm GFLOP/s over a few shapes (including the synthetic model's own) with OpenBLAS
// running `threads` threads itself.
double SgemmPeak(int threads) {
  openblas_set_num_threads(threads);
  struct Shape {
    int m, n, k;
  } shapes[] = {{512, 2048, 768}, {512, 768, 2048}, {1024, 1024, 1024}, {2048, 2048, 2048}};
  double best = 0;
  for (const Shape& s : shapes) {
    std::vector<float> a(static_cast<size_t>(s.m) * s.k, 0.5f), b(static_cast<size_t>(s.n) * s.k, 0.25f),
        c(static_cast<size_t>(s.m) * s.n);
    const double flops = 2.0 * s.m * s.n * s.k;
    // Warm up, then repeat for at least 0.3 s and keep the best repetition.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1, a.data(), s.k, b.data(), s.k, 0, c.data(), s.n);
    auto start = std::chrono::steady_clock::now();
    while (Seconds(start) < 0.3) {
      auto t0 = std::chrono::steady_clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1, a.data(), s.k, b.data(), s.k, 0, c.data(), s.n);
      best = std::max(best, flops / Seconds(t0) / 1e9);
    }
  }
  openblas_set_num_threads(1);
  return best;
}

double EvalFlops(const model::Model& m, const eval::EvalSet& set) {
  const auto& c = m.config;
  const double linear = static_cast<double>(m.LinearParameterCount());
  double flops = 0;
  for (const auto& s : set.sequences) {
    const double T = static_cast<double>(s.tokens.size());
    flops += 2.0 * T * linear;
    flops += static_cast<double>(c.n_layers) * c.n_heads * 2.0 * 2.0 * c.head_dim * T * (T + 1) / 2;
    flops += 2.0 * static_cast<double>(s.scored()) * c.dim * c.vocab_size;
  }
  return flops;
}

struct Row {
  std::string model;
  int threads;
  int64_t tokens;
  double seconds, tokens_per_s, gflops, peak;
};

Row Measure(const std::string& name, const model::Model& m, const eval::EvalSet& set, int threads,
            double peak) {
  forward::LlamaForward fwd(m);
  eval::Evaluator ev(fwd, threads);
  const auto w = forward::WeightSet::FromModel(m);
  // One warm-up pass on the first sequence (page faults, workspace allocation).
  eval::EvalSet warm = set;
  warm.sequences.resize(std::min<size_t>(warm.sequences.size(), static_cast<size_t>(threads)));
  (void)ev.Nll(w, warm);
  auto r = ev.Nll(w, set);
  if (!r.ok()) {
    std::cerr << r.status() << "\n";
    std::exit(1);
  }
  const double gflops = EvalFlops(m, set) / r->seconds / 1e9;
  return {name, threads, r->processed_tokens, r->seconds, r->tokens_per_s, gflops, peak};
}

int Main(int argc, char** argv) {
  int64_t threads_max = 2, windows = 2;
  bool quick = false;
  std::string data = "../shared/data";
#ifdef IMPQ_SHARED_DATA_DIR
  data = IMPQ_SHARED_DATA_DIR;
#endif
  if (const char* env = std::getenv("IMPQ_SHARED_DATA")) data = env;
  FlagSet flags("eval_bench");
  flags.Int("threads-max", &threads_max, "measure 1..N threads");
  flags.Int("windows", &windows, "synthetic-model windows of 512 tokens per thread");
  flags.Bool("quick", &quick, "smaller synthetic run (for a smoke test)");
  flags.String("data", &data, "shared data directory");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  forward::UseSingleThreadedBlas();
  std::printf("OpenBLAS core: %s, OPENBLAS_CORETYPE=%s, OPENBLAS_L2_SIZE=%s\n\n", openblas_get_corename(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)",
              std::getenv("OPENBLAS_L2_SIZE") ? std::getenv("OPENBLAS_L2_SIZE") : "(unset)");
  std::vector<double> peak(static_cast<size_t>(threads_max) + 1);
  for (int t = 1; t <= threads_max; ++t) peak[t] = SgemmPeak(t);

  std::vector<Row> rows;
  // The shared model on real text (document mode, the reference protocol).
  auto lm = model::LoadModelAndTokenizer(data + "/stories260K.bin", data + "/tok512.bin");
  auto text = ReadFileToString(data + "/tinystories_v2_valid_100.txt");
  if (!lm.ok() || !text.ok()) {
    std::cerr << (lm.ok() ? text.status() : lm.status()) << "\n";
    return 1;
  }
  auto set = eval::BuildEvalSet(*lm->tokenizer, *text, eval::EvalMode::kDocument, 512, 512, "text");
  for (int t = 1; t <= threads_max; ++t) rows.push_back(Measure("stories260K (document mode)", lm->model, *set, t, peak[t]));

  // A synthetic model of realistic shape, random weights and tokens.
  model::ModelConfig c;
  c.dim = 768;
  c.hidden_dim = 2048;
  c.n_layers = quick ? 2 : 12;
  c.n_heads = 12;
  c.n_kv_heads = 12;
  c.head_dim = 64;
  c.vocab_size = 32000;
  c.seq_len = 512;
  const auto synth = model::MakeRandomModel(c, 1);
  for (int t = 1; t <= threads_max; ++t) {
    eval::EvalSet s;
    s.mode = eval::EvalMode::kStream;
    s.ctx = 512;
    Rng rng(7);
    for (int64_t w = 0; w < windows * t; ++w) {
      eval::EvalSequence seq;
      seq.tokens.push_back(1);
      while (seq.tokens.size() < 512) seq.tokens.push_back(static_cast<int>(rng.Below(32000)));
      seq.score_begin = 256;
      s.scored_tokens += seq.scored();
      s.processed_tokens += 512;
      s.sequences.push_back(std::move(seq));
    }
    rows.push_back(Measure(absl::StrFormat("synthetic %d/%d/%d/%d (stream, ctx 512)", c.dim, c.n_layers, c.hidden_dim, c.vocab_size), synth, s, t, peak[t]));
  }

  std::printf("| model | threads | tokens | seconds | tokens/s | achieved GFLOP/s | sgemm peak GFLOP/s | achieved/peak |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %d | %lld | %.2f | %.0f | %.1f | %.1f | %.0f%% |\n", r.model.c_str(), r.threads,
                static_cast<long long>(r.tokens), r.seconds, r.tokens_per_s, r.gflops, r.peak,
                100 * r.gflops / r.peak);
  }
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
