#include "worker/model/loader.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/model/llama2c_tokenizer.h"
#include "worker/model/model_reader.h"

namespace impq::model {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  ASSIGN_OR_RETURN(auto tok, Llama2cTokenizer::Load(path));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

absl::StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& model_path,
                                                  const std::string& tokenizer_path) {
  LoadedModel out;
  ASSIGN_OR_RETURN(out.model, LoadModel(model_path));
  ASSIGN_OR_RETURN(out.tokenizer, LoadTokenizer(tokenizer_path));
  if (out.tokenizer->vocab_size() != out.model.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", tokenizer_path, " has ", out.tokenizer->vocab_size(),
        " pieces but model ", model_path, " has a vocabulary of ", out.model.config.vocab_size,
        ": they do not belong together"));
  }
  out.model_path = model_path;
  out.tokenizer_path = tokenizer_path;
  return out;
}

}  // namespace impq::model
