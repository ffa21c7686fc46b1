#include <cmath>
#include <cstring>

#include "common/file_util.h"
#include "common/rng.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/eval/eval_set.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward_ref.h"
#include "worker/model/loader.h"

namespace impq::eval {
namespace {

using ::testing::HasSubstr;

model::LoadedModel LoadShared() {
  auto lm = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"), SharedDataPath("tok512.bin"));
  EXPECT_TRUE(lm.ok()) << lm.status() << " (is ../shared/data present?)";
  return std::move(*lm);
}

std::string SharedText(const std::string& name) {
  auto t = ReadFileToString(SharedDataPath(name));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : "";
}

// The independent reference values of shared/data/README.md ("Reference protocol").
TEST(ReferencePerplexityTest, DocumentModeMatchesReferenceOnBothTinyStoriesFiles) {
  auto lm = LoadShared();
  forward::LlamaForward fwd(lm.model);
  Evaluator ev(fwd, 2);
  const auto w = forward::WeightSet::FromModel(lm.model);
  struct Case {
    const char* file;
    int64_t docs, tokens;
    double ppl;
  } cases[] = {{"tinystories_v2_valid_100.txt", 100, 35351, 3.7421},
               {"tinystories_valid_a.txt", 2106, 187697, 4.7097}};
  for (const auto& c : cases) {
    auto set = BuildEvalSet(*lm.tokenizer, SharedText(c.file), EvalMode::kDocument, 512, 512, c.file);
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_EQ(static_cast<int64_t>(set->sequences.size()), c.docs) << c.file;
    auto r = ev.Nll(w, *set);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, c.tokens) << c.file;
    EXPECT_NEAR(r->ppl, c.ppl, 0.005 * c.ppl) << c.file;  // the 0.5% relative
  }
}

TEST(ReferencePerplexityTest, StreamModeMatchesLlamaCppWindows) {
  // llama.cpp's llama-perplexity on the same model and text (separator lines removed), -c 512:
  // 77 windows, PPL 3.997 ± 0.049. The tokenizers differ slightly (llama.cpp's SPM vs run.c's
  // BPE), so allow the reported ± 0.049 statistical error, not 0.5%.
  auto lm = LoadShared();
  forward::LlamaForward fwd(lm.model);
  Evaluator ev(fwd, 2);
  auto set = BuildEvalSet(*lm.tokenizer, SharedText("tinystories_v2_valid_100.txt"), EvalMode::kStream, 512, 512, "t");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->sequences.size(), 77u);
  EXPECT_EQ(set->scored_tokens, 77 * 255);
  auto r = ev.Nll(forward::WeightSet::FromModel(lm.model), *set);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->ppl, 3.997, 0.049);
}

model::ModelConfig TinyConfig() {
  model::ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 72;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 64;
  c.seq_len = 48;
  return c;
}

EvalSet RandomSet(int n_seqs, int len, int64_t score_begin, int vocab, uint64_t seed) {
  Rng rng(seed);
  EvalSet set;
  set.ctx = len;
  for (int s = 0; s < n_seqs; ++s) {
    EvalSequence seq;
    for (int t = 0; t < len - s % 3; ++t) seq.tokens.push_back(static_cast<int>(rng.Below(vocab)));
    seq.score_begin = score_begin;
    set.scored_tokens += seq.scored();
    set.processed_tokens += static_cast<int64_t>(seq.tokens.size());
    set.sequences.push_back(std::move(seq));
  }
  return set;
}

// log-softmax NLL straight from the double reference logits.
double ReferenceNllSum(const model::Model& m, const EvalSequence& seq) {
  const auto logits = forward::LlamaForwardRef(m, seq.tokens);
  const size_t V = m.config.vocab_size;
  double sum = 0;
  for (size_t p = seq.score_begin; p + 1 < seq.tokens.size(); ++p) {
    double mx = -1e300, s = 0;
    for (size_t j = 0; j < V; ++j) mx = std::max(mx, logits[p * V + j]);
    for (size_t j = 0; j < V; ++j) s += std::exp(logits[p * V + j] - mx);
    sum += mx + std::log(s) - logits[p * V + seq.tokens[p + 1]];
  }
  return sum;
}

