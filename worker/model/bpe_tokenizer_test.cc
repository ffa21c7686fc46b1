// Merge-list BPE tokenizers (tokenizer.json byte-level and byte-fallback, GGUF gpt2) and the
// Llama-3 / Qwen pre-tokenizer split, on small hand-made vocabularies whose output is derived
// by hand in the comments.
#include <filesystem>

#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/bpe_tokenizer.h"
#include "worker/model/format_writers.h"
#include "worker/model/gguf_file.h"
#include "worker/model/loader.h"
#include "worker/model/pretokenize.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(std::string_view s, int digits = 3) {
  std::vector<std::string> out;
  std::string joined;
  for (std::string_view p : SplitPretokens(s, digits)) {
    out.emplace_back(p);
    joined += p;
  }
  EXPECT_EQ(joined, s);
  return out;
}

TEST(PretokenizeTest, Llama3SplitRules) {
  EXPECT_THAT(Split("Hello world"), ElementsAre("Hello", " world"));
  // Digits in groups of up to three (Llama-3), one by one (Qwen).
  EXPECT_THAT(Split("12345"), ElementsAre("123", "45"));
  EXPECT_THAT(Split("12345", 1), ElementsAre("1", "2", "3", "4", "5"));
  EXPECT_THAT(Split("$100"), ElementsAre("$", "100"));
  // Contractions, case-insensitive.
  EXPECT_THAT(Split("I'm can't WE'LL"), ElementsAre("I", "'m", " can", "'t", " WE", "'LL"));
  // \s+(?!\S) leaves the last space of a run to the next word.
  EXPECT_THAT(Split("a  b"), ElementsAre("a", " ", " b"));
  // \s*[\r\n]+ takes the run up to its last newline.
  EXPECT_THAT(Split("a   \n\n  b"), ElementsAre("a", "   \n\n", " ", " b"));
  // Punctuation takes trailing newlines; a trailing space run is one piece.
  EXPECT_THAT(Split("hi!!\n\nthere"), ElementsAre("hi", "!!\n\n", "there"));
  EXPECT_THAT(Split("end  "), ElementsAre("end", "  "));
  EXPECT_THAT(Split(" ?!x"), ElementsAre(" ?!", "x"));
  // Unicode letters and numbers.
  EXPECT_THAT(Split("héllo wörld 你好"), ElementsAre("héllo", " wörld", " 你好"));
  EXPECT_THAT(Split("x²³"), ElementsAre("x", "²³"));
  EXPECT_THAT(Split("a\u00a0b"), ElementsAre("a", "\u00a0b"));  // NBSP is \s, not \r\n
  // Invalid UTF-8 bytes are "other" characters.
  EXPECT_THAT(Split("\xff\xfe" "ab"), ElementsAre("\xff\xfe", "ab"));
  EXPECT_THAT(Split(""), ElementsAre());
}

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : path_(TempFilePath(name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& f) const { return path_ + "/" + f; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Byte-level vocabulary: ids 0..255 are the bytes (GPT-2 alphabet), then merges
// h+e=256 "he", l+l=257 "ll", he+ll=258 "hell", Ġ+w=259 "Ġw", 1+2=260 "12", and the added
// tokens <|begin_of_text|>=261, <|eot_id|>=262.
nlohmann::json ByteLevelJson(bool qwen) {
  const auto& b2u = BpeTokenizer::ByteToUnicode();
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[b2u[b]] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab[b2u[' '] + "w"] = 259;
  vocab["12"] = 260;
  const std::string pattern =
      std::string("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|") +
      (qwen ? "\\p{N}" : "\\p{N}{1,3}") +
      "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  return {
      {"model", {{"type", "BPE"}, {"vocab", vocab},
                 {"merges", {"h e", "l l", "he ll", b2u[' '] + " w", "1 2"}}}},
      {"added_tokens", {{{"id", 261}, {"content", "<|begin_of_text|>"}, {"special", true}},
                        {{"id", 262}, {"content", "<|eot_id|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"decoder", {{"type", "ByteLevel"}}}};
}

std::unique_ptr<Tokenizer> MustLoad(const std::string& path) {
  auto t = LoadTokenizer(path);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(BpeTokenizerTest, ByteLevelLlama3) {
  ScratchDir dir("bpe_bytelevel");
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer.json", ByteLevelJson(false).dump()).ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer_config.json",
                                  R"({"bos_token": "<|begin_of_text|>",
                                      "eos_token": {"content": "<|eot_id|>"}})").ok());
  auto t = MustLoad(dir / "tokenizer.json");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 263);
  EXPECT_EQ(t->bos_id(), 261);
  EXPECT_EQ(t->eos_id(), 262);
  // h e l l o: he (rank 0), ll (1), hell (2); o stays.
  EXPECT_THAT(t->Encode("hello", false), ElementsAre(258, 'o'));
  EXPECT_THAT(t->Encode("hello", true), ElementsAre(261, 258, 'o'));
  // " world" is one pre-token: Ġw, o, r, l, d.
  EXPECT_THAT(t->Encode(" world", false), ElementsAre(259, 'o', 'r', 'l', 'd'));
  // "123456" splits 123|456 before merging: 12 3 | 4 5 6.
  EXPECT_THAT(t->Encode("123456", false), ElementsAre(260, '3', '4', '5', '6'));
  // Equal ranks: the leftmost pair first: lll -> ll l.
  EXPECT_THAT(t->Encode("lll", false), ElementsAre(257, 'l'));
  // Added tokens are matched verbatim.
  EXPECT_THAT(t->Encode("<|begin_of_text|>hello<|eot_id|>", false),
              ElementsAre(261, 258, 'o', 262));
  // Bytes outside UTF-8 and multi-byte characters are their bytes.
  EXPECT_THAT(t->Encode("\xff" "é", false), ElementsAre(0xff, 0xc3, 0xa9));
  for (const std::string s : {"hello world", "  12345 \n\n x", "I'm, can't!\t\tok", "\xff\x80 é 日本",
                              "a\u00a0b  ", ""}) {
    EXPECT_EQ(t->Decode(t->Encode(s, true)), s) << s;
  }
}

TEST(BpeTokenizerTest, ByteLevelQwenSplitsEveryDigit) {
  ScratchDir dir("bpe_qwen");
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer.json", ByteLevelJson(true).dump()).ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "config.json", R"({"bos_token_id": 261, "eos_token_id": [262]})").ok());
  auto t = MustLoad(dir / "tokenizer.json");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 261);
  EXPECT_EQ(t->eos_id(), 262);
  EXPECT_THAT(t->Encode("123", false), ElementsAre('1', '2', '3'));  // no "12": split first
}

TEST(BpeTokenizerTest, UnsupportedPreTokenizerIsAnError) {
  ScratchDir dir("bpe_bad");
  nlohmann::json j = ByteLevelJson(false);
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"use_regex", true}};
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer.json", j.dump()).ok());
  auto t = LoadTokenizer(dir / "tokenizer.json");
  EXPECT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), ::testing::HasSubstr("not supported"));
}

