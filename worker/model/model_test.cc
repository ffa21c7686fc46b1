#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/file_util.h"
#include "common/test_fifo.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/impq_checkpoint.h"
#include "worker/model/loader.h"
#include "worker/model/model_reader.h"

namespace impq::model {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  std::string path = TempFilePath(name);
  EXPECT_TRUE(WriteFileAtomically(path, bytes).ok());
  return path;
}

std::string SharedModelBytes() {
  auto s = ReadFileToString(SharedDataPath("stories260K.bin"));
  EXPECT_TRUE(s.ok()) << s.status() << " (is ../shared/data present?)";
  return s.ok() ? *s : std::string();
}

TEST(Llama2cReaderTest, LoadsSharedStories260K) {
  auto m = LoadModel(SharedDataPath("stories260K.bin"));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(m->output.data(), m->embedding.data());
  // 45,440 parameters per layer minus the two norms (128) are linear weights.
  EXPECT_EQ(m->LinearParameterCount(), 5 * (45440 - 128));
  EXPECT_EQ(m->layers[2][LinearKind::kK].shape(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(m->layers[4][LinearKind::kDown].shape(), (std::vector<int64_t>{64, 172}));
  // The first embedding value, read straight from the file after the 28-byte header.
  std::string bytes = SharedModelBytes();
  float first;
  std::memcpy(&first, bytes.data() + 28, 4);
  EXPECT_EQ(m->embedding.data()[0], first);
  // The final norm sits right after the 5 layers' arrays (45,440 floats per layer).
  const size_t norm_offset = 28 + 4 * (32768 + 5 * 45440);
  std::memcpy(&first, bytes.data() + norm_offset, 4);
  EXPECT_EQ(m->final_norm.data()[0], first);
}

TEST(Llama2cReaderTest, VersionOneFormatLoadsTheSameWeights) {
  auto v0 = LoadModel(SharedDataPath("stories260K.bin"));
  ASSERT_TRUE(v0.ok()) << v0.status();
  // Re-export as llama2.c version 1 (export.py --version 1 layout).
  std::string out(256, '\0');
  const uint32_t magic = 0x616b3432;
  const int32_t version = 1;
  const auto& c = v0->config;
  const int32_t header[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len};
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &version, 4);
  std::memcpy(out.data() + 8, header, sizeof header);
  out[8 + sizeof header] = 1;  // shared classifier
  auto put = [&](const Tensor& t) {
    out.append(reinterpret_cast<const char*>(t.data()), t.numel() * sizeof(float));
  };
  for (const auto& l : v0->layers) put(l.attn_norm);
  for (const auto& l : v0->layers) put(l.ffn_norm);
  put(v0->final_norm);
  put(v0->embedding);
  for (LinearKind k : {LinearKind::kQ, LinearKind::kK, LinearKind::kV, LinearKind::kO,
                       LinearKind::kGate, LinearKind::kDown, LinearKind::kUp}) {
    for (const auto& l : v0->layers) put(l[k]);
  }
  std::string path = WriteTemp("v1.bin", out);
  auto v1 = LoadModel(path);
  ASSERT_TRUE(v1.ok()) << v1.status();
  for (int l = 0; l < c.n_layers; ++l) {
    for (int k = 0; k < kNumLinear; ++k) {
      ASSERT_EQ(0, std::memcmp(v0->layers[l].linear[k].data(), v1->layers[l].linear[k].data(),
                               v0->layers[l].linear[k].numel() * sizeof(float)))
          << "layer " << l << " " << LinearKindName(static_cast<LinearKind>(k));
    }
  }
  ::unlink(path.c_str());
}

TEST(Llama2cReaderTest, MissingFileIsNotFound) {
  auto m = LoadModel("/nonexistent/stories.bin");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("/nonexistent/stories.bin"));
}