TEST(EvaluatorTest, NllMatchesReferenceForwardInBothScoringProtocols) {
  const auto m = model::MakeRandomModel(TinyConfig(), 21);
  forward::LlamaForward fwd(m);
  Evaluator ev(fwd, 1);
  for (int64_t score_begin : {0, 20}) {
    const EvalSet set = RandomSet(5, 40, score_begin, 64, 7);
    auto r = ev.Nll(forward::WeightSet::FromModel(m), set);
    ASSERT_TRUE(r.ok()) << r.status();
    double total = 0;
    for (size_t i = 0; i < set.sequences.size(); ++i) {
      const double ref = ReferenceNllSum(m, set.sequences[i]);
      // Per-token NLL error is bounded by twice the logit error (forward_test's bound, about
      // 1e-4 here); summed over <= 40 tokens.
      EXPECT_NEAR(r->sequence_nll_sums[i], ref, 40 * 2e-4) << i;
      total += ref;
    }
    EXPECT_NEAR(r->nll, total / set.scored_tokens, 2e-4);
    EXPECT_DOUBLE_EQ(r->ppl, std::exp(r->nll));
  }
}

TEST(EvaluatorTest, BitIdenticalAtAnyThreadCount) {
  const auto m = model::MakeRandomModel(TinyConfig(), 22);
  forward::LlamaForward fwd(m);
  const auto w = forward::WeightSet::FromModel(m);
  // 1 sequence (intra-op parallelism) and 7 (sequences in parallel).
  for (int n : {1, 7}) {
    const EvalSet set = RandomSet(n, 45, 3, 64, 8);
    std::vector<double> nll;
    for (int threads : {1, 2, 3}) {
      Evaluator ev(fwd, threads);
      auto r = ev.Nll(w, set);
      ASSERT_TRUE(r.ok());
      nll.push_back(r->nll);
    }
    EXPECT_EQ(nll[0], nll[1]);
    EXPECT_EQ(nll[0], nll[2]);
  }
}

TEST(EvaluatorTest, KlIsZeroAgainstItselfAndMatchesReferenceOtherwise) {
  const auto m = model::MakeRandomModel(TinyConfig(), 23);
  auto c2 = TinyConfig();
  const auto other = model::MakeRandomModel(c2, 24);  // different linear weights, same shape
  forward::LlamaForward fwd(m);
  Evaluator ev(fwd, 2);
  const EvalSet set = RandomSet(3, 30, 5, 64, 9);
  const auto w = forward::WeightSet::FromModel(m);
  auto self = ev.Kl(w, w, set);
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self->kl, 0.0);
  EXPECT_EQ(self->top1_agree, 1.0);
  EXPECT_EQ(self->nll_ref, self->nll_test);

  const auto w2 = forward::WeightSet::FromModel(other);
  auto kl = ev.Kl(w, w2, set);
  ASSERT_TRUE(kl.ok());
  // Reference: the double forward of `m` with `other`'s linear weights.
  std::vector<std::vector<const float*>> lin(c2.n_layers);
  for (int l = 0; l < c2.n_layers; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) lin[l].push_back(other.layers[l].linear[k].data());
  }
  double ref_kl = 0;
  const size_t V = 64;
  for (const auto& seq : set.sequences) {
    const auto lp = forward::LlamaForwardRef(m, seq.tokens);
    const auto lq = forward::LlamaForwardRef(m, seq.tokens, &lin);
    for (size_t p = seq.score_begin; p + 1 < seq.tokens.size(); ++p) {
      double mp = -1e300, mq = -1e300, sp = 0, sq = 0;
      for (size_t j = 0; j < V; ++j) mp = std::max(mp, lp[p * V + j]), mq = std::max(mq, lq[p * V + j]);
      for (size_t j = 0; j < V; ++j) sp += std::exp(lp[p * V + j] - mp), sq += std::exp(lq[p * V + j] - mq);
      for (size_t j = 0; j < V; ++j) {
        const double a = lp[p * V + j] - mp - std::log(sp), b = lq[p * V + j] - mq - std::log(sq);
        ref_kl += std::exp(a) * (a - b);
      }
    }
  }
  ref_kl /= static_cast<double>(set.scored_tokens);
  EXPECT_GT(kl->kl, 0.0);
  EXPECT_NEAR(kl->kl, ref_kl, 1e-4 + 1e-3 * ref_kl);
}

