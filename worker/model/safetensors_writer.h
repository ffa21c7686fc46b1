// Builds a .safetensors file (huggingface/safetensors) in memory: u64 little-endian header
// length, the JSON header {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}
// padded with spaces to a multiple of 8 bytes, then the tensors' bytes back to back in the
// order they were added (offsets contiguous, as the format requires). SafetensorsFile reads
// the result. Thread-compatible.
#ifndef IMPQ_WORKER_MODEL_SAFETENSORS_WRITER_H_
#define IMPQ_WORKER_MODEL_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace impq::model {

class SafetensorsWriter {
 public:
  // Adds a tensor whose little-endian bytes are `bytes`. InvalidArgument (naming the tensor)
  // for an empty or duplicate name, an unknown dtype, or a byte count other than
  // product(shape) x the dtype's size.
  absl::Status Add(const std::string& name, const std::string& dtype,
                   const std::vector<int64_t>& shape, std::string bytes);
  absl::Status AddF32(const std::string& name, const std::vector<int64_t>& shape,
                      std::span<const float> values);
  // A "__metadata__" entry (string to string).
  void SetMetadata(const std::string& key, const std::string& value);
  // The whole file.
  std::string Build() const;

  struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  // What was added, in order.
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SAFETENSORS_WRITER_H_
