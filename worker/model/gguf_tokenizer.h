// The vocabulary embedded in a GGUF file, tokenizer.ggml.model = "llama" (SentencePiece BPE):
// tokenizer.ggml.tokens, .scores, .token_type, .bos_token_id, .eos_token_id, .unknown_token_id,
// .add_space_prefix (default true).
//
// Encoding follows SentencePiece's BPE (and llama.cpp's llm_tokenizer_spm): spaces become "▁"
// (U+2581), a "▁" dummy prefix is prepended when add_space_prefix is set, the text is split
// into UTF-8 code points, a code point that is not a piece becomes its byte-fallback pieces
// "<0xHH>" (or <unk> without them), and pairs merge by score (bpe_merge.h). Only normal and
// user-defined pieces are merge results; control, unknown, unused and byte pieces never are.
// Not handled (not used by "llama" vocabularies of the Llama-2 family): user-defined pieces
// matched as whole strings before BPE. Immutable after construction; thread-safe.
#ifndef IMPQ_WORKER_MODEL_GGUF_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_GGUF_TOKENIZER_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/bpe_merge.h"
#include "worker/model/gguf_file.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

class GgufTokenizer : public Tokenizer {
 public:
  // llama.cpp's token types (tokenizer.ggml.token_type).
  enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5,
                   kByte = 6 };

  // Errors name the file and key: no vocabulary, a tokenizer model other than "llama", arrays
  // of different lengths, special ids outside the vocabulary.
  static absl::StatusOr<std::unique_ptr<GgufTokenizer>> FromGguf(const GgufFile& gguf);
  static absl::StatusOr<std::unique_ptr<GgufTokenizer>> Load(const std::string& path);

  int vocab_size() const override { return static_cast<int>(vocab_.pieces.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  std::vector<int> Encode(std::string_view text, bool add_bos) const override;
  // Control and unknown-range ids produce nothing, byte pieces their byte, "▁" a space; the
  // dummy-prefix space at the start of the text is dropped.
  std::string Decode(const std::vector<int>& ids) const override;
  std::string Piece(int id) const override;

 private:
  GgufTokenizer() = default;

  ScoredVocab vocab_;         // mergeable: normal and user-defined pieces
  std::vector<int> types_;    // by id
  std::array<int, 256> byte_ids_;  // id of "<0xHH>", -1 when absent
  int bos_id_ = 1, eos_id_ = 2, unk_id_ = 0;
  bool add_space_prefix_ = true;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_GGUF_TOKENIZER_H_
