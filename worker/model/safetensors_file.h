// One .safetensors file (huggingface/safetensors): the header parsed and validated, the tensor
// bytes memory-mapped.
//
// Layout: u64 little-endian N, then N bytes of UTF-8 JSON, then the data section. The JSON maps
// each tensor name to {"dtype": "F32"|"F16"|"BF16"|..., "shape": [...], "data_offsets":
// [begin, end]} with offsets relative to the data section; the optional "__metadata__" maps
// strings to strings.
//
// Open validates everything before any tensor is touched, so a corrupt file is an error, never
// an out-of-bounds read: the file holds the 8 length bytes and N ≤ size - 8; the header parses
// as a JSON object; every entry has a known dtype, a shape of non-negative integers and two
// offsets with begin ≤ end ≤ the data section's size; shape × dtype size = end - begin; no two
// tensors' byte ranges overlap. Immutable after Open; thread-safe.
#ifndef IMPQ_WORKER_MODEL_SAFETENSORS_FILE_H_
#define IMPQ_WORKER_MODEL_SAFETENSORS_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file_util.h"
#include "worker/model/tensor.h"

namespace impq::model {

class SafetensorsFile {
 public:
  struct Entry {
    std::string dtype;           // as written: "F32", "BF16", "I64", ...
    int element_size = 0;        // bytes per element of dtype
    std::vector<int64_t> shape;  // as written (row-major, PyTorch order)
    uint64_t begin = 0, end = 0; // absolute byte offsets in the file
  };

  // Maps and validates `path`. Errors name the file and, for an entry, the tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool Has(const std::string& name) const { return entries_.count(name) != 0; }

  // The tensor as float32: a zero-copy view of F32 data (when 4-byte aligned), an owned
  // conversion of F16/BF16. NotFound naming the tensor and file when absent; InvalidArgument
  // naming the tensor and dtype for any other dtype.
  absl::StatusOr<Tensor> ReadTensor(const std::string& name) const;
  // The tensor's bytes as stored (any dtype, e.g. U8 packed codes), a view of the mapped file
  // valid while this object lives. NotFound naming the tensor and file when absent.
  absl::StatusOr<std::span<const uint8_t>> RawBytes(const std::string& name) const;

 private:
  explicit SafetensorsFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {}

  std::shared_ptr<const MappedFile> file_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a safetensors dtype name; 0 for an unknown name.
int SafetensorsDtypeSize(const std::string& dtype);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SAFETENSORS_FILE_H_
