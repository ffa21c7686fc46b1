// The stories260K job that the per-budget choice benchmarks run (impq_bench,
// choice_bound_bench): the same data, sets and budgets, so that their tables line up.
#ifndef IMPQ_BENCH_STORIES_JOB_H_
#define IMPQ_BENCH_STORIES_JOB_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/test_paths.h"
#include "worker/engine/job.h"

namespace impq::bench {

// 35 module players of stories260K; calibration = the first 50 stories of
// tinystories_v2_valid_100.txt; held-out = the first heldout_docs paragraphs of
// tinystories_valid_a.txt (a different file: nothing is tuned on it).
inline engine::JobOptions StoriesJobOptions(const std::string& backend, int group_size,
                                            int64_t permutations, int64_t heldout_docs,
                                            uint64_t seed, int threads,
                                            const std::vector<double>& budgets) {
  engine::JobOptions o;
  o.model_path = SharedDataPath("stories260K.bin");
  o.tokenizer_path = SharedDataPath("tok512.bin");
  o.calib_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  o.heldout_text_path = SharedDataPath("tinystories_valid_a.txt");
  o.calib_docs = 50;
  o.heldout_docs = heldout_docs;
  o.backend = backend;
  o.group_size = group_size;
  o.permutations = permutations;
  o.seed = seed;
  o.threads = threads;
  o.average_bits = budgets;
  return o;
}

// "2.25,2.5" -> {2.25, 2.5}; InvalidArgument naming the flag and the bad item.
inline absl::StatusOr<std::vector<double>> ParseBudgets(const std::string& flag,
                                                        const std::string& text) {
  std::vector<double> budgets;
  for (absl::string_view b : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    double v = 0;
    if (!absl::SimpleAtod(b, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", b, "' is not a number"));
    }
    budgets.push_back(v);
  }
  if (budgets.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return budgets;
}

}  // namespace impq::bench

#endif  // IMPQ_BENCH_STORIES_JOB_H_
