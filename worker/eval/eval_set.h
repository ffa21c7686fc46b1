// Turning text into scored token sequences, under two documented protocols.
//
// Document mode (the reference protocol of shared/data/README.md): split the text into
// documents (at lines that are exactly "<|endoftext|>" when the text has such a line, else at
// blank lines "\n\n"); strip each, drop empty ones; encode each alone with BOS first; truncate
// to `ctx` tokens; score every token after BOS (a document of n tokens scores n - 1).
//
// Stream mode (llama.cpp's `llama-perplexity` convention): drop "<|endoftext|>" separator
// lines, encode the whole text as one stream with BOS first, cut it into floor(N / ctx)
// windows of ctx tokens, put BOS at the start of each window, and score only the second half:
// the predictions of tokens ctx/2 + 1 .. ctx - 1 of each window.
#ifndef IMPQ_WORKER_EVAL_EVAL_SET_H_
#define IMPQ_WORKER_EVAL_EVAL_SET_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model.h"
#include "worker/model/tokenizer.h"

namespace impq::eval {

enum class EvalMode { kDocument, kStream };
// "document" / "stream"; ParseEvalMode names the bad value.
const char* EvalModeName(EvalMode mode);
absl::StatusOr<EvalMode> ParseEvalMode(const std::string& name);

struct EvalSequence {
  std::vector<int> tokens;
  // Rows p in [score_begin, tokens.size() - 1) are scored: row p predicts tokens[p + 1].
  int64_t score_begin = 0;
  int64_t scored() const { return static_cast<int64_t>(tokens.size()) - 1 - score_begin; }
};

struct EvalSet {
  EvalMode mode = EvalMode::kDocument;
  int64_t ctx = 0;
  std::vector<EvalSequence> sequences;
  int64_t scored_tokens = 0;     // Σ scored()
  int64_t processed_tokens = 0;  // Σ tokens.size(): positions the model runs on
  int64_t truncated = 0;         // documents cut at ctx tokens (document mode)
};

// Splits text into stripped, non-empty documents (see the file comment).
std::vector<std::string_view> SplitDocuments(std::string_view text);

// Builds the evaluation set of `text`. `source` (e.g. the file name) only labels errors.
// Errors: empty text or no document; ctx < 4; ctx > max_ctx (the model's seq_len); stream text
// shorter than one window.
absl::StatusOr<EvalSet> BuildEvalSet(const model::Tokenizer& tokenizer, std::string_view text,
                                     EvalMode mode, int64_t ctx, int64_t max_ctx,
                                     const std::string& source);

// Checks that `set` can run on a model of `config`: at least one sequence, every sequence
// within seq_len and scoring at least one token, every id inside the vocabulary. The forward
// pass indexes its tables without checks, so every entry point validates with this first.
// `what` labels the message ("evaluation set", "calibration set").
absl::Status ValidateEvalSet(const model::ModelConfig& config, const EvalSet& set,
                             const std::string& what);

}  // namespace impq::eval

#endif  // IMPQ_WORKER_EVAL_EVAL_SET_H_