TEST(Llama2cReaderTest, TruncatedCheckpointNamesFileAndSizes) {
  std::string bytes = SharedModelBytes();
  std::string path = WriteTemp("truncated.bin", bytes.substr(0, bytes.size() - 1000));
  auto m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  std::string msg(m.status().message());
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("truncated checkpoint"));
  EXPECT_THAT(msg, HasSubstr("implies 1056540 bytes, the file has 1055540"));
  ::unlink(path.c_str());
}

TEST(Llama2cReaderTest, TruncatedHeader) {
  std::string path = WriteTemp("header.bin", SharedModelBytes().substr(0, 10));
  auto m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("truncated header"));
  ::unlink(path.c_str());
}

TEST(Llama2cReaderTest, HeaderThatDisagreesWithFileSize) {
  std::string bytes = SharedModelBytes();
  int32_t layers = 6;  // the header claims one layer more than the file holds
  std::memcpy(bytes.data() + 8, &layers, 4);
  std::string path = WriteTemp("layers.bin", bytes);
  auto m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("layers=6"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("the file has 1056540"));
  ::unlink(path.c_str());

  bytes = SharedModelBytes() + std::string(8, '\0');
  path = WriteTemp("trailing.bin", bytes);
  m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("trailing bytes"));
  ::unlink(path.c_str());
}

// stories260K.bin (version 0): a 28-byte header, then float arrays: the embedding [512, 64],
// attention_norm [5, 64], wq [5, 64, 64], ...
constexpr size_t kEmbeddingAt = 28;
constexpr size_t kWqAt = 28 + 4 * (512 * 64 + 5 * 64);

std::string LoadError(const std::string& path) {
  auto m = LoadModel(path);
  return m.ok() ? "OK" : std::string(m.status().message());
}

TEST(Llama2cReaderTest, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const std::string good = SharedModelBytes();
  struct Case {
    size_t at;
    float value;
    std::vector<std::string> want;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const Case& c :
       {Case{kWqAt + 4 * (2 * 64 * 64 + 64 + 5), nan,
             {"layers.2.attn_q (wq[2])", "1 non-finite value", "nan", "at [1, 5]"}},
        Case{kEmbeddingAt + 4 * 70, -inf, {"token_embedding (token_embedding_table)", "-inf",
                                           "at [1, 6]"}}}) {
    std::string bytes = good;
    std::memcpy(bytes.data() + c.at, &c.value, 4);
    const std::string path = WriteTemp("nan.bin", bytes);
    const std::string msg = LoadError(path);
    EXPECT_THAT(msg, HasSubstr(path));
    for (const std::string& w : c.want) EXPECT_THAT(msg, HasSubstr(w));
    ::unlink(path.c_str());
  }
}

TEST(Llama2cReaderTest, HeaderBombsAreRefusedBeforeAllocating) {
  // Header fields (int32 at byte 4·i): dim, hidden_dim, n_layers, n_heads, n_kv_heads,
  // vocab_size, seq_len. Each gets an absurd or wrong value; none may allocate from it.
  struct Case {
    int field;
    int32_t value;
    std::vector<std::string> want;
  };
  for (const Case& c : {
           Case{2, 1 << 24, {"n_layers = 16777216", "holds the weights of 5 layers",
                             "claims more layers"}},
           Case{2, 4, {"n_layers = 4", "holds the weights of 5 layers", "claims fewer layers",
                       "trailing bytes"}},
           Case{2, (1 << 24) + 1, {"n_layers = 16777217", "out of range"}},
           Case{0, 1 << 24, {"dim=16777216", "implies", "the file has 1056540"}},
           Case{1, 1 << 24, {"hidden=16777216", "implies", "the file has 1056540"}},
           Case{5, 1 << 24, {"vocab=16777216", "implies", "the file has 1056540"}},
           Case{6, 1 << 24, {"seq_len=16777216", "implies", "the file has 1056540"}},
           Case{3, 1 << 23, {"not a multiple of n_heads 8388608"}},
       }) {
    std::string bytes = SharedModelBytes();
    std::memcpy(bytes.data() + 4 * c.field, &c.value, 4);
    const std::string path = WriteTemp("bomb.bin", bytes);
    const std::string msg = LoadError(path);
    EXPECT_THAT(msg, HasSubstr(path)) << c.field;
    for (const std::string& w : c.want) EXPECT_THAT(msg, HasSubstr(w)) << c.field;
    ::unlink(path.c_str());
  }
}

