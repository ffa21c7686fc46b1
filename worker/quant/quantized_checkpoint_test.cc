// BuildQuantizedCheckpoint + ImpqCheckpointReader (through LoadModel): every architecture's
// tensors come back bit for bit; packed modules as QuantizedModel's dequantized weights,
// full-precision ones as the model's; corrupt checkpoints are errors naming the tensor.
#include "worker/quant/quantized_checkpoint.h"

#include <array>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/impq_checkpoint.h"
#include "worker/model/model_reader.h"
#include "worker/model/safetensors_file.h"
#include "worker/model/safetensors_writer.h"
#include "worker/quant/quantizer.h"

namespace impq::quant {
namespace {

namespace fs = std::filesystem;
using model::LinearKind;
using ::testing::HasSubstr;

model::ModelConfig Base(const std::string& arch) {
  model::ModelConfig c;
  c.arch = arch;
  c.dim = 48;
  c.hidden_dim = 100;  // not a multiple of the group size: ragged tail groups
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 70;
  c.seq_len = 96;
  c.norm_eps = 1e-6f;
  return c;
}

std::vector<model::ModelConfig> Configs() {
  model::ModelConfig llama = Base("llama");  // interleaved rope, tied
  llama.rope_scaling = {8.0f, 1.0f, 4.0f, 32};
  model::ModelConfig qwen = Base("qwen3");
  qwen.head_dim = 12;
  qwen.rope_style = model::RopeStyle::kHalf;
  qwen.rope_theta = 1000000.0f;
  qwen.qk_norm = true;
  qwen.tied_embeddings = false;
  model::ModelConfig gemma = Base("gemma2");
  gemma.rope_style = model::RopeStyle::kHalf;
  gemma.norm_weight_offset = 1.0f;
  gemma.post_norms = true;
  gemma.scale_embeddings = true;
  gemma.ffn_activation = model::FfnActivation::kGeluTanh;
  gemma.attn_logit_softcap = 50.0f;
  gemma.final_logit_softcap = 30.0f;
  gemma.sliding_window = 5;
  gemma.query_pre_attn_scalar = 20.0f;
  return {llama, qwen, gemma};
}

bool SameBits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string WriteFiles(const std::map<std::string, std::string>& files, const std::string& name) {
  const std::string dir = TempFilePath(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& [file, bytes] : files) {
    EXPECT_TRUE(WriteFileAtomically(dir + "/" + file, bytes).ok());
  }
  return dir;
}

// Builds every architecture's checkpoint with player p at bits_of(p) from a QuantizedModel
// prepared at `widths`, reloads it and compares every tensor bit for bit.
void ExpectEveryArchitectureReloadsBitForBit(std::span<const int> widths,
                                             int (*bits_of)(int player), const char* tag) {
  auto rtn = MakeQuantizer("rtn");
  ASSERT_TRUE(rtn.ok());
  QuantConfig qcfg;
  qcfg.group_size = 32;
  for (const model::ModelConfig& c : Configs()) {
    SCOPED_TRACE(c.arch);
    const model::Model m = model::MakeRandomModel(c, 7);
    auto qm = QuantizedModel::Build(m, **rtn, qcfg, PlayerGranularity::kModule, nullptr, nullptr,
                                    widths);
    ASSERT_TRUE(qm.ok()) << qm.status();
    std::vector<int> bits;
    for (int p = 0; p < (*qm)->num_players(); ++p) bits.push_back(bits_of(p));
    auto files = BuildQuantizedCheckpoint(**qm, bits, {{"method", "test"}});
    ASSERT_TRUE(files.ok()) << files.status();
    const std::string dir = WriteFiles(*files, absl::StrCat("ckpt_", tag, "_", c.arch));
    auto back = model::LoadModel(dir);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->config.ToString(), c.ToString());
    EXPECT_EQ(model::ModelConfigToJson(back->config), model::ModelConfigToJson(c));
    EXPECT_TRUE(SameBits(back->embedding.values(), m.embedding.values()));
    EXPECT_TRUE(SameBits(back->final_norm.values(), m.final_norm.values()));
    EXPECT_TRUE(SameBits(back->output.values(), m.output.values()));
    for (int l = 0; l < c.n_layers; ++l) {
      const auto& a = back->layers[l];
      const auto& b = m.layers[l];
      EXPECT_TRUE(SameBits(a.attn_norm.values(), b.attn_norm.values()));
      EXPECT_TRUE(SameBits(a.ffn_norm.values(), b.ffn_norm.values()));
      EXPECT_TRUE(SameBits(a.q_norm.values(), b.q_norm.values()));
      EXPECT_TRUE(SameBits(a.post_ffn_norm.values(), b.post_ffn_norm.values()));
      for (int k = 0; k < model::kNumLinear; ++k) {
        const auto kind = static_cast<LinearKind>(k);
        const int w = bits[l * model::kNumLinear + k];
        const std::span<const float> want =
            w <= 8 ? std::span<const float>((*qm)->Dequantized(l, kind, w)) : b[kind].values();
        EXPECT_TRUE(SameBits(a[kind].values(), want)) << "layer " << l << " kind " << k;
      }
    }
    fs::remove_all(dir);
  }
}

TEST(QuantizedCheckpointTest, EveryArchitectureReloadsBitForBit) {
  // 2, 4 and full precision, spread over the modules.
  ExpectEveryArchitectureReloadsBitForBit(
      QuantizedModel::kDefaultWidths, [](int p) { return p % 3 == 0 ? 2 : p % 3 == 1 ? 4 : 32; },
      "24");
}

// 3- and 8-bit modules (3-bit rows of 48 and 100 columns: codes straddle bytes, and 100 * 3
// bits end mid-byte) next to 2, 4 and full precision.
TEST(QuantizedCheckpointTest, ThreeAndEightBitModulesReloadBitForBit) {
  static constexpr int kWidths[] = {2, 3, 4, 8};
  ExpectEveryArchitectureReloadsBitForBit(
      kWidths, [](int p) { return std::array<int, 5>{3, 8, 2, 32, 4}[p % 5]; }, "2348");
}

TEST(QuantizedCheckpointTest, CorruptCheckpointsAreNamedErrors) {
  auto rtn = MakeQuantizer("rtn");
  ASSERT_TRUE(rtn.ok());
  const model::Model m = model::MakeRandomModel(Configs()[0], 3);
  QuantConfig qcfg;
  qcfg.group_size = 16;
  auto qm = QuantizedModel::Build(m, **rtn, qcfg, PlayerGranularity::kBlock, nullptr);
  ASSERT_TRUE(qm.ok());
  auto files = BuildQuantizedCheckpoint(**qm, std::vector<int>{2, 4}, {});
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_FALSE(BuildQuantizedCheckpoint(**qm, std::vector<int>{2}, {}).ok());
  // 3 bits: a width this model was not built with.
  auto not_built = BuildQuantizedCheckpoint(**qm, std::vector<int>{2, 3}, {});
  ASSERT_FALSE(not_built.ok());
  EXPECT_THAT(std::string(not_built.status().message()),
              HasSubstr("player 1 (block1) has width 3; expected one of the quantized model's "
                        "widths (2, 4)"));

  // The config says 4 bits where 2-bit codes are stored: the shape check names the tensor.
  auto wrong_width = *files;
  {
    auto j = nlohmann::json::parse(wrong_width["config.json"]);
    j["quantization_config"]["modules"]["model.layers.0.mlp.down_proj"] = 4;
    wrong_width["config.json"] = j.dump();
  }
  std::string dir = WriteFiles(wrong_width, "ckpt_wrong_width");
  auto r = model::LoadModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("model.layers.0.mlp.down_proj.qweight"));
  fs::remove_all(dir);

