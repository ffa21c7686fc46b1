// Loads a model and its tokenizer together and checks they belong together.
#ifndef IMPQ_WORKER_MODEL_LOADER_H_
#define IMPQ_WORKER_MODEL_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/model/model.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

struct LoadedModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string model_path, tokenizer_path;
};

// Loads a tokenizer file (llama2.c tokenizer.bin for now).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

// Loads both; InvalidArgument naming both files when the tokenizer's vocabulary size differs
// from the model's.
absl::StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& model_path,
                                                  const std::string& tokenizer_path);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_LOADER_H_
