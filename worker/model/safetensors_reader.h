// Reader for Hugging Face checkpoints: config.json plus safetensors weights, single-file
// (model.safetensors) or sharded (model.safetensors.index.json, whose "weight_map" names the
// shard holding each tensor).
//
// A model reference is the directory, its model.safetensors, one of its shards, or its
// model.safetensors.index.json; config.json is read from the same directory. Its
// "architectures" picks the ModelArch (model_arch.h); an unknown one is an error listing the
// supported classes. F32 tensors are zero-copy views of the memory-mapped files; F16 and BF16
// are converted to owned float32.
#ifndef IMPQ_WORKER_MODEL_SAFETENSORS_READER_H_
#define IMPQ_WORKER_MODEL_SAFETENSORS_READER_H_

#include "worker/model/model_reader.h"

namespace impq::model {

class SafetensorsReader : public ModelReader {
 public:
  std::string format() const override { return "safetensors"; }
  // A directory holding config.json and model.safetensors or model.safetensors.index.json,
  // or a path ending in ".safetensors" or ".safetensors.index.json".
  bool Recognizes(const std::string& path, std::span<const uint8_t> head) const override;
  absl::StatusOr<Model> Read(const std::string& path) const override;
};

// The directory a Hugging Face model reference stands for: `path` itself when it is a
// directory, else the directory holding the file.
std::string HfModelDir(const std::string& path);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SAFETENSORS_READER_H_
