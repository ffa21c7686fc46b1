#include "worker/model/llama2c_tokenizer.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace impq::model {

absl::StatusOr<std::unique_ptr<Llama2cTokenizer>> Llama2cTokenizer::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  auto tok = std::unique_ptr<Llama2cTokenizer>(new Llama2cTokenizer());
  if (bytes.size() < 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": truncated tokenizer: ", bytes.size(), " bytes, the header needs 4"));
  }
  int32_t max_len;
  std::memcpy(&max_len, bytes.data(), 4);
  if (max_len <= 0 || max_len > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": max_token_length = ", max_len, " is out of range (1..4096); not a llama2.c tokenizer?"));
  }
  size_t off = 4;
  while (off < bytes.size()) {
    const size_t index = tok->vocab_.pieces.size();
    if (bytes.size() - off < 8) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": truncated tokenizer entry ", index,
                                                     " at byte ", off, ": needs 8 header bytes, ",
                                                     bytes.size() - off, " left"));
    }
    float score;
    int32_t len;
    std::memcpy(&score, bytes.data() + off, 4);
    std::memcpy(&len, bytes.data() + off + 4, 4);
    if (len < 0 || len > max_len || static_cast<size_t>(len) > bytes.size() - off - 8) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tokenizer entry ", index, " at byte ", off, " has length ", len,
          " (max_token_length ", max_len, ", ", bytes.size() - off - 8, " bytes left)"));
    }
    tok->vocab_.scores.push_back(score);
    tok->vocab_.pieces.emplace_back(bytes.data() + off + 8, static_cast<size_t>(len));
    off += 8 + static_cast<size_t>(len);
  }
  if (tok->vocab_.pieces.size() < 259) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tokenizer has ", tok->vocab_.pieces.size(),
                     " pieces; a llama2.c tokenizer has at least 259 (3 specials + 256 bytes)"));
  }
  for (size_t i = 0; i < tok->vocab_.pieces.size(); ++i) {
    tok->vocab_.mergeable.emplace(tok->vocab_.pieces[i], static_cast<int>(i));
  }
  return tok;
}

int Llama2cTokenizer::Lookup(std::string_view s) const {
  auto it = vocab_.mergeable.find(std::string(s));
  return it == vocab_.mergeable.end() ? -1 : it->second;
}

std::vector<int> Llama2cTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int> tok;
  tok.reserve(text.size() + 2);
  if (add_bos) tok.push_back(bos_id());
  if (!text.empty()) {
    int space = Lookup(" ");
    if (space >= 0) tok.push_back(space);
  }
  // One piece per UTF-8 code point (a lead byte and up to three continuation bytes), byte
  // fallback otherwise: the same grouping as run.c.
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i + 1;
    while (j < text.size() && (static_cast<uint8_t>(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
    int id = Lookup(text.substr(i, j - i));
    if (id >= 0) {
      tok.push_back(id);
    } else {
      for (size_t k = i; k < j; ++k) tok.push_back(static_cast<uint8_t>(text[k]) + 3);
    }
    i = j;
  }
  return MergeByScore(std::move(tok), vocab_);
}

std::string Llama2cTokenizer::Piece(int id) const {
  if (id < 0 || id >= vocab_size()) return absl::StrCat("<invalid ", id, ">");
  return vocab_.pieces[id];
}

std::string Llama2cTokenizer::Decode(const std::vector<int>& ids) const {
  std::string out;
  int prev = -1;
  for (int id : ids) {
    if (id == bos_id() || id == eos_id() || id < 0 || id >= vocab_size()) {
      prev = id;
      continue;
    }
    std::string_view piece = vocab_.pieces[id];
    // run.c: after BOS the dummy-prefix space is dropped.
    if ((prev == bos_id() || prev == -1) && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
    unsigned int byte;
    if (piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>' &&
        std::sscanf(std::string(piece).c_str(), "<0x%02X>", &byte) == 1) {
      out.push_back(static_cast<char>(byte));
    } else {
      out.append(piece);
    }
    prev = id;
  }
  return out;
}

}  // namespace impq::model
