// The llama2.c `tokenizer.bin` format and its encoder (karpathy/llama2.c run.c).
//
// File: int32 max_token_length, then per token: float32 score, int32 byte length, the bytes.
// The file does not store the vocabulary size: pieces are read until the end of the file.
// Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS); pieces "<0xHH>" are byte fallbacks.
//
// Encoding, exactly as run.c: BOS, then a dummy-prefix " " piece (when the text is not empty),
// then one piece per UTF-8 code point (byte fallback id = byte + 3 when the code point is not
// a piece), then repeatedly merge the adjacent pair whose concatenation is a piece with the
// highest score (leftmost on ties). run.c rescans all pairs per merge (O(n^2)); here a heap
// over candidate pairs with lazy invalidation picks the same pair in O(n log n), so whole
// corpora can be encoded in one piece.
#ifndef IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

class Llama2cTokenizer : public Tokenizer {
 public:
  // Loads `path`. Errors name the file and, for a truncated or corrupt entry, its index and
  // byte offset.
  static absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Load(const std::string& path);

  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return 1; }
  int eos_id() const override { return 2; }
  std::vector<int> Encode(std::string_view text, bool add_bos) const override;
  std::string Decode(const std::vector<int>& ids) const override;
  std::string Piece(int id) const override;
  float Score(int id) const { return scores_.at(id); }

 private:
  Llama2cTokenizer() = default;
  int Lookup(std::string_view s) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;  // first id of each piece
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_LLAMA2C_TOKENIZER_H_
