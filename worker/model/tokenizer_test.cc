#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/llama2c_tokenizer.h"

namespace impq::model {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Llama2cTokenizer> LoadShared() {
  auto t = Llama2cTokenizer::Load(SharedDataPath("tok512.bin"));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

// run.c's encoder transcribed literally: O(n²) rescans, first (leftmost) best pair wins.
std::vector<int> RunCEncodeRef(const Llama2cTokenizer& tok, const std::string& text) {
  std::map<std::string, int> ids;
  for (int i = tok.vocab_size() - 1; i >= 0; --i) ids[tok.Piece(i)] = i;
  auto lookup = [&](const std::string& s) {
    auto it = ids.find(s);
    return it == ids.end() ? -1 : it->second;
  };
  std::vector<int> tokens = {1};
  if (!text.empty()) tokens.push_back(lookup(" "));
  std::string buf;
  for (size_t c = 0; c < text.size(); ++c) {
    if ((static_cast<uint8_t>(text[c]) & 0xC0) != 0x80) buf.clear();
    buf.push_back(text[c]);
    if (c + 1 < text.size() && (static_cast<uint8_t>(text[c + 1]) & 0xC0) == 0x80 && buf.size() < 4) continue;
    int id = lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (char b : buf) tokens.push_back(static_cast<uint8_t>(b) + 3);
    }
    buf.clear();
  }
  for (;;) {
    float best_score = -1e10f;
    int best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      int id = lookup(tok.Piece(tokens[i]) + tok.Piece(tokens[i + 1]));
      if (id != -1 && tok.Score(id) > best_score) {
        best_score = tok.Score(id);
        best_id = id;
        best_idx = static_cast<int>(i);
      }
    }
    if (best_idx == -1) break;
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + best_idx + 1);
  }
  return tokens;
}

std::vector<std::string> Paragraphs(const std::string& file, size_t max_count) {
  auto text = ReadFileToString(SharedDataPath(file));
  EXPECT_TRUE(text.ok()) << text.status();
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text->size() && out.size() < max_count) {
    // Paragraphs end at a blank line (LF or CRLF text); capped at 1500 bytes so that the
    // O(n²) reference stays fast.
    size_t end = std::min(text->find("\n\n", start), text->find("\r\n\r\n", start));
    if (end == std::string::npos) end = text->size();
    end = std::min(end, start + 1500);
    if (end > start) out.push_back(text->substr(start, end - start));
    start = end + 2;
  }
  return out;
}

TEST(Llama2cTokenizerTest, LoadsSharedTokenizer) {
  auto tok = LoadShared();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->Piece(1), "\n<s>\n");  // as SentencePiece exported it
  EXPECT_EQ(tok->Piece(3), "<0x00>");
  EXPECT_EQ(tok->Piece(258), "<0xFF>");
}

TEST(Llama2cTokenizerTest, MatchesRunCEncoderOnRealText) {
  auto tok = LoadShared();
  ASSERT_NE(tok, nullptr);
  int checked = 0;
  for (const char* file : {"tinystories_v2_valid_100.txt", "tinystories_valid_a.txt", "wikitext2_wiki.test.raw"}) {
    for (const std::string& p : Paragraphs(file, 30)) {
      ASSERT_EQ(tok->Encode(p, true), RunCEncodeRef(*tok, p)) << file << ": " << p.substr(0, 80);
      ++checked;
    }
  }
  EXPECT_GE(checked, 80);
  // Multi-byte code points and byte fallback (characters that are not pieces).
  for (std::string s : {"naïve café — ünïcödé ✓ 日本", "\xff\xfe broken utf8 \x80", "a", " ", ""}) {
    EXPECT_EQ(tok->Encode(s, true), RunCEncodeRef(*tok, s)) << s;
  }
}

TEST(Llama2cTokenizerTest, RoundTripsSharedText) {
  auto tok = LoadShared();
  ASSERT_NE(tok, nullptr);
  for (const char* file : {"tinystories_v2_valid_100.txt", "tinystories_valid_a.txt", "wikitext2_wiki.test.raw"}) {
    auto text = ReadFileToString(SharedDataPath(file));
    ASSERT_TRUE(text.ok()) << text.status();
    std::vector<int> ids = tok->Encode(*text, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_LT(ids.size(), text->size());  // merges happened
    EXPECT_EQ(tok->Decode(ids), *text) << file;
  }
}

TEST(Llama2cTokenizerTest, KnownEncoding) {
  auto tok = LoadShared();
  ASSERT_NE(tok, nullptr);
  std::vector<int> ids = tok->Encode("Once upon a time", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);
  std::string joined;
  for (size_t i = 1; i < ids.size(); ++i) joined += tok->Piece(ids[i]);
  EXPECT_EQ(joined, " Once upon a time");
  EXPECT_EQ(tok->Decode(ids), "Once upon a time");
}

std::string TokenizerFile(const std::vector<std::pair<float, std::string>>& pieces, int32_t max_len) {
  std::string out(reinterpret_cast<const char*>(&max_len), 4);
  for (const auto& [score, piece] : pieces) {
    int32_t len = static_cast<int32_t>(piece.size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out.append(piece);
  }
  return out;
}

TEST(Llama2cTokenizerTest, CorruptFilesGiveClearErrors) {
  auto shared = ReadFileToString(SharedDataPath("tok512.bin"));
  ASSERT_TRUE(shared.ok());
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {shared->substr(0, shared->size() - 3), "tokenizer entry 511 at byte"},
      {shared->substr(0, 2), "truncated tokenizer"},
      {TokenizerFile({{0.f, "abc"}}, -5), "max_token_length = -5"},
      {TokenizerFile({{0.f, "abcdefghij"}}, 4), "has length 10"},
      {TokenizerFile({{0.f, "a"}, {0.f, "b"}}, 4), "at least 259"},
  };
  for (const auto& c : cases) {
    std::string path = TempFilePath("tok.bin");
    ASSERT_TRUE(WriteFileAtomically(path, c.bytes).ok());
    auto t = Llama2cTokenizer::Load(path);
    ASSERT_FALSE(t.ok()) << c.expect;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.expect));
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(path));
    ::unlink(path.c_str());
  }
  EXPECT_EQ(Llama2cTokenizer::Load("/nonexistent/tok.bin").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace impq::model
