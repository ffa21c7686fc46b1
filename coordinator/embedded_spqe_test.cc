// Embedded SPQE (embedded_spqe.h): SPQE through the coordinator equals solver::RunSpqe on the
// same evaluator — every field of the result, and the exact sequence of coalitions the
// evaluator is asked for — on synthetic games and on the shared model's LocalEvaluator (whose
// counters must agree too).
#include "coordinator/embedded_spqe.h"

#include <cstring>

#include "common/file_util.h"
#include "common/test_paths.h"
#include "coordinator/embedded.h"
#include "coordinator/ladder_test_game.h"
#include "gtest/gtest.h"
#include "solver/test_games.h"
#include "solver/width_ladder.h"
#include "worker/engine/job.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"
#include "worker/quant/quantizer.h"

namespace impq::coordinator {
namespace {

// Records every coalition it is asked for, in order.
class RecordingEvaluator : public solver::CoalitionEvaluator {
 public:
  explicit RecordingEvaluator(solver::CoalitionEvaluator* inner) : inner_(inner) {}
  absl::StatusOr<std::vector<double>> Evaluate(std::span<const solver::Coalition> qs) override {
    sequence.insert(sequence.end(), qs.begin(), qs.end());
    return inner_->Evaluate(qs);
  }
  std::vector<solver::Coalition> sequence;

