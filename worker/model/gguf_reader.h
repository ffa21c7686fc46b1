// Reader for GGUF model files (llama.cpp), versions 2 and 3, F32/F16/BF16 tensors.
//
// general.architecture picks the ModelArch (model_arch.h), which knows the metadata keys and
// tensor names. GGUF dims are innermost-first (ne[0] = in_features); GgufFile reverses them,
// so a linear weight is [out, in] as everywhere in impq and its bytes are used as they are.
// F32 tensors are zero-copy views of the memory map; F16/BF16 are converted to owned float32;
// quantized ggml types are an error naming the tensor and its type.
#ifndef IMPQ_WORKER_MODEL_GGUF_READER_H_
#define IMPQ_WORKER_MODEL_GGUF_READER_H_

#include "worker/model/gguf_file.h"
#include "worker/model/model_reader.h"

namespace impq::model {

class GgufReader : public ModelReader {
 public:
  std::string format() const override { return "gguf"; }
  // The "GGUF" magic, or a path ending in ".gguf" (so that Read reports what is wrong).
  bool Recognizes(const std::string& path, std::span<const uint8_t> head) const override;
  absl::StatusOr<Model> Read(const std::string& path) const override;
  // The model of an opened file.
  static absl::StatusOr<Model> FromFile(const GgufFile& gguf);
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_GGUF_READER_H_
