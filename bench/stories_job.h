// The stories260K job that the per-budget choice benchmarks run (impq_bench,
// choice_bound_bench): the same data, sets, flags and defaults, so that their tables line up.
#ifndef IMPQ_BENCH_STORIES_JOB_H_
#define IMPQ_BENCH_STORIES_JOB_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/test_paths.h"
#include "job/job.h"
#include "worker/engine/local_game.h"

namespace impq::bench {

// The job's flags: --backends, --budgets, --group-size, --permutations, --seed,
// --heldout-docs, --threads. The job: 35 module players of stories260K; calibration = the
// first 50 stories of tinystories_v2_valid_100.txt; held-out = the first heldout_docs
// paragraphs of tinystories_valid_a.txt (a different file: nothing is tuned on it).
class StoriesJobFlags {
 public:
  explicit StoriesJobFlags(std::string default_backends) : backends_text_(default_backends) {}

  void Register(FlagSet& flags) {
    flags.String("backends", &backends_text_, "comma-separated subset of rtn,hqq,gptq");
    flags.String("budgets", &budgets_text_, "target average bit-widths, comma-separated");
    flags.Int("group-size", &group_size_, "quantization group size (input columns per scale)");
    flags.Int("permutations", &permutations_, "SPQE permutations per job (antithetic, even)");
    flags.Int("seed", &seed_, "seed of the permutations, the random baseline (and the search)");
    flags.Int("heldout-docs", &heldout_docs_, "first N paragraphs of tinystories_valid_a.txt");
    flags.Int("threads", &threads_, "CPU threads (results do not depend on it)");
  }

  // After FlagSet::Parse: splits --backends and --budgets. InvalidArgument naming the flag.
  absl::Status Finish() {
    backends_ = absl::StrSplit(backends_text_, ',', absl::SkipWhitespace());
    if (backends_.empty()) return absl::InvalidArgumentError("--backends is empty");
    budgets_.clear();
    for (absl::string_view b : absl::StrSplit(budgets_text_, ',', absl::SkipWhitespace())) {
      double v = 0;
      if (!absl::SimpleAtod(b, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--budgets: '", b, "' is not a number"));
      }
      budgets_.push_back(v);
    }
    if (budgets_.empty()) return absl::InvalidArgumentError("--budgets is empty");
    return absl::OkStatus();
  }

  const std::vector<std::string>& backends() const { return backends_; }
  int group_size() const { return static_cast<int>(group_size_); }
  int64_t permutations() const { return permutations_; }
  int64_t heldout_docs() const { return heldout_docs_; }
  uint64_t seed() const { return static_cast<uint64_t>(seed_); }
  int threads() const { return static_cast<int>(threads_); }

  // The job for one backend (ValidateJobOptions checks the numbers).
  job::JobOptions Options(const std::string& backend) const {
    job::JobOptions o;
    o.model_path = SharedDataPath("stories260K.bin");
    o.tokenizer_path = SharedDataPath("tok512.bin");
    o.calib_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
    o.heldout_text_path = SharedDataPath("tinystories_valid_a.txt");
    o.calib_docs = 50;
    o.heldout_docs = heldout_docs_;
    o.backend = backend;
    o.group_size = group_size();
    o.permutations = permutations_;
    o.seed = seed();
    o.threads = threads();
    o.average_bits = budgets_;
    return o;
  }

 private:
  std::string backends_text_;
  std::string budgets_text_ = "2.25,2.5,3.0,3.5";
  int64_t group_size_ = job::JobOptions().group_size;
  int64_t permutations_ = 12;
  int64_t seed_ = 0;
  int64_t heldout_docs_ = 500;
  int64_t threads_ = std::min(2u, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> backends_;
  std::vector<double> budgets_;
};

}  // namespace impq::bench

#endif  // IMPQ_BENCH_STORIES_JOB_H_
