// Loads a model and its tokenizer together and checks they belong together.
#ifndef IMPQ_WORKER_MODEL_LOADER_H_
#define IMPQ_WORKER_MODEL_LOADER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model.h"
#include "worker/model/tokenizer.h"

namespace impq::model {

struct LoadedModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string model_path, tokenizer_path;
};

// Loads a tokenizer file, by content: a GGUF file (its embedded vocabulary: "llama" ->
// GgufTokenizer, "gpt2" -> BpeTokenizer), a SentencePiece model (a path ending in ".model"), a
// Hugging Face tokenizer.json (a path ending in ".json" -> BpeTokenizer), else a llama2.c
// tokenizer.bin. Like LoadModel, opens only regular files, without blocking (a FIFO, directory
// or device is an InvalidArgument naming the path and what it is).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path);

// The tokenizer a model reference carries: the GGUF file itself (embedded vocabulary), or
// tokenizer.model in a Hugging Face model's directory, else its tokenizer.json, else a llama2.c
// tokenizer.bin there (impq checkpoints, impq_checkpoint.h). NotFound saying
// what to pass otherwise (a llama2.c .bin carries none).
absl::StatusOr<std::string> FindTokenizerFor(const std::string& model_path);

// Whether a tokenizer with `tokenizer_pieces` pieces belongs to a model whose embedding has
// `model_vocab` rows: equal, or the model padded (checkpoints round the embedding up for
// efficient kernels, e.g. Qwen-3: 151,669 pieces, 151,936 rows) by at most model_vocab / 16
// rows. The padding rows are never produced by the tokenizer; eval::ValidateEvalSet still
// rejects ids >= model_vocab.
bool VocabulariesMatch(int64_t tokenizer_pieces, int64_t model_vocab);

// ResolveInDataRoots (common/file_util.h) for a model reference, including the files the
// readers open next to it by name: a single file of a folder format (".safetensors",
// ".safetensors.index.json": config.json, shards and the tokenizer FindTokenizerFor finds live
// in its folder) has that folder's entries checked as a model folder's are, so a config.json
// linked to a file outside the roots is refused too (PermissionDenied naming `field`). The
// coordinator (at submit) and the worker (before loading) both confine a job's model with it.
absl::StatusOr<std::string> ResolveModelInDataRoots(const std::string& field,
                                                    const std::string& model_path,
                                                    const std::vector<std::string>& roots);

// Loads both; an empty `tokenizer_path` uses FindTokenizerFor(model_path). InvalidArgument
// naming both files when !VocabulariesMatch(tokenizer's size, model's vocab_size).
absl::StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& model_path,
                                                  const std::string& tokenizer_path = "");

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_LOADER_H_
