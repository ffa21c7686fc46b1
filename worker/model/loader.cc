#include "worker/model/loader.h"

#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "worker/model/bpe_tokenizer.h"
#include "worker/model/gguf_file.h"
#include "worker/model/gguf_tokenizer.h"
#include "worker/model/llama2c_tokenizer.h"
#include "worker/model/model_reader.h"
#include "worker/model/safetensors_reader.h"
#include "worker/model/sentencepiece_tokenizer.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;

// False for anything but a regular file starting "GGUF" (ReadFileHead never blocks on a FIFO).
bool HasGgufMagic(const std::string& path) {
  absl::StatusOr<std::string> head = ReadFileHead(path, 4);
  return head.ok() && *head == "GGUF";
}

bool Exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  if (HasGgufMagic(path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
    if (gguf->Find("tokenizer.ggml.model") != nullptr) {
      ASSIGN_OR_RETURN(std::string kind, gguf->GetString("tokenizer.ggml.model"));
      if (kind == "gpt2") {
        ASSIGN_OR_RETURN(auto tok, BpeTokenizer::FromGguf(*gguf));
        return std::unique_ptr<Tokenizer>(std::move(tok));
      }
    }
    ASSIGN_OR_RETURN(auto tok, GgufTokenizer::FromGguf(*gguf));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  }
  if (absl::EndsWith(path, ".json")) {
    ASSIGN_OR_RETURN(auto tok, BpeTokenizer::LoadTokenizerJson(path));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  }
  if (absl::EndsWith(path, ".model")) {
    ASSIGN_OR_RETURN(auto tok, SentencePieceTokenizer::Load(path));
    return std::unique_ptr<Tokenizer>(std::move(tok));
  }
  ASSIGN_OR_RETURN(auto tok, Llama2cTokenizer::Load(path));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

namespace {

// A single file whose format reads companion files from its folder (HfModelDir).
bool ReadsItsFolder(const std::string& path) {
  return absl::EndsWith(path, ".safetensors") || absl::EndsWith(path, ".safetensors.index.json");
}

}  // namespace

absl::StatusOr<std::string> FindTokenizerFor(const std::string& model_path) {
  if (HasGgufMagic(model_path)) return model_path;
  std::error_code ec;
  const bool is_dir = fs::is_directory(model_path, ec);
  if (is_dir || ReadsItsFolder(model_path)) {
    const std::string dir = HfModelDir(model_path);
    const std::string spm = (fs::path(dir) / "tokenizer.model").string();
    if (Exists(spm)) return spm;
    if (const std::string json = (fs::path(dir) / "tokenizer.json").string(); Exists(json)) {
      return json;
    }
    // impq's quantized checkpoints (impq_checkpoint.h) carry a llama2.c tokenizer this way.
    if (const std::string bin = (fs::path(dir) / "tokenizer.bin").string(); Exists(bin)) {
      return bin;
    }
    return absl::NotFoundError(absl::StrCat(model_path, ": neither tokenizer.model nor "
                                            "tokenizer.json (nor tokenizer.bin) in ", dir,
                                            "; pass a tokenizer explicitly"));
  }
  return absl::NotFoundError(absl::StrCat(
      model_path, ": this model format carries no tokenizer (a llama2.c checkpoint needs its "
                  "tokenizer.bin); pass a tokenizer explicitly (--tokenizer)"));
}

absl::StatusOr<std::string> ResolveModelInDataRoots(const std::string& field,
                                                    const std::string& model_path,
                                                    const std::vector<std::string>& roots) {
  ASSIGN_OR_RETURN(std::string resolved, ResolveInDataRoots(field, model_path, roots));
  std::error_code ec;
  if (!fs::is_directory(resolved, ec) && ReadsItsFolder(resolved)) {
    absl::StatusOr<std::string> folder = ResolveInDataRoots(field, HfModelDir(resolved), roots);
    if (!folder.ok()) {
      // Said of the path as given: the folder's spelling is the server's.
      return absl::Status(folder.status().code(),
                          absl::StrCat(field, ": '", absl::CHexEscape(model_path), "': ",
                                       folder.status().code() ==
                                               absl::StatusCode::kPermissionDenied
                                           ? "a file in its folder (config.json, shards, "
                                             "tokenizer) resolves outside the data roots"
                                           : "its folder cannot be checked"));
    }
  }
  return resolved;
}

bool VocabulariesMatch(int64_t tokenizer_pieces, int64_t model_vocab) {
  return tokenizer_pieces <= model_vocab && (model_vocab - tokenizer_pieces) * 16 <= model_vocab;
}

absl::StatusOr<LoadedModel> LoadModelAndTokenizer(const std::string& model_path,
                                                  const std::string& tokenizer_path) {
  LoadedModel out;
  // The model first: what is wrong with it (a FIFO, a bad file) says more than that no
  // tokenizer could be found next to it.
  ASSIGN_OR_RETURN(out.model, LoadModel(model_path));
  std::string tok_path = tokenizer_path;
  if (tok_path.empty()) {
    ASSIGN_OR_RETURN(tok_path, FindTokenizerFor(model_path));
  }
  ASSIGN_OR_RETURN(out.tokenizer, LoadTokenizer(tok_path));
  if (!VocabulariesMatch(out.tokenizer->vocab_size(), out.model.config.vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", tok_path, " has ", out.tokenizer->vocab_size(),
        " pieces but model ", model_path, " has a vocabulary of ", out.model.config.vocab_size,
        ": they do not belong together (a model may pad its embedding by at most 1/16 "
        "beyond the tokenizer's pieces, never have fewer rows)"));
  }
  out.model_path = model_path;
  out.tokenizer_path = tok_path;
  return out;
}

}  // namespace impq::model
