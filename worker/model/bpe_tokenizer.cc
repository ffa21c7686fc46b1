#include "worker/model/bpe_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/pretokenize.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;

constexpr char kSpaceMark[] = "\xe2\x96\x81";  // ▁ U+2581

std::string Utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    s.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
  return s;
}

// Length of the UTF-8 character at s[i], or 0 when it is not a valid one.
size_t Utf8Len(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return len;
}

std::string PairKey(const std::string& a, const std::string& b) { return a + '\xff' + b; }

// The pre-tokenizer regexes impq implements (pretokenize.h), by their digit rule.
constexpr char kLlama3Pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr char kQwenPattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
}

}  // namespace

const std::array<std::string, 256>& BpeTokenizer::ByteToUnicode() {
  static const std::array<std::string, 256> kMap = [] {
    std::array<std::string, 256> m;
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      m[b] = Utf8(printable ? static_cast<uint32_t>(b) : 256 + extra++);
    }
    return m;
  }();
  return kMap;
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromSpec(Spec spec,
                                                                     const std::string& source) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer(std::move(spec)));
  const Spec& s = t->spec_;
  const int n = static_cast<int>(s.pieces.size());
  if (n == 0) return absl::InvalidArgumentError(absl::StrCat(source, ": empty vocabulary"));
  for (int id = 0; id < n; ++id) {
    if (s.pieces[id].empty()) continue;
    if (!t->ids_.emplace(s.pieces[id], id).second) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": piece \"", s.pieces[id],
                                                     "\" appears twice (ids ",
                                                     t->ids_[s.pieces[id]], " and ", id, ")"));
    }
  }
  for (size_t r = 0; r < s.merges.size(); ++r) {
    t->ranks_.emplace(PairKey(s.merges[r].first, s.merges[r].second), static_cast<int>(r));
  }
  t->is_added_.assign(n, false);
  for (int id : s.added_ids) {
    if (id < 0 || id >= n || s.pieces[id].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": added token id ", id,
                                                     " is outside the vocabulary of ", n));
    }
    t->is_added_[id] = true;
    t->added_by_length_.push_back(s.pieces[id]);
  }
  std::sort(t->added_by_length_.begin(), t->added_by_length_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (auto [what, id] : {std::pair{"bos", s.bos_id}, {"eos", s.eos_id}, {"unk", s.unk_id}}) {
    if (id < -1 || id >= n) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", what, " id ", id,
                                                     " is outside the vocabulary of ", n));
    }
  }
  const auto& b2u = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    t->unicode_to_byte_[b2u[b]] = static_cast<uint8_t>(b);
    auto it = t->ids_.find(absl::StrFormat("<0x%02X>", b));
    t->byte_piece_ids_[b] = it == t->ids_.end() ? -1 : it->second;
  }
  return t;
}