// A FIFO, a directory or a device as a model or tokenizer path is refused at once, never
// opened for a blocking read, and the message names the path and what it is.
TEST(ModelPathTest, FifoDirectoryAndDeviceAreRefusedWithoutBlocking) {
  namespace fs = std::filesystem;
  const std::string dir = TempFilePath("paths");
  fs::remove_all(dir);
  fs::create_directories(dir + "/empty_dir");
  fs::create_directories(dir + "/hf");
  for (const std::string name :
       {"model.bin", "model.gguf", "model", "tok.bin", "tok.model", "tok.json", "tok.gguf",
        "hf/config.json", "hf/model.safetensors"}) {
    ScopedFifo fifo(dir + "/" + name);
    ASSERT_TRUE(fifo.made()) << name;
    const bool tokenizer = name.rfind("tok", 0) == 0;
    if (name == "hf/config.json") {  // a FIFO of a config next to real weights
      fs::copy_file(SharedDataPath("stories260K-hf/model.safetensors"),
                    dir + "/hf/model.safetensors", fs::copy_options::overwrite_existing);
    }
    if (name == "hf/model.safetensors") {  // a real config.json next to a FIFO of weights
      std::ofstream(dir + "/hf/config.json")
          << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                 "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8,
                 "num_key_value_heads": 4, "vocab_size": 512})";
    }
    const absl::Status s = tokenizer             ? LoadTokenizer(fifo.path()).status()
                           : name.rfind("hf/", 0) == 0 ? LoadModel(dir + "/hf").status()
                                                       : LoadModel(fifo.path()).status();
    EXPECT_FALSE(fifo.watchdog_fired()) << name << ": blocked opening the FIFO";
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(fifo.path() + ": not a regular file: a FIFO"))
        << name;
    fs::remove(dir + "/hf/config.json");
  }
  // Without a tokenizer given, the model's own error comes first (not "no tokenizer found").
  {
    ScopedFifo fifo(dir + "/m.gguf");
    auto lm = LoadModelAndTokenizer(fifo.path());
    EXPECT_FALSE(fifo.watchdog_fired());
    EXPECT_THAT(std::string(lm.status().message()),
                HasSubstr(fifo.path() + ": not a regular file: a FIFO"));
  }
  // A tokenizer given next to a model is checked the same way.
  {
    ScopedFifo fifo(dir + "/hf/tokenizer.model");
    auto lm = LoadModelAndTokenizer(SharedDataPath("stories260K-hf/model.safetensors"),
                                    fifo.path());
    EXPECT_FALSE(fifo.watchdog_fired());
    EXPECT_THAT(std::string(lm.status().message()), HasSubstr("not a regular file: a FIFO"));
  }
  EXPECT_THAT(LoadError(dir + "/empty_dir"),
              AllOf(HasSubstr(dir + "/empty_dir"), HasSubstr("not a model directory")));
  for (const std::string tok : {"/tok.bin", "/tok.json", "/tok.model"}) {
    fs::create_directories(dir + "/d" + tok);
    EXPECT_THAT(std::string(LoadTokenizer(dir + "/d" + tok).status().message()),
                HasSubstr("not a regular file: a directory"))
        << tok;
  }
  EXPECT_THAT(LoadError("/dev/zero"), HasSubstr("/dev/zero: not a regular file: a character device"));
  EXPECT_THAT(std::string(LoadTokenizer("/dev/zero").status().message()),
              HasSubstr("/dev/zero: not a regular file: a character device"));
  fs::remove_all(dir);
}

