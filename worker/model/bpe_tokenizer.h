// Merge-list BPE tokenizers: Hugging Face tokenizer.json files of model type "BPE", and GGUF
// vocabularies of tokenizer.ggml.model = "gpt2".
//
// Two flavours:
//  - kByteLevel (GPT-2 style; Llama-3, Qwen-2/3): text is split by the Llama-3 / Qwen
//    pre-tokenizer rules (pretokenize.h), each piece's bytes are mapped to GPT-2's printable
//    byte alphabet (bytes 0x21-0x7e, 0xa1-0xac, 0xae-0xff map to themselves, the other 68 to
//    U+0100...), and each piece is merged by the rank of adjacent pairs in the merges list.
//    Every byte string round-trips.
//  - kSentencePiece (Gemma; Llama-2's tokenizer.json): spaces become "▁" (U+2581), optionally a
//    "▁" is prepended, the whole text is one word of code points; a code point that is not a
//    piece becomes its byte-fallback pieces "<0xHH>"; pairs merge by rank.
// Merging: repeatedly the adjacent pair of lowest merge rank, the leftmost on ties (HF
// tokenizers' BPE Word::merge_all), with a heap: O(n log n).
// Added tokens (tokenizer.json "added_tokens"; GGUF control and user-defined tokens) are
// matched verbatim in the text before anything else, longest first.
// Immutable after construction; thread-safe.
#ifndef IMPQ_WORKER_MODEL_BPE_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_BPE_TOKENIZER_H_

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/gguf_file.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

class BpeTokenizer : public Tokenizer {
 public:
  enum class Mode { kByteLevel, kSentencePiece };
  struct Spec {
    Mode mode = Mode::kByteLevel;
    std::vector<std::string> pieces;                          // by id; may hold "" gaps
    std::vector<std::pair<std::string, std::string>> merges;  // by rank
    std::vector<int> added_ids;  // matched verbatim before splitting
    int bos_id = -1, eos_id = -1, unk_id = -1;
    int max_digits = 3;           // kByteLevel: 3 for Llama-3, 1 for Qwen
    bool prepend_space = false;   // kSentencePiece: "▁" before the text
    bool byte_fallback = true;    // kSentencePiece
  };

  // Errors name `source` and the problem (duplicate pieces, merges of unknown pieces,
  // special ids outside the vocabulary).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromSpec(Spec spec,
                                                                const std::string& source);
  // A tokenizer.json; BOS/EOS come from tokenizer_config.json beside it (bos_token, eos_token),
  // else from config.json (bos_token_id, eos_token_id). Unsupported pre-tokenizers (anything
  // but the Llama-3 / Qwen split + ByteLevel, or none) and model types are errors.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadTokenizerJson(const std::string& path);
  // A GGUF "gpt2" vocabulary: tokenizer.ggml.tokens, .merges, .token_type, .bos_token_id,
  // .eos_token_id, .pre ("llama-bpe"/"llama3"/"smaug-bpe": 3 digits; "qwen2": 1).
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromGguf(const GgufFile& gguf);

  int vocab_size() const override { return static_cast<int>(spec_.pieces.size()); }
  int bos_id() const override { return spec_.bos_id; }
  int eos_id() const override { return spec_.eos_id; }
  // With add_bos and a BOS id, it comes first (no BOS id: nothing is added).
  std::vector<int> Encode(std::string_view text, bool add_bos) const override;
  // BOS/EOS produce nothing, other added tokens their text; kSentencePiece drops the
  // prepended space.
  std::string Decode(const std::vector<int>& ids) const override;
  std::string Piece(int id) const override;

  // GPT-2's byte -> code point map (as UTF-8), and its inverse.
  static const std::array<std::string, 256>& ByteToUnicode();

 private:
  explicit BpeTokenizer(Spec spec) : spec_(std::move(spec)) {}
  void EncodeWord(std::vector<std::string> symbols, std::vector<int>& out) const;
  void EncodeText(std::string_view text, std::vector<int>& out) const;

  Spec spec_;
  std::unordered_map<std::string, int> ids_;    // piece -> id
  std::unordered_map<std::string, int> ranks_;  // a + '\xff' + b -> rank
  std::unordered_map<std::string, uint8_t> unicode_to_byte_;
  std::vector<bool> is_added_;                  // by id
  std::vector<std::string> added_by_length_;    // longest first
  std::array<int, 256> byte_piece_ids_{};       // kSentencePiece: "<0xHH>", -1 if absent
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_BPE_TOKENIZER_H_