// Gemma-style: <pad>=0 <eos>=1 <bos>=2 <unk>=3, <0x00>..<0xFF>=4..259, ▁=260 a=261 b=262
// ▁a=263 ab=264 ▁ab=265 é=266; merges ▁+a (0), a+b (1), ▁a+b (2); byte fallback.
TEST(BpeTokenizerTest, SentencePieceStyleWithByteFallback) {
  ScratchDir dir("bpe_gemma");
  nlohmann::json vocab = {{"<pad>", 0}, {"<eos>", 1}, {"<bos>", 2}, {"<unk>", 3}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 4 + b;
  }
  const std::string sp = "\xe2\x96\x81";
  vocab[sp] = 260;
  vocab["a"] = 261;
  vocab["b"] = 262;
  vocab[sp + "a"] = 263;
  vocab["ab"] = 264;
  vocab[sp + "ab"] = 265;
  vocab["é"] = 266;
  nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"byte_fallback", true}, {"unk_token", "<unk>"},
                 {"merges", nlohmann::json::array({nlohmann::json::array({sp, "a"}),
                                                   nlohmann::json::array({"a", "b"}),
                                                   nlohmann::json::array({sp + "a", "b"})})}}},
      {"added_tokens", {{{"id", 0}, {"content", "<pad>"}}, {{"id", 1}, {"content", "<eos>"}},
                        {{"id", 2}, {"content", "<bos>"}}}},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}},
      {"pre_tokenizer", nullptr},
      {"decoder", {{"type", "Sequence"}}}};
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer.json", j.dump()).ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "tokenizer_config.json",
                                  R"({"bos_token": "<bos>", "eos_token": "<eos>"})").ok());
  auto t = MustLoad(dir / "tokenizer.json");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 2);
  EXPECT_EQ(t->eos_id(), 1);
  // a b ▁ a b: ▁a (rank 0) first, then ab at 0 (rank 1), then ▁a+b (rank 2).
  EXPECT_THAT(t->Encode("ab ab", true), ElementsAre(2, 264, 265));
  // é is a piece; 日 (E6 97 A5) falls back to bytes.
  EXPECT_THAT(t->Encode("é日", false), ElementsAre(266, 4 + 0xe6, 4 + 0x97, 4 + 0xa5));
  EXPECT_THAT(t->Encode("\xff", false), ElementsAre(4 + 0xff));
  for (const std::string s : {"ab ab", "é日 a  b", "\xff\xfe x", "  "}) {
    EXPECT_EQ(t->Decode(t->Encode(s, true)), s) << s;
  }
}

