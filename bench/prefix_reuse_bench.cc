// prefix_reuse_bench: how much decoder-block work does prefix reuse save along SPQE's
// permutation walks, and what does it buy in time?
//
// For the shared stories260K model (5 blocks; players = 35 linear modules or 5 blocks) and a
// synthetic deeper model (16 blocks, dim 256, random weights), evaluates whole permutation
// walks (all-4-bit, then one player dropped to 2 bits per step) with the LocalEvaluator, once
// with prefix reuse and once without, and prints the saved fraction of block evaluations, of
// sublayer evaluations (reuse restarts at the attention or the feed-forward sublayer) and of
// the decoder's estimated FLOPs, both wall times, the speed-up, and whether every loss is bit
// for bit the same.
//
//   build/bench/prefix_reuse_bench [--walks 2] [--threads 2]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/rng.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "worker/engine/local_evaluator.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"

namespace impq {
namespace {

struct Row {
  std::string name;
  int players = 0, blocks = 0;
  int64_t coalitions = 0;
  double saved = 0, saved_sublayers = 0, saved_flops = 0, with_s = 0, without_s = 0;
  bool identical = true;
};

absl::StatusOr<Row> Measure(const std::string& name, const model::Model& m, const eval::EvalSet& set,
                            quant::PlayerGranularity g, int walks, int threads) {
  auto quantizer = quant::MakeQuantizer("rtn");
  if (!quantizer.ok()) return quantizer.status();
  quant::QuantConfig cfg;
  cfg.group_size = 64;
  auto qm = quant::QuantizedModel::Build(m, **quantizer, cfg, g, nullptr);
  if (!qm.ok()) return qm.status();
  forward::LlamaForward fwd(m);
  solver::SeededPermutationSampler sampler((*qm)->num_players(), 0, /*antithetic=*/false);
  std::vector<solver::Coalition> coalitions;
  for (int k = 0; k < walks; ++k) {
    for (auto& c : solver::WalkCoalitions(sampler.Get(static_cast<uint64_t>(k)))) coalitions.push_back(std::move(c));
  }
  Row row{name, (*qm)->num_players(), m.config.n_layers, static_cast<int64_t>(coalitions.size())};
  std::vector<double> losses[2];
  for (int reuse = 1; reuse >= 0; --reuse) {
    engine::LocalEvaluatorOptions opt;
    opt.threads = threads;
    opt.max_cache_bytes = reuse ? (int64_t{1} << 32) : 0;
    auto ev = engine::LocalEvaluator::Create(**qm, fwd, set, opt);
    if (!ev.ok()) return ev.status();
    // One walk at a time, as a worker receives them.
    const size_t per_walk = coalitions.size() / static_cast<size_t>(walks);
    for (int k = 0; k < walks; ++k) {
      auto r = (*ev)->Evaluate(std::span<const solver::Coalition>(coalitions).subspan(k * per_walk, per_walk));
      if (!r.ok()) return r.status();
      losses[reuse].insert(losses[reuse].end(), r->begin(), r->end());
    }
    (reuse ? row.with_s : row.without_s) = (*ev)->stats().seconds;
    if (reuse) {
      row.saved = (*ev)->stats().SavedFraction();
      row.saved_sublayers = (*ev)->stats().SublayerSavedFraction();
      row.saved_flops = (*ev)->stats().FlopSavedFraction();
    }
  }
  row.identical = std::memcmp(losses[0].data(), losses[1].data(), losses[0].size() * sizeof(double)) == 0;
  return row;
}

int Main(int argc, char** argv) {
  int64_t walks = 2, threads = 2;
  std::string data = "../shared/data";
#ifdef IMPQ_SHARED_DATA_DIR
  data = IMPQ_SHARED_DATA_DIR;
#endif
  if (const char* env = std::getenv("IMPQ_SHARED_DATA")) data = env;
  FlagSet flags("prefix_reuse_bench");
  flags.Int("walks", &walks, "permutation walks per model");
  flags.Int("threads", &threads, "threads");
  flags.String("data", &data, "shared data directory");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  std::vector<Row> rows;
  auto fail = [](const absl::Status& s) {
    std::cerr << s << "\n";
    return 1;
  };
  auto lm = model::LoadModelAndTokenizer(data + "/stories260K.bin", data + "/tok512.bin");
  if (!lm.ok()) return fail(lm.status());
  auto text = ReadFileToString(data + "/tinystories_v2_valid_100.txt");
  if (!text.ok()) return fail(text.status());
  auto set = eval::BuildEvalSet(*lm->tokenizer, *text, eval::EvalMode::kDocument, 512, 512, "text");
  if (!set.ok()) return fail(set.status());
  set->sequences.resize(30);  // the first 30 stories: calibration-sized
  for (auto g : {quant::PlayerGranularity::kModule, quant::PlayerGranularity::kBlock}) {
    auto r = Measure(std::string("stories260K, ") + quant::PlayerGranularityName(g) + " players", lm->model, *set, g,
                     static_cast<int>(walks), static_cast<int>(threads));
    if (!r.ok()) return fail(r.status());
    rows.push_back(*r);
  }
  model::ModelConfig c;
  c.dim = 256;
  c.hidden_dim = 688;
  c.n_layers = 16;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.head_dim = 32;
  c.vocab_size = 512;
  c.seq_len = 256;
  const auto synth = model::MakeRandomModel(c, 3);
  eval::EvalSet s;
  Rng rng(5);
  for (int w = 0; w < 8; ++w) {
    eval::EvalSequence seq;
    seq.tokens.push_back(1);
    while (seq.tokens.size() < 256) seq.tokens.push_back(static_cast<int>(rng.Below(512)));
    s.scored_tokens += seq.scored();
    s.processed_tokens += 256;
    s.sequences.push_back(std::move(seq));
  }
  for (auto g : {quant::PlayerGranularity::kModule, quant::PlayerGranularity::kBlock}) {
    auto r = Measure(std::string("synthetic 16 blocks (dim 256), ") + quant::PlayerGranularityName(g) + " players",
                     synth, s, g, static_cast<int>(walks), static_cast<int>(threads));
    if (!r.ok()) return fail(r.status());
    rows.push_back(*r);
  }

  std::printf("| model | players | blocks | coalitions | saved block evaluations | saved sublayer evaluations | saved decoder FLOPs | s with reuse | s without | speed-up | losses identical |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Row& row : rows) {
    std::printf("| %s | %d | %d | %lld | %.1f%% | %.1f%% | %.1f%% | %.2f | %.2f | %.2fx | %s |\n", row.name.c_str(),
                row.players, row.blocks, static_cast<long long>(row.coalitions), 100 * row.saved,
                100 * row.saved_sublayers, 100 * row.saved_flops, row.with_s, row.without_s,
                row.without_s / row.with_s, row.identical ? "yes" : "NO");
  }
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