TEST(Llama2cReaderTest, InconsistentHeads) {
  std::string bytes = SharedModelBytes();
  int32_t heads = 6;  // 64 is not a multiple of 6
  std::memcpy(bytes.data() + 12, &heads, 4);
  std::string path = WriteTemp("heads.bin", bytes);
  auto m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("not a multiple of n_heads 6"));
  ::unlink(path.c_str());
}

TEST(Llama2cReaderTest, UnrecognisedFormat) {
  std::string path = WriteTemp("garbage.txt", "hello, not a model");
  auto m = LoadModel(path);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("unrecognised model format"));
  ::unlink(path.c_str());
}

TEST(LoaderTest, TokenizerVocabularyMismatchNamesBothFiles) {
  // A valid tokenizer with 300 pieces: the model has 512.
  std::string tok;
  int32_t max_len = 8;
  tok.append(reinterpret_cast<const char*>(&max_len), 4);
  for (int i = 0; i < 300; ++i) {
    float score = 0;
    std::string piece = "p" + std::to_string(i);
    int32_t len = static_cast<int32_t>(piece.size());
    tok.append(reinterpret_cast<const char*>(&score), 4);
    tok.append(reinterpret_cast<const char*>(&len), 4);
    tok.append(piece);
  }
  std::string path = WriteTemp("tok300.bin", tok);
  auto lm = LoadModelAndTokenizer(SharedDataPath("stories260K.bin"), path);
  ASSERT_FALSE(lm.ok());
  std::string msg(lm.status().message());
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("stories260K.bin"));
  EXPECT_THAT(msg, HasSubstr("300 pieces"));
  EXPECT_THAT(msg, HasSubstr("512"));
  ::unlink(path.c_str());
}

// impq checkpoints spell the whole ModelConfig in config.json; absurd sizes are refused before
// narrowing and before anything is allocated (AssembleModel then checks the layer count and
// every shape against model.safetensors, as for the other formats).
TEST(ImpqCheckpointTest, ModelConfigBombsAreRefused) {
  auto stories = LoadModel(SharedDataPath("stories260K.bin"));
  ASSERT_TRUE(stories.ok()) << stories.status();
  const ModelConfig c = stories->config;
  auto error = [&](const char* field, int64_t value) {
    nlohmann::json j = ModelConfigToJson(c);
    j[field] = value;
    auto r = ModelConfigFromJson(j, "ckpt/config.json");
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  EXPECT_EQ(error("seq_len", 1 << 24), "OK");
  EXPECT_THAT(error("n_layers", int64_t{1} << 40),
              HasSubstr("ckpt/config.json: model_config.n_layers = 1099511627776 is out of range"));
  EXPECT_THAT(error("n_layers", (1 << 24) + 1),
              HasSubstr("ckpt/config.json: n_layers must be in [1, 16777216], got 16777217"));
  EXPECT_THAT(error("vocab_size", -3), HasSubstr("vocab_size must be in [1, 16777216], got -3"));
  EXPECT_THAT(error("head_dim", 1 << 22),
              HasSubstr("q_dim (n_heads * head_dim) must be in [1, 16777216], got 33554432"));
}

TEST(ModelTest, RandomModelIsValidAndDeterministic) {
  ModelConfig c;
  c.dim = 96;
  c.hidden_dim = 200;
  c.n_layers = 3;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.seq_len = 64;
  Model a = MakeRandomModel(c, 5), b = MakeRandomModel(c, 5);
  ASSERT_TRUE(a.Validate().ok()) << a.Validate();
  EXPECT_EQ(0, std::memcmp(a.layers[1][LinearKind::kUp].data(), b.layers[1][LinearKind::kUp].data(),
                           200 * 96 * sizeof(float)));
  c.n_kv_heads = 4;  // 6 heads do not group into 4
  EXPECT_THAT(std::string(c.Validate().message()), HasSubstr("multiple of n_kv_heads"));
}

}  // namespace
}  // namespace impq::model
