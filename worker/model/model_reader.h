// Readers turn a checkpoint on disk into a Model. One file per format; LoadModel picks the
// reader that recognises the file, so a new format is a new reader, not an edit elsewhere.
#ifndef IMPQ_WORKER_MODEL_MODEL_READER_H_
#define IMPQ_WORKER_MODEL_MODEL_READER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model.h"

namespace impq::model {

class ModelReader {
 public:
  virtual ~ModelReader() = default;
  // Short format name, e.g. "llama2c".
  virtual std::string format() const = 0;
  // True when the file at `path`, whose first bytes are `head` (up to 64), is in this format.
  virtual bool Recognizes(const std::string& path, std::span<const uint8_t> head) const = 0;
  // Reads and validates the whole model. Errors name the file and the reason: missing file,
  // truncated data, header fields inconsistent with the file size, bad shapes.
  virtual absl::StatusOr<Model> Read(const std::string& path) const = 0;
};

// Every reader compiled in, in the order LoadModel tries them.
std::vector<std::unique_ptr<ModelReader>> AllModelReaders();

// Loads the model at `path` (a file, or a Hugging Face model directory) with the first reader
// that recognises it; NotFound for a missing path, InvalidArgument naming the formats tried
// when none does. Every file is opened with OpenRegularFile (common/file_util.h): a FIFO,
// device or socket — as the path or inside a model directory — is refused at once with
// InvalidArgument ("<path>: not a regular file: a FIFO"), never opened for a blocking read.
// A successfully loaded model has been checked against its metadata (AssembleModel, or
// Llama2cReader's exact size) and holds only finite weights.
absl::StatusOr<Model> LoadModel(const std::string& path);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_MODEL_READER_H_