void BpeTokenizer::EncodeWord(std::vector<std::string> sym, std::vector<int>& out) const {
  const size_t n = sym.size();
  if (n == 0) return;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  std::vector<uint32_t> version(n, 0);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
  }
  struct Cand {
    int rank, left, right;
    uint32_t vl, vr;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int l) {
    if (l < 0 || next[l] < 0) return;
    const int r = next[l];
    auto it = ranks_.find(PairKey(sym[l], sym[r]));
    if (it != ranks_.end()) heap.push({it->second, l, r, version[l], version[r]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        version[c.left] != c.vl || version[c.right] != c.vr) {
      continue;  // stale
    }
    sym[c.left] += sym[c.right];
    ++version[c.left];
    alive[c.right] = false;
    next[c.left] = next[c.right];
    if (next[c.left] >= 0) prev[next[c.left]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  for (int i = 0; i >= 0; i = next[i]) {
    auto it = ids_.find(sym[i]);
    if (it != ids_.end()) {
      out.push_back(it->second);
    } else if (spec_.mode == Mode::kSentencePiece && spec_.byte_fallback &&
               std::all_of(sym[i].begin(), sym[i].end(), [&](char ch) {
                 return byte_piece_ids_[static_cast<uint8_t>(ch)] >= 0;
               })) {
      for (char ch : sym[i]) out.push_back(byte_piece_ids_[static_cast<uint8_t>(ch)]);
    } else if (spec_.unk_id >= 0) {
      out.push_back(spec_.unk_id);
    }
  }
}

void BpeTokenizer::EncodeText(std::string_view text, std::vector<int>& out) const {
  if (text.empty()) return;
  if (spec_.mode == Mode::kByteLevel) {
    const auto& b2u = ByteToUnicode();
    for (std::string_view piece : SplitPretokens(text, spec_.max_digits)) {
      std::vector<std::string> sym;
      std::string whole;
      for (char ch : piece) {
        sym.push_back(b2u[static_cast<uint8_t>(ch)]);
        whole += sym.back();
      }
      // ignore_merges (Llama-3): a piece that is itself in the vocabulary is one token.
      if (auto it = ids_.find(whole); it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      EncodeWord(std::move(sym), out);
    }
    return;
  }
  // kSentencePiece: one word of code points, spaces as ▁; a code point that is not a piece
  // (or an invalid byte) starts as its bytes, which EncodeWord maps to <0xHH>.
  std::vector<std::string> sym;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == ' ') {
      sym.emplace_back(kSpaceMark);
      ++i;
      continue;
    }
    const size_t len = Utf8Len(text, i);
    const std::string ch(text.substr(i, len == 0 ? 1 : len));
    if (len == 0 || !ids_.count(ch)) {
      for (char b : ch) sym.emplace_back(1, b);
    } else {
      sym.push_back(ch);
    }
    i += ch.size();
  }
  EncodeWord(std::move(sym), out);
}

std::vector<int> BpeTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int> out;
  if (add_bos && spec_.bos_id >= 0) out.push_back(spec_.bos_id);
  std::string prefixed;
  if (spec_.mode == Mode::kSentencePiece && spec_.prepend_space && !text.empty()) {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  // Added tokens first: the text between them goes through the model.
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const std::string* hit = nullptr;
    for (const std::string& a : added_by_length_) {
      if (text.compare(i, a.size(), a) == 0) {
        hit = &a;
        break;
      }
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    EncodeText(text.substr(start, i - start), out);
    out.push_back(ids_.at(*hit));
    i += hit->size();
    start = i;
  }
  EncodeText(text.substr(start), out);
  return out;
}

std::string BpeTokenizer::Decode(const std::vector<int>& ids) const {
  std::string out;
  for (int id : ids) {
    if (id < 0 || id >= vocab_size() || id == spec_.bos_id || id == spec_.eos_id) continue;
    const std::string& p = spec_.pieces[id];
    if (is_added_[id]) {
      out += p;
    } else if (spec_.mode == Mode::kByteLevel) {
      for (size_t i = 0; i < p.size();) {
        const size_t len = std::max<size_t>(1, Utf8Len(p, i));
        auto it = unicode_to_byte_.find(p.substr(i, len));
        if (it != unicode_to_byte_.end()) out.push_back(static_cast<char>(it->second));
        i += len;
      }
    } else if (p.size() == 6 && p.rfind("<0x", 0) == 0 && p[5] == '>') {
      out.push_back(static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
    } else {
      for (size_t i = 0; i < p.size();) {
        if (p.compare(i, 3, kSpaceMark) == 0) {
          out.push_back(' ');
          i += 3;
        } else {
          out.push_back(p[i++]);
        }
      }
    }
  }
  if (spec_.mode == Mode::kSentencePiece && spec_.prepend_space && !out.empty() && out[0] == ' ') {
    out.erase(0, 1);
  }
  return out;
}

std::string BpeTokenizer::Piece(int id) const {
  return id >= 0 && id < vocab_size() ? spec_.pieces[id] : "";
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::LoadTokenizerJson(
    const std::string& path) {
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJson(path));
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
  };
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    return bad("needs a \"model\" object");
  }
  const nlohmann::json& m = j["model"];
  const std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(path, ": model type \"", type,
                                                 "\" is not supported (only \"BPE\")"));
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) return bad("model.vocab must be an object");
  Spec s;
  auto put = [&](const std::string& piece, int64_t id) -> absl::Status {
    if (id < 0 || id >= (int64_t{1} << 24)) {
      return bad(absl::StrCat("id ", id, " of \"", piece, "\" is out of range"));
    }
    if (static_cast<int64_t>(s.pieces.size()) <= id) s.pieces.resize(id + 1);
    s.pieces[id] = piece;
    return absl::OkStatus();
  };
  for (const auto& [piece, id] : m["vocab"].items()) {
    if (!id.is_number_integer()) return bad(absl::StrCat("vocab entry \"", piece, "\" needs an integer id"));
    RETURN_IF_ERROR(put(piece, id.get<int64_t>()));
  }
  if (m.contains("merges") && !m["merges"].is_array()) return bad("model.merges must be an array");
  if (m.contains("merges")) {
    for (const auto& e : m["merges"]) {
      if (e.is_string()) {
        const std::string str = e.get<std::string>();
        const size_t sp = str.find(' ', 1);
        if (sp == std::string::npos) return bad(absl::StrCat("merge \"", str, "\" has no space"));
        s.merges.emplace_back(str.substr(0, sp), str.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        s.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        return bad(absl::StrCat("merge ", e.dump(), " must be \"a b\" or [\"a\", \"b\"]"));
      }
    }
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const auto& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string()) {
        return bad(absl::StrCat("added token ", a.dump(), " needs an id and a content"));
      }
      RETURN_IF_ERROR(put(a["content"].get<std::string>(), a["id"].get<int64_t>()));
      s.added_ids.push_back(a["id"].get<int>());
    }
  }
  // Which flavour: a ByteLevel pre-tokenizer or decoder means GPT-2 byte-level BPE.
  const std::string pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump() : "null";
  const std::string dec = j.contains("decoder") ? j["decoder"].dump() : "null";
  if (pre.find("\"ByteLevel\"") != std::string::npos || dec.find("\"ByteLevel\"") != std::string::npos) {
    s.mode = Mode::kByteLevel;
    const nlohmann::json& p = j["pre_tokenizer"];
    std::string pattern;
    if (p.is_object() && p.value("type", "") == "Sequence" && p.contains("pretokenizers")) {
      for (const auto& step : p["pretokenizers"]) {
        if (step.value("type", "") == "Split" && step.contains("pattern") &&
            step["pattern"].contains("Regex")) {
          pattern = step["pattern"]["Regex"].get<std::string>();
        }
      }
    }
    if (pattern == kLlama3Pattern) {
      s.max_digits = 3;
    } else if (pattern == kQwenPattern) {
      s.max_digits = 1;
    } else {
      return absl::UnimplementedError(absl::StrCat(
          path, ": byte-level pre-tokenizer ", pre.substr(0, 300),
          " is not supported (only the Llama-3 and Qwen split regexes followed by ByteLevel)"));
    }
  } else {
    s.mode = Mode::kSentencePiece;
    s.byte_fallback = m.value("byte_fallback", false);
    const std::string norm = j.contains("normalizer") ? j["normalizer"].dump() : "null";
    s.prepend_space = norm.find("\"Prepend\"") != std::string::npos;
    if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_null()) {
      // Gemma's and Llama-2's tokenizer.json have none; a Metaspace pre-tokenizer would split
      // differently.
      if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
        return absl::UnimplementedError(absl::StrCat(
            path, ": pre-tokenizer ", pre.substr(0, 200),
            " is not supported for SentencePiece-style BPE (only none)"));
      }
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    for (size_t id = 0; id < s.pieces.size(); ++id) {
      if (s.pieces[id] == m["unk_token"].get<std::string>()) s.unk_id = static_cast<int>(id);
    }
  }
  // BOS/EOS: tokenizer_config.json names them; config.json gives ids.
  const fs::path dir = fs::path(path).parent_path();
  auto id_of = [&](const std::string& piece) {
    for (size_t id = 0; id < s.pieces.size(); ++id) {
      if (s.pieces[id] == piece) return static_cast<int>(id);
    }
    return -1;
  };
  std::error_code ec;
  if (const std::string tc = (dir / "tokenizer_config.json").string(); fs::exists(tc, ec)) {
    ASSIGN_OR_RETURN(nlohmann::json cfg, ReadJson(tc));
    for (auto [key, slot] : {std::pair{"bos_token", &s.bos_id}, {"eos_token", &s.eos_id}}) {
      if (!cfg.is_object() || !cfg.contains(key)) continue;
      const nlohmann::json& v = cfg[key];
      const std::string name = v.is_string() ? v.get<std::string>()
                               : v.is_object() && v.contains("content") && v["content"].is_string()
                                   ? v["content"].get<std::string>()
                                   : "";
      if (!name.empty()) *slot = id_of(name);
    }
  }
  if (const std::string cc = (dir / "config.json").string(); fs::exists(cc, ec)) {
    ASSIGN_OR_RETURN(nlohmann::json cfg, ReadJson(cc));
    for (auto [key, slot] : {std::pair{"bos_token_id", &s.bos_id}, {"eos_token_id", &s.eos_id}}) {
      if (*slot >= 0 || !cfg.is_object() || !cfg.contains(key)) continue;
      const nlohmann::json& v = cfg[key];
      if (v.is_number_integer()) *slot = v.get<int>();
      else if (v.is_array() && !v.empty() && v[0].is_number_integer()) *slot = v[0].get<int>();
    }
  }
  return FromSpec(std::move(s), path);
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::FromGguf(const GgufFile& g) {
  const std::string& path = g.path();
  const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
  const GgufValue* merges = g.Find("tokenizer.ggml.merges");
  if (tokens == nullptr || tokens->strings.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer.ggml.tokens must be a "
                                                   "non-empty array of strings"));
  }
  if (merges == nullptr || merges->type != GgufType::kArray) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": a gpt2 vocabulary needs "
                                                   "tokenizer.ggml.merges"));
  }
  Spec s;
  s.mode = Mode::kByteLevel;
  s.pieces = tokens->strings;
  for (const std::string& m : merges->strings) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer.ggml.merges entry \"", m,
                                                     "\" has no space"));
    }
    s.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  if (const GgufValue* types = g.Find("tokenizer.ggml.token_type")) {
    for (size_t id = 0; id < types->numbers.size() && id < s.pieces.size(); ++id) {
      const int t = static_cast<int>(types->numbers[id]);
      if (t == 3 || t == 4) s.added_ids.push_back(static_cast<int>(id));  // control, user-defined
    }
  }
  std::string pre = "default";
  if (g.Find("tokenizer.ggml.pre") != nullptr) {
    ASSIGN_OR_RETURN(pre, g.GetString("tokenizer.ggml.pre"));
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe") {
    s.max_digits = 3;
  } else if (pre == "qwen2") {
    s.max_digits = 1;
  } else {
    return absl::UnimplementedError(absl::StrCat(
        path, ": tokenizer.ggml.pre \"", pre,
        "\" is not supported (only \"llama-bpe\", \"llama3\", \"smaug-bpe\", \"qwen2\")"));
  }
  for (auto [key, slot] : {std::pair{"tokenizer.ggml.bos_token_id", &s.bos_id},
                           {"tokenizer.ggml.eos_token_id", &s.eos_id}}) {
    if (g.Find(key) == nullptr) continue;
    ASSIGN_OR_RETURN(int64_t v, g.GetInt(key));
    *slot = static_cast<int>(v);
  }
  return FromSpec(std::move(s), path);
}

}  // namespace impq::model
