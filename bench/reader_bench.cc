// reader_bench: what does loading a model cost, and how much of it is the check that every
// weight is finite (CheckFinite, issue 20)?
//
// Prints a Markdown table: for each form of the shared stories260K model, the median wall time
// of LoadModel (which includes the check) and of the check alone over every tensor the model
// holds (the tied head counted once), and the check's share; then the check's throughput on a
// synthetic 256 MiB tensor (64 Mi floats, resident in memory), to extrapolate to larger
// models (the check reads each weight once; a real load also pays the page faults of a memory
// map, which the check triggers first and the forward pass would otherwise pay).
//
//   build/bench/reader_bench [--reps 50]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/test_paths.h"
#include "worker/model/model_reader.h"

namespace impq {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Every tensor of `m` once (the tied output shares the embedding's storage).
std::vector<const model::Tensor*> Tensors(const model::Model& m) {
  std::vector<const model::Tensor*> out = {&m.embedding, &m.final_norm};
  if (m.output.data() != m.embedding.data()) out.push_back(&m.output);
  for (const model::LayerWeights& lw : m.layers) {
    for (const model::Tensor* t : {&lw.attn_norm, &lw.ffn_norm, &lw.q_norm, &lw.k_norm,
                                   &lw.post_attn_norm, &lw.post_ffn_norm}) {
      if (!t->empty()) out.push_back(t);
    }
    for (const model::Tensor& t : lw.linear) out.push_back(&t);
  }
  return out;
}

int Main(int argc, char** argv) {
  int64_t reps = 50;
  FlagSet flags("reader_bench");
  flags.Int("reps", &reps, "repetitions per measurement (the median is printed)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;

  std::printf("| model file | weights | LoadModel (ms) | finite check (ms) | check share | "
              "check GB/s |\n|---|---:|---:|---:|---:|---:|\n");
  for (const std::string& form :
       {"stories260K.bin", "stories260K.gguf", "stories260K-hf", "stories260K-hf-bf16"}) {
    const std::string path = SharedDataPath(form);
    std::vector<double> load, check;
    int64_t weights = 0;
    for (int64_t r = 0; r < reps; ++r) {
      auto t0 = Clock::now();
      auto m = model::LoadModel(path);
      load.push_back(Ms(t0));
      if (!m.ok()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), std::string(m.status().message()).c_str());
        return 1;
      }
      weights = 0;
      t0 = Clock::now();
      for (const model::Tensor* t : Tensors(*m)) {
        weights += t->numel();
        if (!model::CheckFinite(*t, t->name()).ok()) return 1;
      }
      check.push_back(Ms(t0));
    }
    const double l = Median(load), c = Median(check);
    std::printf("| %s | %lld | %.3f | %.3f | %.1f%% | %.1f |\n", form.c_str(),
                static_cast<long long>(weights), l, c, 100.0 * c / l,
                static_cast<double>(weights) * 4 / (c * 1e6));
  }
  std::vector<float> big(size_t{64} << 20, 0.5f);
  const model::Tensor t = model::Tensor::Owned("big", {64, 1 << 20}, std::move(big));
  std::vector<double> check;
  for (int64_t r = 0; r < std::max<int64_t>(3, reps / 10); ++r) {
    const auto t0 = Clock::now();
    if (!model::CheckFinite(t, "big").ok()) return 1;
    check.push_back(Ms(t0));
  }
  const double c = Median(check);
  std::printf("| synthetic [64, 1048576] F32 (256 MiB, resident) | %lld | - | %.1f | - | %.1f |\n",
              static_cast<long long>(t.numel()), c, 256.0 * 1.048576 / c);
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
