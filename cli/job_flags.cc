// JobFlags (job_flags.h).
#include "cli/job_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "job/job.h"
#include "job/spec_options.h"

namespace impq::cli {
namespace {

// A comma-separated list of `flag`, each item parsed by `parse` (false: not `what`).
template <typename T, typename Parse>
absl::Status ParseList(const std::string& flag, const std::string& text, const char* what,
                       Parse parse, google::protobuf::RepeatedField<T>* out) {
  out->Clear();
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    T v;
    if (!parse(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", std::string(part), "' is not ", what));
    }
    out->Add(v);
  }
  if (out->empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": empty list"));
  return absl::OkStatus();
}

}  // namespace

v1::JobSpec JobFlags::DefaultSpec() {
  // JobOptions holds the one set of defaults; the files are the embedded default job's.
  v1::JobSpec s = job::SpecFromJobOptions(job::JobOptions());
  s.set_model_path("stories260K.bin");
  s.set_tokenizer_path("tok512.bin");
  s.set_calibration_text_path("tinystories_v2_valid_100.txt");
  s.set_evaluation_text_path("tinystories_valid_a.txt");
  return s;
}

JobFlags::JobFlags() {
  const v1::JobSpec d = DefaultSpec();
  model_ = d.model_path();
  tokenizer_ = d.tokenizer_path();
  calib_text_ = d.calibration_text_path();
  heldout_text_ = d.evaluation_text_path();
  mode_ = d.eval_mode();
  players_ = d.players();
  backend_ = d.backend();
  estimator_ = d.estimator();
  budgets_ = absl::StrJoin(d.average_bits(), ",");
  widths_ = absl::StrJoin(job::JobOptions().widths, ",");
  calib_docs_ = d.calibration_docs();
  heldout_docs_ = d.evaluation_docs();
  ctx_ = d.context();
  group_size_ = d.group_size();
  permutations_ = d.permutations();
  seed_ = static_cast<int64_t>(d.seed());
  stable_batches_ = d.stable_batches();
  random_draws_ = d.random_draws();
  se_threshold_ = d.se_threshold();
  antithetic_ = d.antithetic();
}

void JobFlags::Register(FlagSet& flags) {
  flags.String("model", &model_, "model: llama2.c .bin, GGUF file or Hugging Face directory");
  flags.String("tokenizer", &tokenizer_,
               "tokenizer (default: tok512.bin for the default model, else the model's own)");
  flags.String("calib-text", &calib_text_, "calibration text");
  flags.String("heldout-text", &heldout_text_, "held-out text for measuring");
  flags.Int("calib-docs", &calib_docs_, "first N documents of the calibration text (0 = all)");
  flags.Int("heldout-docs", &heldout_docs_, "first N documents of the held-out text (0 = all)");
  flags.String("mode", &mode_, "evaluation protocol of both texts: document | stream");
  flags.Int("ctx", &ctx_, "tokens per sequence");
  flags.String("players", &players_, "player granularity: module (every linear) | block");
  flags.String("backend", &backend_, "quantizer: rtn | hqq | gptq");
  flags.Int("group-size", &group_size_, "quantization group size (input columns per scale)");
  flags.Int("permutations", &permutations_, "SPQE permutations M (even with --antithetic)");
  flags.Bool("antithetic", &antithetic_,
             "antithetic pairs (π, reverse π); --antithetic=false to disable");
  flags.Int("seed", &seed_, "seed of the permutations and the random baseline");
  flags.Double("se-threshold", &se_threshold_,
               "stop SPQE early once max SE(φ) is below this (0: never)");
  flags.Int("stable-batches", &stable_batches_,
            "stop SPQE early once the allocation has not changed for this many batches of 2 "
            "walks (0: never)");
  flags.String("estimator", &estimator_,
               "objective of the IMPQ allocation: covariance (paper) | surrogate");
  flags.String("budgets", &budgets_, "target average bit-widths, comma-separated, each in [2, 4]");
  flags.String("widths", &widths_,
               "bit-widths a player may take, comma-separated, of 2, 3, 4, 8 (more than two: "
               "SPQE walks a ladder of steps, the allocation is multiple-choice; budgets keep "
               "the 2/4-bit scale)");
  flags.Int("random-draws", &random_draws_, "random baseline: allocations averaged");
  choice_.Register(flags);
}

absl::Status JobFlags::ApplyTo(const FlagSet& flags, v1::JobSpec& s) const {
  auto set = [&](const char* name) { return flags.WasSet(name); };
  if (set("model")) {
    s.set_model_path(model_);
    if (!set("tokenizer")) s.clear_tokenizer_path();
  }
  if (set("tokenizer")) s.set_tokenizer_path(tokenizer_);
  if (set("calib-text")) s.set_calibration_text_path(calib_text_);
  if (set("heldout-text")) s.set_evaluation_text_path(heldout_text_);
  if (set("calib-docs")) s.set_calibration_docs(calib_docs_);
  if (set("heldout-docs")) s.set_evaluation_docs(heldout_docs_);
  if (set("mode")) s.set_eval_mode(mode_);
  if (set("ctx")) s.set_context(ctx_);
  if (set("players")) s.set_players(players_);
  if (set("backend")) s.set_backend(backend_);
  if (set("group-size")) s.set_group_size(static_cast<int32_t>(group_size_));
  if (set("permutations")) s.set_permutations(permutations_);
  if (set("antithetic")) s.set_antithetic(antithetic_);
  if (set("seed")) s.set_seed(static_cast<uint64_t>(seed_));
  if (set("se-threshold")) s.set_se_threshold(se_threshold_);
  if (set("stable-batches")) s.set_stable_batches(stable_batches_);
  if (set("estimator")) s.set_estimator(estimator_);
  if (set("budgets")) {
    absl::Status st = ParseList<double>(
        "budgets", budgets_, "a number",
        [](absl::string_view p, double* v) { return absl::SimpleAtod(p, v); },
        s.mutable_average_bits());
    if (!st.ok()) return st;
  }
  if (set("widths")) {
    absl::Status st = ParseList<int32_t>(
        "widths", widths_, "a whole number of bits",
        [](absl::string_view p, int32_t* v) { return absl::SimpleAtoi(p, v); },
        s.mutable_widths());
    if (!st.ok()) return st;
    if (s.widths_size() == 2 && s.widths(0) == 2 && s.widths(1) == 4) s.clear_widths();
  }
  if (set("random-draws")) s.set_random_draws(static_cast<int32_t>(random_draws_));
  if (set("choice-z")) s.set_choice_z(choice_.choice_z());
  if (set("extra-fraction")) s.set_extra_evaluation_fraction(choice_.extra_fraction());
  if (set("search-batch")) s.set_search_batch(choice_.search_batch());
  if (set("search-max-changed")) {
    s.set_search_max_changed(static_cast<int32_t>(choice_.search_max_changed()));
  }
  if (set("search-model")) s.set_search_model(choice_.search_model());
  if (set("select-docs")) s.set_select_docs(choice_.select_docs());
  return absl::OkStatus();
}

}  // namespace impq::cli
