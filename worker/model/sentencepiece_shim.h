// A narrow, Abseil-free wrapper of Debian's libsentencepiece.
//
// Why: sentencepiece_processor.h declares `namespace absl { using std::string_view; }`, which
// collides with Debian's Abseil (whose absl::string_view is its own class) in any translation
// unit that includes both. Only sentencepiece_shim.cc includes the library header; it includes
// no Abseil header, and this header includes neither. Immutable after Load; thread-safe
// (SentencePieceProcessor's encode and decode are const).
#ifndef IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_
#define IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace impq::model {

class SpmProcessor {
 public:
  // Loads a SentencePiece model (tokenizer.model); nullptr and `*error` set on failure.
  static std::unique_ptr<SpmProcessor> Load(const std::string& path, std::string* error);
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  int piece_size() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  // False and `*error` set on failure.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;
  std::string IdToPiece(int id) const;
  float Score(int id) const;
  bool IsControl(int id) const;

 private:
  explicit SpmProcessor(std::unique_ptr<sentencepiece::SentencePieceProcessor> p);
  std::unique_ptr<sentencepiece::SentencePieceProcessor> p_;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_
