// One GGUF file (ggml-org/ggml docs/gguf.md), versions 2 and 3: metadata key/values and
// tensor infos parsed and validated, tensor bytes memory-mapped.
//
// Layout (little-endian): u32 magic "GGUF", u32 version, u64 tensor_count, u64 kv_count;
// kv_count × (string key, u32 value type, value); tensor_count × (string name, u32 n_dims,
// u64 ne[n_dims], u32 ggml type, u64 offset); padding to `general.alignment` (default 32);
// the data section, in which each tensor starts at its (aligned) offset. A string is a u64
// length and that many bytes; an array is a u32 element type, a u64 count and the elements.
// ne[0] is the innermost (fastest) dimension: a weight of PyTorch shape [out, in] has
// ne = [in, out]. Tensor shapes here are given outermost-first, as the rest of impq uses them.
//
// Every read is bounds-checked against the file: a truncated header or metadata, a string or
// array longer than the bytes left, absurd counts, dims or offsets, tensor data beyond the file
// are errors naming the file, the key or tensor and the byte offset. Immutable after Open;
// thread-safe.
#ifndef IMPQ_WORKER_MODEL_GGUF_FILE_H_
#define IMPQ_WORKER_MODEL_GGUF_FILE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file_util.h"
#include "worker/model/tensor.h"

namespace impq::model {

// GGUF metadata value types.
enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* GgufTypeName(GgufType type);

// The ggml tensor types impq converts; others are named by GgmlTypeName.
inline constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlBF16 = 30;
// "F32", "Q4_K", ...; "type N" for a number ggml does not define.
std::string GgmlTypeName(uint32_t type);

struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Scalars: integers and bools in `i` (u64 values above INT64_MAX wrap), floats in `f`; the
  // numeric value is also mirrored into the other field for convenience.
  int64_t i = 0;
  double f = 0;
  std::string str;  // kString
  // kArray: element type and count; numeric/bool elements in `numbers`, strings in `strings`
  // (arrays of arrays are validated and counted but not kept).
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  std::vector<double> numbers;
  std::vector<std::string> strings;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // outermost-first (reversed ne)
  uint32_t ggml_type = 0;
  uint64_t offset = 0;         // absolute byte offset in the file
  uint64_t nbytes = 0;         // for F32/F16/BF16; 0 for types impq cannot size
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* Find(const std::string& key) const;
  const GgufTensorInfo* FindTensor(const std::string& name) const;
  // Typed getters: NotFound naming the key when absent, InvalidArgument naming the key, the
  // expected and the actual type on a mismatch. GetInt accepts any integer type (and checks
  // the value fits), GetFloat any integer or float type.
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetFloat(const std::string& key) const;
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<bool> GetBool(const std::string& key) const;
  // An array value (any element type); InvalidArgument when the key holds a scalar.
  absl::StatusOr<const GgufValue*> GetArray(const std::string& key) const;

  // The tensor as float32 (zero-copy for aligned F32, owned conversion for F16/BF16).
  // NotFound naming the tensor; InvalidArgument naming the tensor and its ggml type for other
  // types.
  absl::StatusOr<Tensor> ReadTensor(const std::string& name) const;
  // True when both tensors exist with equal shapes, types and bytes.
  bool SameData(const std::string& a, const std::string& b) const;

 private:
  explicit GgufFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {}
  absl::Status Parse();

  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_GGUF_FILE_H_