 private:
  solver::CoalitionEvaluator* inner_;
};

bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

void ExpectSame(const solver::SpqeResult& a, const solver::SpqeResult& b) {
  EXPECT_EQ(a.permutations, b.permutations);
  ASSERT_EQ(a.marginals.size(), b.marginals.size());
  for (size_t k = 0; k < a.marginals.size(); ++k) {
    EXPECT_TRUE(SameBits(a.marginals[k], b.marginals[k])) << k;
  }
  ASSERT_EQ(a.observations.size(), b.observations.size());
  for (size_t j = 0; j < a.observations.size(); ++j) {
    EXPECT_EQ(a.observations[j].coalition, b.observations[j].coalition) << j;
    EXPECT_TRUE(SameBits({a.observations[j].loss}, {b.observations[j].loss})) << j;
  }
  EXPECT_EQ(a.coalitions_requested, b.coalitions_requested);
  EXPECT_EQ(a.coalitions_evaluated, b.coalitions_evaluated);
  EXPECT_EQ(a.cache_hits, b.cache_hits);
  EXPECT_TRUE(SameBits(a.estimate.phi, b.estimate.phi));
  EXPECT_TRUE(SameBits(a.estimate.standard_error, b.estimate.standard_error));
  EXPECT_EQ(a.estimate.num_permutations, b.estimate.num_permutations);
  EXPECT_EQ(a.estimate.num_samples, b.estimate.num_samples);
  EXPECT_EQ(a.stop_reason, b.stop_reason);
}

v1::ModelInfo Info(int n) {
  v1::ModelInfo m;
  m.set_num_players(n);
  for (int i = 0; i < n; ++i) {
    m.add_player_names("p" + std::to_string(i));
    m.add_bytes2(100 + i);
    m.add_bytes4(200 + 2 * i);
  }
  m.set_model_config("synthetic");
  return m;
}

v1::JobSpec SpecFor(const solver::SpqeOptions& o) {
  v1::JobSpec s;
  s.set_model_path("/synthetic/model");
  s.set_tokenizer_path("/synthetic/tokenizer");
  s.set_calibration_text_path("/synthetic/text");
  s.set_permutations(o.max_permutations);
  s.set_antithetic(o.antithetic);
  s.set_seed(o.seed);
  s.set_se_threshold(o.se_threshold);
  s.add_average_bits(3.0);
  return s;
}

struct Case {
  bool antithetic;
  int64_t permutations;
  int64_t batch;
  double se_threshold;
};

TEST(EmbeddedSpqeTest, EqualsRunSpqeOnSyntheticGames) {
  const solver::testing::RandomGame game{solver::testing::RandomQuadraticGame(7, 3), 11};
  for (const Case& c : {Case{true, 16, 2, 0}, Case{false, 9, 8, 0}, Case{true, 40, 2, 0.45},
                        Case{false, 30, 1, 0.5}}) {
    SCOPED_TRACE(testing::Message() << "antithetic " << c.antithetic << ", M " << c.permutations
                                    << ", batch " << c.batch << ", threshold " << c.se_threshold);
    solver::SpqeOptions o;
    o.num_players = 7;
    o.max_permutations = c.permutations;
    o.antithetic = c.antithetic;
    o.seed = 42;
    o.permutations_per_batch = c.batch;
    o.se_threshold = c.se_threshold;
    o.min_permutations = c.antithetic ? 4 : 2;
    solver::FunctionEvaluator direct_fn(game), embedded_fn(game);
    RecordingEvaluator direct(&direct_fn), embedded(&embedded_fn);
    absl::StatusOr<solver::SpqeResult> want = solver::RunSpqe(direct, o);
    ASSERT_TRUE(want.ok()) << want.status();
    int64_t progress_calls = 0, last_done = 0;
    o.progress_callback = [&](const solver::SpqeProgress& p) {
      ++progress_calls;
      EXPECT_EQ(p.permutations_done, last_done + 1);
      last_done = p.permutations_done;
    };
    EmbeddedSpqeInput in;
    in.evaluator = &embedded;
    in.options = o;
    in.spec = SpecFor(o);
    in.model = Info(7);
    absl::StatusOr<EmbeddedSpqeResult> got = RunSpqeThroughCoordinator(in);
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectSame(got->spqe, *want);
    EXPECT_EQ(embedded.sequence, direct.sequence);
    EXPECT_EQ(progress_calls, static_cast<int64_t>(want->permutations.size()));
    if (c.se_threshold > 0) {
      EXPECT_EQ(want->stop_reason, solver::SpqeStopReason::kStandardError) << "case too easy";
    }
    EXPECT_EQ(got->job.allocations_size(), 1);
  }
}

TEST(EmbeddedSpqeTest, RejectsWhatTheCoordinatorCannotRun) {
  solver::FunctionEvaluator fn([](const solver::Coalition&) { return 1.0; });
  solver::SpqeOptions o;
  o.num_players = 3;
  o.max_permutations = 4;
  o.antithetic = true;
  EmbeddedSpqeInput in;
  in.evaluator = &fn;
  in.options = o;
  in.spec = SpecFor(o);
  in.model = Info(3);
  in.options.stop_callback = [](const solver::SpqeProgress&) { return false; };
  EXPECT_NE(RunSpqeThroughCoordinator(in).status().message().find("stop_callback"),
            std::string::npos);
  in.options.stop_callback = nullptr;
  in.spec.set_seed(9);
  EXPECT_NE(RunSpqeThroughCoordinator(in).status().message().find("disagrees"), std::string::npos);
  in.spec.set_seed(o.seed);
  in.model = Info(4);
  EXPECT_EQ(RunSpqeThroughCoordinator(in).status().code(), absl::StatusCode::kInvalidArgument);
  // An evaluator error ends the run with that error.
  solver::FunctionEvaluator failing([](const solver::Coalition&) { return std::nan(""); });
  in.model = Info(3);
  in.evaluator = &failing;
  EXPECT_EQ(RunSpqeThroughCoordinator(in).status().code(), absl::StatusCode::kInvalidArgument);
}

// Width sets (issue 14): a game over the steps of the ladder {2, 3, 4, 8} (m = 4) through the
// coordinator equals RunSpqe with the LadderPermutationSampler, bit for bit, with the sampler
// passed or left to the coordinator.
TEST(EmbeddedSpqeTest, EqualsRunSpqeOnALadderGame) {
  const LadderTestGame game(5, {2, 3, 4, 8});
  const int steps = game.steps();
  for (const Case& c : {Case{true, 16, 2, 0}, Case{false, 9, 8, 0}, Case{true, 60, 2, 0.03}}) {
    SCOPED_TRACE(testing::Message() << "antithetic " << c.antithetic << ", M " << c.permutations
                                    << ", threshold " << c.se_threshold);
    const solver::LadderPermutationSampler sampler(game.ladder(), 5, c.antithetic);
    solver::SpqeOptions o;
    o.num_players = steps;
    o.max_permutations = c.permutations;
    o.antithetic = c.antithetic;
    o.seed = 5;
    o.permutations_per_batch = c.batch;
    o.se_threshold = c.se_threshold;
    o.min_permutations = c.antithetic ? 4 : 2;
    o.sampler = &sampler;
    auto value = [&](const solver::Coalition& q) { return game.Value(q); };
    solver::FunctionEvaluator direct_fn(value), embedded_fn(value);
    RecordingEvaluator direct(&direct_fn);
    absl::StatusOr<solver::SpqeResult> want = solver::RunSpqe(direct, o);
    ASSERT_TRUE(want.ok()) << want.status();
    for (const solver::Coalition& q : direct.sequence) {
      ASSERT_TRUE(game.ladder().ValidateClosed(q).ok());  // the walks stay closed
    }
    if (c.se_threshold > 0) {
      EXPECT_EQ(want->stop_reason, solver::SpqeStopReason::kStandardError) << "case too easy";
    }
    for (bool pass_sampler : {true, false}) {
      SCOPED_TRACE(pass_sampler ? "sampler passed" : "no sampler");
      RecordingEvaluator fresh(&embedded_fn);
      EmbeddedSpqeInput in;
      in.evaluator = &fresh;
      in.options = o;
      if (!pass_sampler) in.options.sampler = nullptr;
      in.spec = SpecFor(o);
      for (int w : game.ladder().widths()) in.spec.add_widths(w);
      in.model = game.Model();
      absl::StatusOr<EmbeddedSpqeResult> got = RunSpqeThroughCoordinator(in);
      ASSERT_TRUE(got.ok()) << got.status();
      ExpectSame(got->spqe, *want);
      EXPECT_EQ(fresh.sequence, direct.sequence);
      ASSERT_EQ(got->job.phi_size(), steps);
      ASSERT_EQ(got->job.allocations_size(), 1);
      for (int b : got->job.allocations(0).bits()) {
        EXPECT_TRUE(b == 2 || b == 3 || b == 4 || b == 8) << b;
      }
      EXPECT_LE(got->job.allocations(0).memory_bytes(), got->job.allocations(0).budget_bytes());
    }
  }
}

TEST(EmbeddedSpqeTest, RejectsALadderThatDisagreesWithTheSpec) {
  const LadderTestGame game(3, {2, 3, 4});
  solver::FunctionEvaluator fn([&](const solver::Coalition& q) { return game.Value(q); });
  solver::SpqeOptions o;
  o.num_players = game.steps();
  o.max_permutations = 4;
  o.antithetic = true;
  o.seed = 1;
  EmbeddedSpqeInput in;
  in.evaluator = &fn;
  in.options = o;
  in.spec = SpecFor(o);
  for (int w : {2, 3, 4}) in.spec.add_widths(w);
  in.model = game.Model();
  // A uniform sampler over the steps draws walks that are not closed.
  const solver::SeededPermutationSampler uniform(game.steps(), 1, true);
  in.options.sampler = &uniform;
  absl::Status st = RunSpqeThroughCoordinator(in).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("options.sampler"), std::string::npos) << st;
  in.options.sampler = nullptr;
  // Options over the players instead of the steps.
  in.options.num_players = 3;
  st = RunSpqeThroughCoordinator(in).status();
  EXPECT_NE(st.message().find("ladder steps"), std::string::npos) << st;
  in.options.num_players = game.steps();
  // No width_bytes.
  in.model.clear_width_bytes();
  st = RunSpqeThroughCoordinator(in).status();
  EXPECT_NE(st.message().find("width_bytes"), std::string::npos) << st;
  in.model = game.Model();
  in.spec.add_widths(5);
  st = RunSpqeThroughCoordinator(in).status();
  EXPECT_NE(st.message().find("spec.widths[3]"), std::string::npos) << st;
  in.spec.mutable_widths()->RemoveLast();
  EXPECT_TRUE(RunSpqeThroughCoordinator(in).ok());
}

// The real engine: LocalEvaluator (prefix reuse) on stories260K, module players. The
// coordinator path asks for the same coalitions in the same order, so the losses and the
// evaluator's counters (the block work prefix reuse saved) are the same.
TEST(EmbeddedSpqeTest, EqualsRunSpqeOnTheSharedModel) {
  auto loaded = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"),
                                             SharedDataPath("tok512.bin"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto text = ReadFileToString(SharedDataPath("tinystories_v2_valid_100.txt"));
  ASSERT_TRUE(text.ok());
  auto set = eval::BuildEvalSet(*loaded->tokenizer, *text, eval::EvalMode::kDocument, 128,
                                loaded->model.config.seq_len, "calibration");
  ASSERT_TRUE(set.ok()) << set.status();
  set->sequences.resize(4);
  forward::LlamaForward fwd(loaded->model);
  auto quantizer = quant::MakeQuantizer("rtn");
  ASSERT_TRUE(quantizer.ok());
  auto qm = quant::QuantizedModel::Build(loaded->model, **quantizer, quant::QuantConfig(),
                                         quant::PlayerGranularity::kModule, nullptr, nullptr);
  ASSERT_TRUE(qm.ok()) << qm.status();
  const int n = (*qm)->num_players();
  solver::SpqeOptions o;
  o.num_players = n;
  o.max_permutations = 4;
  o.antithetic = true;
  o.seed = 3;
  o.permutations_per_batch = 2;
  o.min_permutations = 4;
  engine::LocalEvaluatorOptions eo;
  auto direct = engine::LocalEvaluator::Create(**qm, fwd, *set, eo);
  auto embedded = engine::LocalEvaluator::Create(**qm, fwd, *set, eo);
  ASSERT_TRUE(direct.ok() && embedded.ok());
  absl::StatusOr<solver::SpqeResult> want = solver::RunSpqe(**direct, o);
  ASSERT_TRUE(want.ok()) << want.status();
  EmbeddedSpqeInput in;
  in.evaluator = embedded->get();
  in.options = o;
  in.spec = SpecFor(o);
  in.model.set_num_players(n);
  for (int i = 0; i < n; ++i) {
    in.model.add_player_names((*qm)->players()[i].name);
    in.model.add_bytes2((*qm)->PlayerBytes(i, 2));
    in.model.add_bytes4((*qm)->PlayerBytes(i, 4));
  }
  absl::StatusOr<EmbeddedSpqeResult> got = RunSpqeThroughCoordinator(in);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSame(got->spqe, *want);
  const engine::LocalEvaluatorStats& a = (*direct)->stats();
  const engine::LocalEvaluatorStats& b = (*embedded)->stats();
  EXPECT_EQ(a.coalitions, b.coalitions);
  EXPECT_EQ(a.block_evals_done, b.block_evals_done);
  EXPECT_EQ(a.block_evals_full, b.block_evals_full);
  EXPECT_GT(a.SavedFraction(), 0.2);
}

}  // namespace
}  // namespace impq::coordinator
