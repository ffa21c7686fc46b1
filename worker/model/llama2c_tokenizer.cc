#include "worker/model/llama2c_tokenizer.h"

#include <cstring>
#include <queue>

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
    const size_t index = tok->pieces_.size();
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
    tok->scores_.push_back(score);
    tok->pieces_.emplace_back(bytes.data() + off + 8, static_cast<size_t>(len));
    off += 8 + static_cast<size_t>(len);
  }
  if (tok->pieces_.size() < 259) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tokenizer has ", tok->pieces_.size(),
                     " pieces; a llama2.c tokenizer has at least 259 (3 specials + 256 bytes)"));
  }
  for (size_t i = 0; i < tok->pieces_.size(); ++i) tok->ids_.emplace(tok->pieces_[i], static_cast<int>(i));
  return tok;
}

int Llama2cTokenizer::Lookup(std::string_view s) const {
  auto it = ids_.find(std::string(s));
  return it == ids_.end() ? -1 : it->second;
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

  // Greedy merges in run.c's order: highest score first, leftmost on ties. Positions are
  // original indices, which stay ordered as nodes merge, so "leftmost" = smallest index.
  const int n = static_cast<int>(tok.size());
  std::vector<int> next(n), prev(n);
  std::vector<char> alive(n, 1);
  for (int k = 0; k < n; ++k) {
    next[k] = k + 1 < n ? k + 1 : -1;
    prev[k] = k - 1;
  }
  struct Cand {
    float score;
    int left, right, left_tok, right_tok, merged;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  std::string buf;
  auto push = [&](int left) {
    if (left < 0) return;
    int right = next[left];
    if (right < 0) return;
    buf.assign(pieces_[tok[left]]);
    buf.append(pieces_[tok[right]]);
    int id = Lookup(buf);
    // run.c starts from best_score = -1e10 and needs a strictly greater score.
    if (id >= 0 && scores_[id] > -1e10f) heap.push({scores_[id], left, right, tok[left], tok[right], id});
  };
  for (int k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        tok[c.left] != c.left_tok || tok[c.right] != c.right_tok) {
      continue;  // stale: one side merged since this pair was queued
    }
    tok[c.left] = c.merged;
    alive[c.right] = 0;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  std::vector<int> out;
  out.reserve(n);
  for (int k = 0; k < n; ++k) {
    if (alive[k]) out.push_back(tok[k]);
  }
  return out;
}

std::string Llama2cTokenizer::Piece(int id) const {
  if (id < 0 || id >= vocab_size()) return absl::StrCat("<invalid ", id, ">");
  return pieces_[id];
}

std::string Llama2cTokenizer::Decode(const std::vector<int>& ids) const {
  std::string out;
  int prev = -1;
  for (int id : ids) {
    if (id == bos_id() || id == eos_id() || id < 0 || id >= vocab_size()) {
      prev = id;
      continue;
    }
    std::string_view piece = pieces_[id];
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
