// A checksum that identifies a model's weights whatever file they were read from.
//
// `impq run` records it in its JSON; `impq export` compares it with the model it is asked to
// export for, so an allocation computed for one model is never applied to another that merely
// has the same shapes.
#ifndef IMPQ_WORKER_MODEL_FINGERPRINT_H_
#define IMPQ_WORKER_MODEL_FINGERPRINT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "worker/model/model.h"

namespace impq::model {

// 64-bit FNV-1a, the hash of the fingerprints (stable across processes and machines).
class Fnv1a64 {
 public:
  void Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
  }
  void Int(int64_t v) { Bytes(&v, sizeof v); }
  void Str(const std::string& s) {
    Int(static_cast<int64_t>(s.size()));
    Bytes(s.data(), s.size());
  }
  void Floats(const float* v, int64_t n) { Bytes(v, static_cast<size_t>(n) * sizeof(float)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

// "fnv1a64:" + 16 lower-case hex digits: 64-bit FNV-1a over the architecture name, the shape
// fields of the config, and every tensor's float32 bit patterns in a fixed order (embedding;
// per layer the norms and the seven linears in LinearKind order; the final norm; the output
// head only when untied). Q and K rows are hashed in the interleaved (Meta / llama2.c / GGUF)
// rotary layout whatever layout the model stores, so the llama2.c, GGUF and Hugging Face
// files of one model give the same fingerprint; any changed weight bit (a BF16 copy, another
// checkpoint) gives another. REQUIRES: m.Validate().ok().
std::string WeightsFingerprint(const Model& m);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_FINGERPRINT_H_
