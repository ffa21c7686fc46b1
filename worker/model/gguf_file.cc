#include "worker/model/gguf_file.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "worker/model/half.h"

namespace impq::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;        // arrays of arrays of ...: bounded recursion
using u128 = unsigned __int128;

// A 128-bit size for a message, saturated to 64 bits.
uint64_t Clamp(u128 v) { return static_cast<uint64_t>(std::min<u128>(v, ~uint64_t{0})); }

// Bounds-checked little-endian cursor over the mapped bytes. Every read names what it reads,
// so a truncation error says which field ran out and where.
class Cursor {
 public:
  Cursor(const std::string& path, std::span<const uint8_t> bytes) : path_(path), b_(bytes) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return b_.size() - pos_; }

  absl::Status Need(uint64_t n, const std::string& what) const {
    if (n <= left()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(path_, ": truncated GGUF ", what, " at byte ",
                                                   pos_, ": needs ", n, " bytes, ", left(),
                                                   " left"));
  }
  absl::StatusOr<uint64_t> Uint(int bytes, const std::string& what) {
    RETURN_IF_ERROR(Need(bytes, what));
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b_[pos_ + i];
    pos_ += bytes;
    return v;
  }
  absl::StatusOr<std::string> String(const std::string& what) {
    const uint64_t at = pos_;
    ASSIGN_OR_RETURN(uint64_t len, Uint(8, absl::StrCat(what, " length")));
    if (len > left()) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": GGUF ", what, " at byte ", at,
                                                     " has length ", len,
                                                     ", beyond the end of the file (", left(),
                                                     " bytes left)"));
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  void Seek(uint64_t pos) { pos_ = pos; }

 private:
  const std::string& path_;
  std::span<const uint8_t> b_;
  uint64_t pos_ = 0;
};

// Size in bytes of a scalar GGUF type; 0 for string/array/unknown.
int ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    default: return 0;
  }
}

bool IsInteger(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kInt8 || t == GgufType::kUint16 ||
         t == GgufType::kInt16 || t == GgufType::kUint32 || t == GgufType::kInt32 ||
         t == GgufType::kUint64 || t == GgufType::kInt64;
}

// Reads a scalar of type `t` (REQUIRES: ScalarSize(t) > 0) into (i, f).
absl::Status ReadScalar(Cursor& cur, GgufType t, const std::string& what, int64_t* i, double* f) {
  ASSIGN_OR_RETURN(uint64_t raw, cur.Uint(ScalarSize(t), what));
  switch (t) {
    case GgufType::kInt8: *i = static_cast<int8_t>(raw); break;
    case GgufType::kInt16: *i = static_cast<int16_t>(raw); break;
    case GgufType::kInt32: *i = static_cast<int32_t>(raw); break;
    case GgufType::kInt64: *i = static_cast<int64_t>(raw); break;
    case GgufType::kFloat32: {
      uint32_t r32 = static_cast<uint32_t>(raw);
      float v;
      std::memcpy(&v, &r32, 4);
      *f = v;
      *i = static_cast<int64_t>(v);
      return absl::OkStatus();
    }
    case GgufType::kFloat64: {
      double v;
      std::memcpy(&v, &raw, 8);
      *f = v;
      *i = static_cast<int64_t>(v);
      return absl::OkStatus();
    }
    default: *i = static_cast<int64_t>(raw); break;  // unsigned and bool
  }
  *f = t == GgufType::kUint64 ? static_cast<double>(raw) : static_cast<double>(*i);
  return absl::OkStatus();
}

