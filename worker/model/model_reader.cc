#include "worker/model/model_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/impq_checkpoint.h"
#include "worker/model/llama2c_reader.h"
#include "worker/model/safetensors_reader.h"

namespace impq::model {

std::vector<std::unique_ptr<ModelReader>> AllModelReaders() {
  std::vector<std::unique_ptr<ModelReader>> readers;
  readers.push_back(std::make_unique<GgufReader>());
  // Before SafetensorsReader: an impq checkpoint is also a directory with config.json and
  // model.safetensors, but its linear weights are packed.
  readers.push_back(std::make_unique<ImpqCheckpointReader>());
  readers.push_back(std::make_unique<SafetensorsReader>());
  readers.push_back(std::make_unique<Llama2cReader>());
  return readers;
}

absl::StatusOr<Model> LoadModel(const std::string& path) {
  // stat() never blocks; only a directory (a Hugging Face model) is accepted besides a regular
  // file, whose head is read through OpenRegularFile (a FIFO or device is refused, not opened
  // for a blocking read).
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "cannot open model", path);
  std::string head;
  if (!S_ISDIR(st.st_mode)) {  // a directory (a Hugging Face model) has no head bytes
    ASSIGN_OR_RETURN(head, ReadFileHead(path, 64));
  }
  std::span<const uint8_t> head_span(reinterpret_cast<const uint8_t*>(head.data()), head.size());
  std::vector<std::string> tried;
  for (const auto& reader : AllModelReaders()) {
    if (reader->Recognizes(path, head_span)) return reader->Read(path);
    tried.push_back(reader->format());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, S_ISDIR(st.st_mode)
                ? ": a directory, but not a model directory (config.json with model.safetensors "
                  "or model.safetensors.index.json)"
                : ": unrecognised model format",
      " (tried: ", absl::StrJoin(tried, ", "), ")"));
}

}  // namespace impq::model
