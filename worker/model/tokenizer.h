// Tokenizer interface: text <-> token ids. Implementations are immutable after loading and
// thread-safe for concurrent use.
#ifndef IMPQ_WORKER_MODEL_TOKENIZER_H_
#define IMPQ_WORKER_MODEL_TOKENIZER_H_

#include <string>
#include <string_view>
#include <vector>

namespace impq::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  // Encodes `text`; with `add_bos` the BOS id comes first.
  virtual std::vector<int> Encode(std::string_view text, bool add_bos) const = 0;
  // Decodes ids back to text (BOS/EOS produce nothing; the dummy-prefix space after BOS is
  // dropped), so Decode(Encode(t, true)) == t.
  virtual std::string Decode(const std::vector<int>& ids) const = 0;
  // The raw piece of one id (for diagnostics).
  virtual std::string Piece(int id) const = 0;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_TOKENIZER_H_