TEST(BpeTokenizerTest, GgufGpt2Vocabulary) {
  ScratchDir dir("bpe_gguf");
  const auto& b2u = BpeTokenizer::ByteToUnicode();
  std::vector<std::string> tokens(b2u.begin(), b2u.end());
  tokens.push_back("12");
  tokens.push_back("<|endoftext|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  testing::GgufBuilder b;
  b.Str("general.architecture", "qwen3");
  b.Str("tokenizer.ggml.model", "gpt2");
  b.Str("tokenizer.ggml.pre", "llama-bpe");
  b.StrArray("tokenizer.ggml.tokens", tokens);
  b.StrArray("tokenizer.ggml.merges", {"1 2"});
  b.I32Array("tokenizer.ggml.token_type", types);
  b.U32("tokenizer.ggml.bos_token_id", 257);
  b.U32("tokenizer.ggml.eos_token_id", 257);
  ASSERT_TRUE(WriteFileAtomically(dir / "v.gguf", b.Build()).ok());
  auto t = MustLoad(dir / "v.gguf");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 258);
  EXPECT_THAT(t->Encode("1234<|endoftext|>", true), ElementsAre(257, 256, '3', '4', 257));
  EXPECT_EQ(t->Decode(t->Encode(" 12 x\xff", false)), " 12 x\xff");
}

TEST(BpeTokenizerTest, ModelDirectoryFindsTokenizerJson) {
  ScratchDir dir("bpe_modeldir");
  ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 263;
  c.seq_len = 32;
  ASSERT_TRUE(testing::WriteHfModel(MakeRandomModel(c, 1), dir / "m", "F32").ok());
  ASSERT_TRUE(WriteFileAtomically(dir / "m/tokenizer.json", ByteLevelJson(false).dump()).ok());
  auto found = FindTokenizerFor(dir / "m");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, dir / "m/tokenizer.json");
  auto lm = LoadModelAndTokenizer(dir / "m", "");
  ASSERT_TRUE(lm.ok()) << lm.status();
  EXPECT_THAT(lm->tokenizer->Encode("hello", false), ElementsAre(258, 'o'));
}

// Checkpoints pad the embedding beyond the tokenizer's pieces (Qwen-3: 151,669 pieces, 151,936
// rows); that pair belongs together, a much larger or a smaller embedding does not.
TEST(BpeTokenizerTest, PaddedEmbeddingIsAcceptedMismatchIsNot) {
  EXPECT_TRUE(VocabulariesMatch(151669, 151936));
  EXPECT_TRUE(VocabulariesMatch(512, 512));
  EXPECT_FALSE(VocabulariesMatch(513, 512));
  EXPECT_FALSE(VocabulariesMatch(512, 32000));
  ScratchDir dir("bpe_padded");
  ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.seq_len = 32;
  for (int vocab : {272, 4096, 256}) {
    c.vocab_size = vocab;
    const std::string m = dir / ("m" + std::to_string(vocab));
    ASSERT_TRUE(testing::WriteHfModel(MakeRandomModel(c, 1), m, "F32").ok());
    ASSERT_TRUE(WriteFileAtomically(m + "/tokenizer.json", ByteLevelJson(false).dump()).ok());
    auto lm = LoadModelAndTokenizer(m, "");
    if (vocab == 272) {
      ASSERT_TRUE(lm.ok()) << lm.status();
      EXPECT_EQ(lm->tokenizer->vocab_size(), 263);
      EXPECT_EQ(lm->model.config.vocab_size, 272);
    } else {
      EXPECT_EQ(lm.status().code(), absl::StatusCode::kInvalidArgument) << vocab;
      EXPECT_THAT(std::string(lm.status().message()),
                  HasSubstr("263 pieces but model " + m + " has a vocabulary of " +
                            std::to_string(vocab)));
    }
  }
}

}  // namespace
}  // namespace impq::model