  // A scale that is not positive fails quant::ValidatePacked.
  model::SafetensorsWriter w;
  {
    const std::string src = WriteFiles(*files, "ckpt_src");
    auto st = model::SafetensorsFile::Open(src + "/model.safetensors");
    ASSERT_TRUE(st.ok());
    for (const auto& [name, e] : (*st)->entries()) {
      auto raw = (*st)->RawBytes(name);
      ASSERT_TRUE(raw.ok());
      std::string bytes(raw->begin(), raw->end());
      if (name == "model.layers.1.self_attn.q_proj.scales") {
        const float minus = -1.0f;
        std::memcpy(bytes.data(), &minus, sizeof minus);
      }
      ASSERT_TRUE(w.Add(name, e.dtype, e.shape, bytes).ok());
    }
    fs::remove_all(src);
  }
  auto bad_scale = *files;
  bad_scale["model.safetensors"] = w.Build();
  dir = WriteFiles(bad_scale, "ckpt_bad_scale");
  r = model::LoadModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("model.layers.1.self_attn.q_proj"));
  fs::remove_all(dir);

  // A width no packed format has.
  auto five = *files;
  {
    auto j = nlohmann::json::parse(five["config.json"]);
    j["quantization_config"]["modules"]["model.layers.1.mlp.up_proj"] = 5;
    five["config.json"] = j.dump();
  }
  dir = WriteFiles(five, "ckpt_five");
  r = model::LoadModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("modules.model.layers.1.mlp.up_proj is 5 (expected 2, 3, 4, 8"));
  fs::remove_all(dir);

  // 2-bit codes read as 3-bit ones: the shape check names the tensor and the width.
  auto three = *files;
  {
    auto j = nlohmann::json::parse(three["config.json"]);
    j["quantization_config"]["modules"]["model.layers.0.self_attn.q_proj"] = 3;
    three["config.json"] = j.dump();
  }
  dir = WriteFiles(three, "ckpt_three");
  r = model::LoadModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("model.layers.0.self_attn.q_proj.qweight is U8 of shape [48, 12], "
                        "expected U8 [48, 18] for 3-bit"));
  fs::remove_all(dir);

  // An unknown format version.
  auto future = *files;
  {
    auto j = nlohmann::json::parse(future["config.json"]);
    j["quantization_config"]["format_version"] = 99;
    future["config.json"] = j.dump();
  }
  dir = WriteFiles(future, "ckpt_future");
  r = model::LoadModel(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("format_version is 99"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace impq::quant
