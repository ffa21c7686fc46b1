// Test fixture: the shared stories260K model (../shared/data) with its forward pass, a
// calibration set of the first stories of tinystories_v2_valid_100.txt, and RTN (group 64)
// quantized models, built once per test binary. Used by the engine's and the GPU path's
// tests; test-only (IMPQ_CHECK-fails when the shared data is missing).
#ifndef IMPQ_WORKER_ENGINE_STORIES_FIXTURE_H_
#define IMPQ_WORKER_ENGINE_STORIES_FIXTURE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/test_paths.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"
#include "worker/quant/quantizer.h"

namespace impq::engine::fixtures {

class StoriesFixture {
 public:
  // The first `stories` documents of the calibration text, each truncated to `ctx` tokens.
  StoriesFixture(int64_t ctx, int64_t stories) {
    auto loaded = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"),
                                               SharedDataPath("tok512.bin"));
    IMPQ_CHECK(loaded.ok()) << loaded.status();
    loaded_ = std::move(*loaded);
    fwd_ = std::make_unique<forward::LlamaForward>(loaded_.model);
    auto text = ReadFileToString(SharedDataPath("tinystories_v2_valid_100.txt"));
    IMPQ_CHECK(text.ok()) << text.status();
    auto set = eval::BuildEvalSet(*loaded_.tokenizer, *text, eval::EvalMode::kDocument, ctx,
                                  loaded_.model.config.seq_len, "calib");
    IMPQ_CHECK(set.ok()) << set.status();
    set_ = std::move(*set);
    set_.sequences.resize(static_cast<size_t>(stories));
    set_.scored_tokens = set_.processed_tokens = 0;
    for (const auto& s : set_.sequences) {
      set_.scored_tokens += s.scored();
      set_.processed_tokens += static_cast<int64_t>(s.tokens.size());
    }
  }

  const model::Model& model() const { return loaded_.model; }
  const model::Tokenizer& tokenizer() const { return *loaded_.tokenizer; }
  const forward::LlamaForward& fwd() const { return *fwd_; }
  const eval::EvalSet& set() const { return set_; }

  // RTN at group 64 with the given players, at the given widths.
  std::unique_ptr<quant::QuantizedModel> Quantize(
      quant::PlayerGranularity players,
      std::span<const int> widths = quant::QuantizedModel::kDefaultWidths) const {
    auto rtn = quant::MakeQuantizer("rtn");
    IMPQ_CHECK(rtn.ok());
    quant::QuantConfig cfg;
    cfg.group_size = 64;
    auto q = quant::QuantizedModel::Build(loaded_.model, **rtn, cfg, players, nullptr, nullptr,
                                          widths);
    IMPQ_CHECK(q.ok()) << q.status();
    return std::move(*q);
  }

 private:
  model::LoadedModel loaded_;
  std::unique_ptr<forward::LlamaForward> fwd_;
  eval::EvalSet set_;
};

}  // namespace impq::engine::fixtures

#endif  // IMPQ_WORKER_ENGINE_STORIES_FIXTURE_H_
