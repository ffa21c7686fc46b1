#include "worker/model/safetensors_file.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/half.h"

namespace impq::model {
namespace {

// safetensors itself refuses headers over 100 MB; so do we, before allocating anything.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// A JSON integer >= 0, or an error naming `what`.
absl::StatusOr<uint64_t> NonNegative(const nlohmann::json& v, const std::string& path,
                                     const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  return Bad(path, absl::StrCat(what, " must be a non-negative integer, got ", v.dump()));
}

}  // namespace

int SafetensorsDtypeSize(const std::string& dtype) {
  static const std::map<std::string, int> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"F64", 8},  {"I64", 8}, {"U64", 8}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapped, MappedFile::Open(path));
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile(mapped));
  const std::span<const uint8_t> bytes = mapped->bytes();
  if (bytes.size() < 8) {
    return Bad(path, absl::StrCat("truncated safetensors header: the file has ", bytes.size(),
                                  " bytes, the header length field needs 8"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian on any host
  if (n > bytes.size() - 8) {
    return Bad(path, absl::StrCat("safetensors header length ", n, " goes beyond the file (",
                                  bytes.size(), " bytes, so at most ", bytes.size() - 8, ")"));
  }
  if (n > kMaxHeaderBytes) {
    return Bad(path, absl::StrCat("safetensors header length ", n, " exceeds the limit of ",
                                  kMaxHeaderBytes, " bytes"));
  }
  const uint64_t data_begin = 8 + n;
  const uint64_t data_size = bytes.size() - data_begin;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    return Bad(path, absl::StrCat("safetensors header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return Bad(path, absl::StrCat("safetensors header must be a JSON object, got ",
                                  header.type_name()));
  }
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) return Bad(path, "__metadata__ must be an object of strings");
      for (const auto& [k, mv] : v.items()) {
        if (mv.is_string()) file->metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor ", name);
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return Bad(path, absl::StrCat(where, ": entry must be an object with dtype, shape and "
                                           "data_offsets, got ", v.dump()));
    }
    Entry e;
    if (!v["dtype"].is_string()) return Bad(path, absl::StrCat(where, ": dtype must be a string"));
    e.dtype = v["dtype"].get<std::string>();
    e.element_size = SafetensorsDtypeSize(e.dtype);
    if (e.element_size == 0) {
      return Bad(path, absl::StrCat(where, ": unknown dtype \"", e.dtype,
                                    "\" (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, "
                                    "BF16, I32, U32, F32, F64, I64, U64)"));
    }
    const nlohmann::json& shape = v["shape"];
    if (!shape.is_array()) return Bad(path, absl::StrCat(where, ": shape must be an array"));
    // numel in 128 bits: dims are untrusted and their product may overflow 64 bits.
    unsigned __int128 numel = 1;
    for (const auto& d : shape) {
      ASSIGN_OR_RETURN(uint64_t dim, NonNegative(d, path, absl::StrCat(where, ": shape entry")));
      if (dim > (uint64_t{1} << 62)) {
        return Bad(path, absl::StrCat(where, ": shape entry ", dim, " is absurd"));
      }
      e.shape.push_back(static_cast<int64_t>(dim));
      numel *= dim;
      numel = std::min(numel, static_cast<unsigned __int128>(1) << 64);  // saturate
    }
    const nlohmann::json& offs = v["data_offsets"];
    if (!offs.is_array() || offs.size() != 2) {
      return Bad(path, absl::StrCat(where, ": data_offsets must be [begin, end], got ",
                                    offs.dump()));
    }
    ASSIGN_OR_RETURN(uint64_t begin, NonNegative(offs[0], path, where + ": data_offsets[0]"));
    ASSIGN_OR_RETURN(uint64_t end, NonNegative(offs[1], path, where + ": data_offsets[1]"));
    if (begin > end || end > data_size) {
      return Bad(path, absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                    "] are outside the data section [0, ", data_size, "]",
                                    begin > end ? " (begin > end)" : ""));
    }
    const unsigned __int128 want = numel * static_cast<unsigned __int128>(e.element_size);
    if (want != end - begin) {
      return Bad(path, absl::StrCat(where, ": shape [", absl::StrJoin(e.shape, ", "), "] × ",
                                    e.dtype, " (", e.element_size, " bytes) needs ",
                                    static_cast<uint64_t>(
                                        std::min<unsigned __int128>(want, ~uint64_t{0})),
                                    " bytes, data_offsets give ", end - begin));
    }
    e.begin = data_begin + begin;
    e.end = data_begin + end;
    file->entries_.emplace(name, std::move(e));
  }
  // No overlaps: sorted by begin, each range starts at or after the previous one's end.
  std::vector<std::pair<const std::string*, const Entry*>> by_offset;
  for (const auto& [name, e] : file->entries_) by_offset.emplace_back(&name, &e);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin
                                              : a.second->end < b.second->end;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Entry& a = *by_offset[i - 1].second;
    const Entry& b = *by_offset[i].second;
    if (b.begin < a.end) {
      return Bad(path, absl::StrCat("tensors ", *by_offset[i - 1].first, " [", a.begin - data_begin,
                                    ", ", a.end - data_begin, ") and ", *by_offset[i].first, " [",
                                    b.begin - data_begin, ", ", b.end - data_begin,
                                    ") overlap"));
    }
  }
  return file;
}

absl::StatusOr<Tensor> SafetensorsFile::ReadTensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path(), ": tensor ", name, " is missing"));
  }
  const Entry& e = it->second;
  const uint8_t* p = file_->bytes().data() + e.begin;
  const size_t n = static_cast<size_t>((e.end - e.begin) / e.element_size);
  if (e.dtype == "F32") {
    if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
      return Tensor(name, e.shape, reinterpret_cast<const float*>(p), file_);
    }
    std::vector<float> v(n);
    std::memcpy(v.data(), p, n * sizeof(float));
    return Tensor::Owned(name, e.shape, std::move(v));
  }
  if (e.dtype == "F16" || e.dtype == "BF16") {
    const bool bf16 = e.dtype == "BF16";
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      v[i] = bf16 ? Bf16ToFloat(h) : F16ToFloat(h);
    }
    return Tensor::Owned(name, e.shape, std::move(v));
  }
  return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor ", name, " has dtype ", e.dtype,
                                                 "; only F32, F16 and BF16 weights are supported"));
}

absl::StatusOr<std::span<const uint8_t>> SafetensorsFile::RawBytes(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(path(), ": tensor ", name, " is missing"));
  }
  return file_->bytes().subspan(it->second.begin, it->second.end - it->second.begin);
}

}  // namespace impq::model