TEST(EvalSetTest, SplitsDocumentsBySeparatorLinesOrBlankLines) {
  auto eot = SplitDocuments("  First story.\n<|endoftext|>\nSecond\nstory.\n<|endoftext|>\n\n<|endoftext|>\n");
  ASSERT_EQ(eot.size(), 2u);
  EXPECT_EQ(eot[0], "First story.");
  EXPECT_EQ(eot[1], "Second\nstory.");
  auto blank = SplitDocuments("One.\n\nTwo\nlines.\n\n\n\nThree.");
  ASSERT_EQ(blank.size(), 3u);
  EXPECT_EQ(blank[1], "Two\nlines.");
  EXPECT_EQ(blank[2], "Three.");
  EXPECT_TRUE(SplitDocuments(" \n\n \n").empty());
}

TEST(EvalSetTest, StreamWindowsStartWithBosAndScoreTheSecondHalf) {
  auto lm = LoadShared();
  auto set = BuildEvalSet(*lm.tokenizer, SharedText("tinystories_v2_valid_100.txt"), EvalMode::kStream, 64, 512, "t");
  ASSERT_TRUE(set.ok());
  for (const auto& s : set->sequences) {
    EXPECT_EQ(s.tokens.size(), 64u);
    EXPECT_EQ(s.tokens[0], lm.tokenizer->bos_id());
    EXPECT_EQ(s.score_begin, 32);
    EXPECT_EQ(s.scored(), 31);
  }
}

TEST(EvalSetTest, DocumentsAreTruncatedToCtx) {
  auto lm = LoadShared();
  auto set = BuildEvalSet(*lm.tokenizer, SharedText("tinystories_v2_valid_100.txt"), EvalMode::kDocument, 100, 512, "t");
  ASSERT_TRUE(set.ok());
  EXPECT_GT(set->truncated, 0);
  for (const auto& s : set->sequences) EXPECT_LE(s.tokens.size(), 100u);
}

TEST(EvalSetTest, BadInputGivesClearErrors) {
  auto lm = LoadShared();
  auto err = [&](std::string_view text, EvalMode mode, int64_t ctx) {
    auto s = BuildEvalSet(*lm.tokenizer, text, mode, ctx, 512, "story.txt");
    EXPECT_FALSE(s.ok());
    return std::string(s.status().message());
  };
  EXPECT_THAT(err("", EvalMode::kDocument, 512), HasSubstr("story.txt: no text to evaluate"));
  EXPECT_THAT(err("\n<|endoftext|>\n", EvalMode::kDocument, 512), HasSubstr("no text"));
  EXPECT_THAT(err("   ", EvalMode::kStream, 512), HasSubstr("story.txt: no text"));
  EXPECT_THAT(err("Hello there.", EvalMode::kDocument, 1024), HasSubstr("--ctx 1024 is larger than the model's sequence length 512"));
  EXPECT_THAT(err("Hello there.", EvalMode::kStream, 512), HasSubstr("fewer than one window of --ctx 512"));
  EXPECT_THAT(err("Hello there.", EvalMode::kStream, 2), HasSubstr("too small"));
  EXPECT_THAT(std::string(ParseEvalMode("windows").status().message()), HasSubstr("unknown evaluation mode 'windows'"));
}

TEST(EvaluatorTest, RejectsTokensOutsideTheVocabulary) {
  const auto m = model::MakeRandomModel(TinyConfig(), 25);
  forward::LlamaForward fwd(m);
  Evaluator ev(fwd, 1);
  EvalSet set = RandomSet(1, 10, 0, 64, 1);
  set.sequences[0].tokens[3] = 64;
  auto r = ev.Nll(forward::WeightSet::FromModel(m), set);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("token id 64 outside the model's vocabulary of 64"));
}

}  // namespace
}  // namespace impq::eval