absl::Status ReadValue(Cursor& cur, const std::string& path, GgufType type, const std::string& key,
                       int depth, GgufValue* out) {
  out->type = type;
  if (ScalarSize(type) > 0) return ReadScalar(cur, type, "value of " + key, &out->i, &out->f);
  if (type == GgufType::kString) {
    ASSIGN_OR_RETURN(out->str, cur.String("string value of " + key));
    return absl::OkStatus();
  }
  if (type != GgufType::kArray) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF key ", key,
                                                   " has unknown value type ",
                                                   static_cast<uint32_t>(type)));
  }
  if (depth >= kMaxArrayDepth) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF key ", key, ": arrays nested ",
                                                   "deeper than ", kMaxArrayDepth));
  }
  const uint64_t at = cur.pos();
  ASSIGN_OR_RETURN(uint64_t et, cur.Uint(4, "array type of " + key));
  ASSIGN_OR_RETURN(out->count, cur.Uint(8, "array count of " + key));
  out->elem_type = static_cast<GgufType>(et);
  // Smallest encoding of one element: a scalar's size, 8 for a string (its length), 12 for an
  // array (type and count). An array claiming more elements than the bytes left could hold is
  // rejected before anything is allocated.
  int min_size = ScalarSize(out->elem_type);
  if (out->elem_type == GgufType::kString) min_size = 8;
  if (out->elem_type == GgufType::kArray) min_size = 12;
  if (min_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF key ", key, " at byte ", at,
                                                   ": array of unknown element type ", et));
  }
  if (static_cast<u128>(out->count) * min_size > cur.left()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": GGUF key ", key, " at byte ", at, ": array of ", out->count, " ",
        GgufTypeName(out->elem_type), " elements needs at least ",
        Clamp(static_cast<u128>(out->count) * min_size),
        " bytes, ", cur.left(), " left"));
  }
  if (out->elem_type == GgufType::kString) {
    out->strings.reserve(out->count);
    for (uint64_t k = 0; k < out->count; ++k) {
      ASSIGN_OR_RETURN(std::string s, cur.String(absl::StrCat(key, "[", k, "]")));
      out->strings.push_back(std::move(s));
    }
  } else if (out->elem_type == GgufType::kArray) {
    for (uint64_t k = 0; k < out->count; ++k) {
      GgufValue inner;
      RETURN_IF_ERROR(ReadValue(cur, path, GgufType::kArray, absl::StrCat(key, "[", k, "]"),
                                depth + 1, &inner));
    }
  } else {
    out->numbers.reserve(out->count);
    for (uint64_t k = 0; k < out->count; ++k) {
      int64_t i = 0;
      double f = 0;
      RETURN_IF_ERROR(ReadScalar(cur, out->elem_type, key, &i, &f));
      out->numbers.push_back(f);
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

std::string GgmlTypeName(uint32_t type) {
  static const char* const kNames[] = {
      "F32",     "F16",    "Q4_0",   "Q4_1",   "Q4_2",  "Q4_3",    "Q5_0",    "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",   "Q3_K",   "Q4_K",  "Q5_K",    "Q6_K",    "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",  "IQ2_S",   "IQ4_XS",
      "I8",      "I16",    "I32",    "I64",    "F64",   "IQ1_M",   "BF16",    "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8",
      "MXFP4"};
  if (type < sizeof(kNames) / sizeof(kNames[0])) return kNames[type];
  return absl::StrCat("type ", type);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapped, MappedFile::Open(path));
  auto file = std::unique_ptr<GgufFile>(new GgufFile(std::move(mapped)));
  RETURN_IF_ERROR(file->Parse());
  return file;
}

absl::Status GgufFile::Parse() {
  const std::string& p = path();
  Cursor cur(p, file_->bytes());
  ASSIGN_OR_RETURN(uint64_t magic, cur.Uint(4, "magic"));
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrCat(p, ": bad GGUF magic 0x",
                                                   absl::Hex(magic, absl::kZeroPad8),
                                                   ", expected 0x46554747 (\"GGUF\")"));
  }
  ASSIGN_OR_RETURN(uint64_t version, cur.Uint(4, "version"));
  if (version != 2 && version != 3) {
    return absl::InvalidArgumentError(absl::StrCat(p, ": GGUF version ", version,
                                                   " is not supported (2 and 3 are)"));
  }
  version_ = static_cast<uint32_t>(version);
  ASSIGN_OR_RETURN(uint64_t n_tensors, cur.Uint(8, "tensor count"));
  ASSIGN_OR_RETURN(uint64_t n_kv, cur.Uint(8, "metadata count"));
  // A key/value needs at least 13 bytes (key length, type, a 1-byte value), a tensor info 24.
  if (static_cast<u128>(n_kv) * 13 + static_cast<u128>(n_tensors) * 24 > cur.left()) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, ": GGUF header claims ", n_kv, " metadata entries and ", n_tensors,
        " tensors, more than the ", cur.left(), " bytes left in the file can hold"));
  }
  for (uint64_t k = 0; k < n_kv; ++k) {
    ASSIGN_OR_RETURN(std::string key, cur.String(absl::StrCat("metadata key ", k)));
    ASSIGN_OR_RETURN(uint64_t type, cur.Uint(4, "value type of " + key));
    GgufValue v;
    RETURN_IF_ERROR(ReadValue(cur, p, static_cast<GgufType>(type), key, 0, &v));
    if (!metadata_.emplace(key, std::move(v)).second) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": duplicate GGUF metadata key ", key));
    }
  }
  if (const GgufValue* a = Find("general.alignment")) {
    if (!IsInteger(a->type) || a->i <= 0 || (a->i & (a->i - 1)) != 0 || a->i > (1 << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": general.alignment must be a power of "
                                                     "two integer, got ", a->i, " (",
                                                     GgufTypeName(a->type), ")"));
    }
    alignment_ = static_cast<uint64_t>(a->i);
  }
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo info;
    ASSIGN_OR_RETURN(info.name, cur.String(absl::StrCat("tensor info ", t, " name")));
    const std::string what = "tensor " + info.name;
    ASSIGN_OR_RETURN(uint64_t n_dims, cur.Uint(4, what + " n_dims"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": ", what, " has ", n_dims,
                                                     " dimensions, expected 1..", kMaxDims));
    }
    u128 numel = 1;
    for (uint64_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(uint64_t ne, cur.Uint(8, what + " dims"));
      if (ne > (uint64_t{1} << 40)) {
        return absl::InvalidArgumentError(absl::StrCat(p, ": ", what, " dimension ", d, " = ", ne,
                                                       " is absurd"));
      }
      info.shape.insert(info.shape.begin(), static_cast<int64_t>(ne));  // outermost-first
      numel *= ne;
    }
    ASSIGN_OR_RETURN(uint64_t type, cur.Uint(4, what + " type"));
    info.ggml_type = static_cast<uint32_t>(type);
    ASSIGN_OR_RETURN(info.offset, cur.Uint(8, what + " offset"));
    if (info.offset % alignment_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": ", what, " offset ", info.offset,
                                                     " is not a multiple of the alignment ",
                                                     alignment_));
    }
    const int esize = type == kGgmlF32 ? 4 : (type == kGgmlF16 || type == kGgmlBF16) ? 2 : 0;
    if (numel * esize > file_->size()) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": ", what, " shape [",
                                                     absl::StrJoin(info.shape, ", "),
                                                     "] is larger than the whole file"));
    }
    info.nbytes = static_cast<uint64_t>(numel * esize);
    if (!tensor_index_.emplace(info.name, tensors_.size()).second) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": duplicate GGUF tensor ", info.name));
    }
    tensors_.push_back(std::move(info));
  }
  data_offset_ = (cur.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (GgufTensorInfo& info : tensors_) {
    const u128 begin = static_cast<u128>(data_offset_) + info.offset;
    if (begin + info.nbytes > file_->size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          p, ": tensor ", info.name, " data [", Clamp(begin),
          ", +", info.nbytes, ") goes beyond the end of the file (", file_->size(), " bytes)"));
    }
    info.offset = static_cast<uint64_t>(begin);
  }
  return absl::OkStatus();
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
absl::Status Missing(const std::string& path, const std::string& key) {
  return absl::NotFoundError(absl::StrCat(path, ": GGUF metadata key ", key, " is missing"));
}
absl::Status WrongType(const std::string& path, const std::string& key, const char* want,
                       GgufType got) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": GGUF metadata key ", key, " is ",
                                                 GgufTypeName(got), ", expected ", want));
}
}  // namespace

