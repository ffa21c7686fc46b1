#include "worker/model/gguf_tokenizer.h"

#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace impq::model {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// "<0xHH>" -> HH, else -1.
int ByteOfPiece(const std::string& piece) {
  unsigned int byte;
  char tail;
  if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>' &&
      std::sscanf(piece.c_str(), "<0x%2X%c", &byte, &tail) == 2 && tail == '>') {
    return static_cast<int>(byte);
  }
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GgufTokenizer>> GgufTokenizer::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  return FromGguf(*gguf);
}

absl::StatusOr<std::unique_ptr<GgufTokenizer>> GgufTokenizer::FromGguf(const GgufFile& g) {
  const std::string& path = g.path();
  if (g.Find("tokenizer.ggml.tokens") == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": no embedded vocabulary (tokenizer.ggml."
                                                  "tokens is missing); pass a tokenizer file"));
  }
  ASSIGN_OR_RETURN(std::string model, g.GetString("tokenizer.ggml.model"));
  if (model != "llama") {
    return absl::UnimplementedError(absl::StrCat(path, ": tokenizer.ggml.model \"", model,
                                                 "\" is not supported yet (only \"llama\", "
                                                 "SentencePiece BPE)"));
  }
  ASSIGN_OR_RETURN(const GgufValue* tokens, g.GetArray("tokenizer.ggml.tokens"));
  if (tokens->elem_type != GgufType::kString || tokens->strings.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer.ggml.tokens must be a "
                                                         "non-empty array of strings"));
  }
  const size_t n = tokens->strings.size();
  if (n > (1u << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer.ggml.tokens has ", n,
                                                   " entries, more than 2^24"));
  }
  auto tok = std::unique_ptr<GgufTokenizer>(new GgufTokenizer());
  tok->vocab_.pieces = tokens->strings;
  tok->vocab_.scores.assign(n, 0.0f);
  tok->vocab_.min_score = std::numeric_limits<float>::lowest();
  tok->types_.assign(n, kNormal);
  auto numbers = [&](const char* key, std::vector<double>* out) -> absl::Status {
    if (g.Find(key) == nullptr) return absl::OkStatus();
    ASSIGN_OR_RETURN(const GgufValue* a, g.GetArray(key));
    if (a->numbers.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " has ", a->count,
                                                     " numeric entries, tokenizer.ggml.tokens ",
                                                     n));
    }
    *out = a->numbers;
    return absl::OkStatus();
  };
  std::vector<double> scores, types;
  RETURN_IF_ERROR(numbers("tokenizer.ggml.scores", &scores));
  RETURN_IF_ERROR(numbers("tokenizer.ggml.token_type", &types));
  for (size_t i = 0; i < scores.size(); ++i) tok->vocab_.scores[i] = static_cast<float>(scores[i]);
  for (size_t i = 0; i < types.size(); ++i) tok->types_[i] = static_cast<int>(types[i]);
  auto special = [&](const char* key, int def, int* out) -> absl::Status {
    if (g.Find(key) == nullptr) {
      *out = def;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(int64_t id, g.GetInt(key));
    if (id < 0 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " = ", id,
                                                     " is outside the vocabulary [0, ", n, ")"));
    }
    *out = static_cast<int>(id);
    return absl::OkStatus();
  };
  // SentencePiece's (and llama.cpp's) defaults for a "llama" vocabulary.
  RETURN_IF_ERROR(special("tokenizer.ggml.bos_token_id", 1, &tok->bos_id_));
  RETURN_IF_ERROR(special("tokenizer.ggml.eos_token_id", 2, &tok->eos_id_));
  RETURN_IF_ERROR(special("tokenizer.ggml.unknown_token_id", 0, &tok->unk_id_));
  if (g.Find("tokenizer.ggml.add_space_prefix") != nullptr) {
    ASSIGN_OR_RETURN(tok->add_space_prefix_, g.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  if (types.empty()) {  // no types stored: infer the special and byte pieces
    for (int id : {tok->bos_id_, tok->eos_id_}) tok->types_[id] = kControl;
    tok->types_[tok->unk_id_] = kUnknown;
    for (size_t i = 0; i < n; ++i) {
      if (ByteOfPiece(tok->vocab_.pieces[i]) >= 0) tok->types_[i] = kByte;
    }
  }
  tok->byte_ids_.fill(-1);
  for (size_t i = 0; i < n; ++i) {
    const int t = tok->types_[i];
    if (t == kByte) {
      const int b = ByteOfPiece(tok->vocab_.pieces[i]);
      if (b >= 0 && tok->byte_ids_[b] < 0) tok->byte_ids_[b] = static_cast<int>(i);
    } else if (t == kNormal || t == kUserDefined) {
      tok->vocab_.mergeable.emplace(tok->vocab_.pieces[i], static_cast<int>(i));
    }
  }
  return tok;
}

std::vector<int> GgufTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::string norm;
  norm.reserve(text.size() + 8);
  if (add_space_prefix_ && !text.empty()) norm.append(kSpace);
  for (char ch : text) {
    if (ch == ' ') {
      norm.append(kSpace);
    } else {
      norm.push_back(ch);
    }
  }
  std::vector<int> symbols;
  symbols.reserve(norm.size());
  size_t i = 0;
  while (i < norm.size()) {
    size_t j = i + 1;
    while (j < norm.size() && (static_cast<uint8_t>(norm[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    auto it = vocab_.mergeable.find(norm.substr(i, j - i));
    if (it != vocab_.mergeable.end()) {
      symbols.push_back(it->second);
    } else {
      for (size_t k = i; k < j; ++k) {
        const int id = byte_ids_[static_cast<uint8_t>(norm[k])];
        symbols.push_back(id >= 0 ? id : unk_id_);
        if (id < 0) break;  // one <unk> per code point without byte fallback
      }
    }
    i = j;
  }
  std::vector<int> out = MergeByScore(std::move(symbols), vocab_);
  if (add_bos) out.insert(out.begin(), bos_id_);
  return out;
}

std::string GgufTokenizer::Decode(const std::vector<int>& ids) const {
  std::string out;
  bool at_start = true;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    const int t = types_[id];
    if (t == kControl || t == kUnused) continue;
    if (t == kByte) {
      out.push_back(static_cast<char>(ByteOfPiece(vocab_.pieces[id])));
      at_start = false;
      continue;
    }
    std::string piece = vocab_.pieces[id];
    std::string text;
    for (size_t k = 0; k < piece.size();) {
      if (piece.compare(k, kSpace.size(), kSpace) == 0) {
        text.push_back(' ');
        k += kSpace.size();
      } else {
        text.push_back(piece[k++]);
      }
    }
    if (at_start && add_space_prefix_ && !text.empty() && text[0] == ' ') text.erase(0, 1);
    out.append(text);
    at_start = false;
  }
  return out;
}

std::string GgufTokenizer::Piece(int id) const {
  if (id < 0 || id >= vocab_size()) return absl::StrCat("<invalid ", id, ">");
  return vocab_.pieces[id];
}

}  // namespace impq::model
