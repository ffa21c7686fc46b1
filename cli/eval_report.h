// The loss report shared by `impq eval` and `impq quantize-eval`: one JSON object with the
// documented keys (tokens, nll, ppl, tokens_per_s, ...), which each command extends.
#ifndef IMPQ_CLI_EVAL_REPORT_H_
#define IMPQ_CLI_EVAL_REPORT_H_

#include <string>

#include "nlohmann/json.hpp"
#include "worker/eval/eval_set.h"
#include "worker/eval/evaluator.h"

namespace impq::cli {

inline nlohmann::json NllReport(const std::string& model_path, const std::string& text_path,
                                const eval::EvalSet& set, const eval::NllResult& r,
                                int64_t threads) {
  return {{"model", model_path},
          {"text", text_path},
          {"mode", eval::EvalModeName(set.mode)},
          {"ctx", set.ctx},
          {"sequences", set.sequences.size()},
          {"tokens", r.tokens},
          {"processed_tokens", r.processed_tokens},
          {"nll", r.nll},
          {"ppl", r.ppl},
          {"seconds", r.seconds},
          {"tokens_per_s", r.tokens_per_s},
          {"threads", threads}};
}

}  // namespace impq::cli

#endif  // IMPQ_CLI_EVAL_REPORT_H_