absl::StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (!IsInteger(v->type)) return WrongType(path(), key, "an integer", v->type);
  if (v->type == GgufType::kUint64 && v->i < 0) {
    return absl::InvalidArgumentError(absl::StrCat(path(), ": GGUF metadata key ", key,
                                                   " = ", static_cast<uint64_t>(v->i),
                                                   " is out of range"));
  }
  return v->i;
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (!IsInteger(v->type) && v->type != GgufType::kFloat32 && v->type != GgufType::kFloat64) {
    return WrongType(path(), key, "a number", v->type);
  }
  return v->f;
}

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type != GgufType::kString) return WrongType(path(), key, "a string", v->type);
  return v->str;
}

absl::StatusOr<bool> GgufFile::GetBool(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type != GgufType::kBool) return WrongType(path(), key, "a bool", v->type);
  return v->i != 0;
}

absl::StatusOr<const GgufValue*> GgufFile::GetArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(path(), key);
  if (v->type != GgufType::kArray) return WrongType(path(), key, "an array", v->type);
  return v;
}

absl::StatusOr<Tensor> GgufFile::ReadTensor(const std::string& name) const {
  const GgufTensorInfo* info = FindTensor(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path(), ": tensor ", name, " is missing"));
  }
  const uint32_t t = info->ggml_type;
  if (t != kGgmlF32 && t != kGgmlF16 && t != kGgmlBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        path(), ": tensor ", name, " has ggml type ", GgmlTypeName(t), " (", t,
        "); only F32, F16 and BF16 tensors are supported"));
  }
  const uint8_t* p = file_->bytes().data() + info->offset;
  if (t == kGgmlF32) {
    if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
      return Tensor(name, info->shape, reinterpret_cast<const float*>(p), file_);
    }
    std::vector<float> v(info->nbytes / 4);
    std::memcpy(v.data(), p, info->nbytes);
    return Tensor::Owned(name, info->shape, std::move(v));
  }
  std::vector<float> v(info->nbytes / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
    v[i] = t == kGgmlBF16 ? Bf16ToFloat(h) : F16ToFloat(h);
  }
  return Tensor::Owned(name, info->shape, std::move(v));
}

bool GgufFile::SameData(const std::string& a, const std::string& b) const {
  const GgufTensorInfo* x = FindTensor(a);
  const GgufTensorInfo* y = FindTensor(b);
  if (x == nullptr || y == nullptr || x->shape != y->shape || x->ggml_type != y->ggml_type ||
      x->nbytes != y->nbytes || x->nbytes == 0) {
    return false;
  }
  const uint8_t* base = file_->bytes().data();
  return std::memcmp(base + x->offset, base + y->offset, x->nbytes) == 0;
}

}  // namespace impq::model
