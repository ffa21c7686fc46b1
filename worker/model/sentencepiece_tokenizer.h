// SentencePiece model files (tokenizer.model, a serialized ModelProto), read and run by
// Debian's libsentencepiece inside the libimpq_sentencepiece.so module (sentencepiece_shim.h:
// isolated from the process's protobuf, so any impq binary may load one). BOS/EOS ids come
// from the model; Encode(text, add_bos) is the
// processor's encoding (normalization, dummy prefix, BPE or unigram, byte fallback as the
// model's spec says) with BOS first when asked. Immutable after Load; thread-safe.
#ifndef IMPQ_WORKER_MODEL_SENTENCEPIECE_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/sentencepiece_shim.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // InvalidArgument naming the file when it is not a SentencePiece model; NotFound when absent;
  // the module's errors (NotFound / FailedPrecondition naming the module) prefixed with `path`.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path);

  int vocab_size() const override { return spm_->piece_size(); }
  int bos_id() const override { return spm_->bos_id(); }
  int eos_id() const override { return spm_->eos_id(); }
  // An encoding failure (which libsentencepiece reports only for an unloaded model) yields
  // just the BOS id.
  std::vector<int> Encode(std::string_view text, bool add_bos) const override;
  // Control ids (BOS/EOS) and ids outside the vocabulary produce nothing.
  std::string Decode(const std::vector<int>& ids) const override;
  std::string Piece(int id) const override;

 private:
  explicit SentencePieceTokenizer(std::unique_ptr<SpmProcessor> spm) : spm_(std::move(spm)) {}
  std::unique_ptr<SpmProcessor> spm_;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SENTENCEPIECE_TOKENIZER_H_
