// The llama2.c `tokenizer.bin` format and its encoder (karpathy/llama2.c run.c).
//
// File: int32 max_token_length, then per token: float32 score, int32 byte length, the bytes.
// The file does not store the vocabulary size: pieces are read until the end of the file.
// Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS); pieces "<0xHH>" are byte fallbacks.
//
// Encoding, exactly as run.c: BOS, then a dummy-prefix " " piece (when the text is not empty),
// then one piece per UTF-8 code point (byte fallback id = byte + 3 when the code point is not
// a piece), then repeatedly merge the adjacent pair whose concatenation is a piece with the
// highest score (leftmost on ties), with the merge loop shared with the other score-ranked
// tokenizers (bpe_merge.h: O(n log n), the same pair as run.c's O(n^2) rescans).
#ifndef IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/bpe_merge.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

class Llama2cTokenizer : public Tokenizer {
 public:
  // Loads `path`. Errors name the file and, for a truncated or corrupt entry, its index and
  // byte offset.
  static absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Load(const std::string& path);

  int vocab_size() const override { return static_cast<int>(vocab_.pieces.size()); }
  int bos_id() const override { return 1; }
  int eos_id() const override { return 2; }
  std::vector<int> Encode(std::string_view text, bool add_bos) const override;
  std::string Decode(const std::vector<int>& ids) const override;
  std::string Piece(int id) const override;
  float Score(int id) const { return vocab_.scores.at(id); }

 private:
  Llama2cTokenizer() = default;
  int Lookup(std::string_view s) const;

  // mergeable: every piece, first id of each (run.c's lookup); min_score: run.c's -1e10.
  ScoredVocab vocab_;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_
