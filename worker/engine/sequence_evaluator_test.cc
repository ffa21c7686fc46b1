#include "worker/engine/sequence_evaluator.h"

#include <cmath>
#include <memory>
#include <vector>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/rng.h"
#include "common/test_paths.h"
#include "gtest/gtest.h"
#include "worker/engine/local_evaluator.h"
#include "worker/engine/stories_fixture.h"
#include "worker/model/loader.h"
#include "worker/quant/quantizer.h"

namespace impq::engine {
namespace {

using solver::Coalition;

// stories260K, RTN at group 64, 35 module players, the first 6 stories (ctx 96) of the
// calibration text.
struct Fixture {
  fixtures::StoriesFixture stories{96, 6};
  const forward::LlamaForward* fwd = &stories.fwd();
  const eval::EvalSet& set = stories.set();
  std::unique_ptr<quant::QuantizedModel> qm = stories.Quantize(quant::PlayerGranularity::kModule);

  static Fixture& Get() {
    static Fixture* f = new Fixture();
    return *f;
  }
};

std::vector<Coalition> SomeCoalitions(int n, int count, uint64_t seed) {
  Rng rng(seed);
  std::vector<Coalition> out;
  for (int k = 0; k < count; ++k) {
    Coalition q(n, 0);
    for (int i = 0; i < n; ++i) q[i] = rng.Uniform() < 0.5 ? 1 : 0;
    out.push_back(q);
  }
  return out;
}

TEST(SequenceEvaluatorTest, MeanIsTheWholeSetLossAndSumsAreThePerSequenceLosses) {
  Fixture& f = Fixture::Get();
  const int n = f.qm->num_players();
  const std::vector<Coalition> qs = SomeCoalitions(n, 4, 1);
  auto whole = LocalEvaluator::Create(*f.qm, *f.fwd, f.set, {});
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto seq = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 2, int64_t{1} << 30);
  ASSERT_TRUE(seq.ok()) << seq.status();
  auto a = (*whole)->Evaluate(qs);
  auto b = (*seq)->Evaluate(qs);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*seq)->num_sequences(), 6);
  EXPECT_EQ((*seq)->scored_tokens(), f.set.scored_tokens);
  for (size_t k = 0; k < qs.size(); ++k) {
    // The same per-sequence NLL sums, grouped differently: two roundings per sequence (mean,
    // then × tokens; 2^-53 relative each) and the additions: far inside 1e-13 · S relative.
    EXPECT_NEAR((*a)[k], (*b)[k], 1e-13 * 6 * std::abs((*a)[k])) << k;
    const std::vector<double>* sums = (*seq)->SequenceSums(qs[k]);
    ASSERT_NE(sums, nullptr);
    ASSERT_EQ(sums->size(), 6u);
    // Each sum is the loss of that sequence alone.
    for (size_t s = 0; s < sums->size(); ++s) {
      eval::EvalSet one = f.set;
      one.sequences = {f.set.sequences[s]};
      one.scored_tokens = f.set.sequences[s].scored();
      auto e = LocalEvaluator::Create(*f.qm, *f.fwd, one, {});
      ASSERT_TRUE(e.ok());
      auto v = (*e)->Evaluate(std::span(&qs[k], 1));
      ASSERT_TRUE(v.ok());
      EXPECT_EQ((*sums)[s], (*v)[0] * static_cast<double>(one.scored_tokens));
    }
  }
  // Asked again: answered from memory, not evaluated again.
  EXPECT_EQ((*seq)->evaluations(), 4);
  auto again = (*seq)->Evaluate(qs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *b);
  EXPECT_EQ((*seq)->evaluations(), 4);
  EXPECT_EQ((*seq)->SequenceSums(Coalition(n, 1)), nullptr);
}

TEST(SequenceEvaluatorTest, IdenticalAtOneAndTwoThreadsAndWithoutTheCache) {
  Fixture& f = Fixture::Get();
  const std::vector<Coalition> qs = SomeCoalitions(f.qm->num_players(), 5, 2);
  auto one = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 1, int64_t{1} << 30);
  auto two = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 2, int64_t{1} << 30);
  auto nocache = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 2, 0);
  ASSERT_TRUE(one.ok() && two.ok() && nocache.ok());
  auto a = (*one)->Evaluate(qs);
  auto b = (*two)->Evaluate(qs);
  auto c = (*nocache)->Evaluate(qs);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(*a, *c);
  for (const Coalition& q : qs) EXPECT_EQ(*(*one)->SequenceSums(q), *(*two)->SequenceSums(q));
}

TEST(SequenceEvaluatorTest, PairedDifferenceAndItsStandardError) {
  Fixture& f = Fixture::Get();
  const int n = f.qm->num_players();
  auto e = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 2, int64_t{1} << 30);
  ASSERT_TRUE(e.ok());
  const Coalition all4(n, 0);
  Coalition some(n, 0);
  for (int i = 0; i < n; i += 3) some[i] = 1;
  auto v = (*e)->Evaluate(std::vector<Coalition>{some, all4});
  ASSERT_TRUE(v.ok());
  auto d = (*e)->Compare(some, all4);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NEAR(d->mean, (*v)[0] - (*v)[1], 1e-12);
  EXPECT_GT(d->mean, 0);  // 2 bits hurt
  // The textbook formula, written out: ratio estimator over S sequences.
  const std::vector<double>& sa = *(*e)->SequenceSums(some);
  const std::vector<double>& sb = *(*e)->SequenceSums(all4);
  const double T = static_cast<double>(f.set.scored_tokens);
  double ss = 0;
  for (size_t s = 0; s < sa.size(); ++s) {
    const double t = static_cast<double>(f.set.sequences[s].scored());
    ss += std::pow(sa[s] - sb[s] - t * d->mean, 2);
  }
  EXPECT_NEAR(d->standard_error, std::sqrt(6.0 / 5.0 * ss) / T, 1e-15);
  EXPECT_GT(d->standard_error, 0);
  auto self = (*e)->Compare(some, some);
  ASSERT_TRUE(self.ok());
  EXPECT_EQ(self->mean, 0);
  EXPECT_EQ(self->standard_error, 0);
  auto reversed = (*e)->Compare(all4, some);
  ASSERT_TRUE(reversed.ok());
  EXPECT_EQ(reversed->mean, -d->mean);
  EXPECT_EQ((*e)->Compare(Coalition(n, 1), all4).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SequenceEvaluatorTest, BadInputsAreRefused) {
  Fixture& f = Fixture::Get();
  EXPECT_FALSE(SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 0, 0).ok());
  eval::EvalSet empty = f.set;
  empty.sequences.clear();
  EXPECT_FALSE(SequenceEvaluator::Create(*f.qm, *f.fwd, empty, 1, 0).ok());
  auto e = SequenceEvaluator::Create(*f.qm, *f.fwd, f.set, 1, 0);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)->Evaluate(std::vector<Coalition>{Coalition(3, 0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*e)->evaluations(), 0);
}

}  // namespace
}  // namespace impq::engine
