#include "worker/model/safetensors_writer.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "worker/model/safetensors_file.h"

namespace impq::model {

absl::Status SafetensorsWriter::Add(const std::string& name, const std::string& dtype,
                                    const std::vector<int64_t>& shape, std::string bytes) {
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: bad tensor name \"", name, "\""));
  }
  for (const Entry& e : entries_) {
    if (e.name == name) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor ", name, " added twice"));
    }
  }
  const int size = SafetensorsDtypeSize(dtype);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: tensor ", name, ": unknown dtype ", dtype));
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor ", name,
                                                     ": negative dimension ", d));
    }
    n *= d;
  }
  if (static_cast<int64_t>(bytes.size()) != n * size) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor ", name, " has ",
                                                   bytes.size(), " bytes, its shape and dtype ",
                                                   dtype, " need ", n * size));
  }
  entries_.push_back({name, dtype, shape, std::move(bytes)});
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AddF32(const std::string& name, const std::vector<int64_t>& shape,
                                       std::span<const float> values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian host
  return Add(name, "F32", shape, std::move(bytes));
}

void SafetensorsWriter::SetMetadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::string SafetensorsWriter::Build() const {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    h[e.name] = {{"dtype", e.dtype},
                 {"shape", e.shape},
                 {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string header = h.dump();
  while (header.size() % 8 != 0) header.push_back(' ');
  std::string out;
  out.reserve(8 + header.size() + offset);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  for (const Entry& e : entries_) out += e.bytes;
  return out;
}

}  // namespace impq::model
