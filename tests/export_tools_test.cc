// `impq export` replayed through each target tool's own rules: the exported file is read and
// matched as the tool reads and matches it (the rules are written out below from the tools'
// source, cited at each replay), against every module or tensor name of 32-layer Llama-3,
// Qwen-3 and Gemma-2 models (generated from each architecture's tables in transformers and
// llama.cpp, not from impq's), and every linear module must end up with exactly the bits of
// the allocation and every other module untouched. The run files are written by hand (the
// exports only read the architecture, sizes and bits); `impq export` is the real binary.
//
// None of the tools is installed here: what runs is this replay, plus the shipped HQQ loader's
// own matching function under python3.
#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shell.h"

namespace impq {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using nlohmann::ordered_json;

constexpr int kLayers = 32;
constexpr int kGroup = 64;

tests::ShellResult RunImpq(const std::string& args) {
  return tests::Shell(std::string(IMPQ_BINARY) + " " + args);
}

// --- The three architectures, as the tools name their parts ------------------------------

// Sizes of the 8B/9B-class releases at 32 layers.
struct Arch {
  std::string impq_name;  // the first word of impq's model.config
  int dim, hidden, heads, kv_heads, head_dim;
  bool llama3_rope;  // Llama-3: rope_freqs.weight in GGUF
  bool qk_norm;      // Qwen-3: per-head q/k norms
  bool post_norms;   // Gemma-2: pre/post feed-forward norms
  bool tied;         // no output.weight in GGUF (Gemma-2 ties the head to the embedding)
  std::string Config() const {
    return absl::StrCat(impq_name, " dim=", dim, " hidden=", hidden, " layers=", kLayers,
                        " heads=", heads, " kv_heads=", kv_heads, " head_dim=", head_dim);
  }
};
const Arch kLlama3{"llama", 4096, 14336, 32, 8, 128, true, false, false, false};
const Arch kQwen3{"qwen3", 4096, 12288, 32, 8, 128, false, true, false, false};
const Arch kGemma2{"gemma2", 3584, 14336, 16, 8, 256, false, false, true, true};
const Arch* const kArchs[] = {&kLlama3, &kQwen3, &kGemma2};

// The seven linears in impq's player order (attn_q, attn_k, attn_v, attn_o, ffn_gate, ffn_up,
// ffn_down): transformers' attribute paths (models/{llama,qwen3,gemma2}/modeling_*.py) and
// llama.cpp's GGUF names (src/llama-arch.cpp, LLM_TENSOR_NAMES).
const char* const kHfLinear[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                  "mlp.down_proj"};
const char* const kGgufLinear[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                    "ffn_gate", "ffn_up", "ffn_down"};

int64_t InFeatures(const Arch& a, int kind) {
  return kind == 3 ? a.heads * a.head_dim : kind == 6 ? a.hidden : a.dim;
}

struct HfModule {
  std::string name;
  bool linear = false;
  int player = -1;  // for the seven linears of each layer
};

// model.named_modules() of the *ForCausalLM class, in order.
std::vector<HfModule> HfModules(const Arch& a) {
  std::vector<HfModule> out = {{""}, {"model"}, {"model.embed_tokens"}, {"model.layers"}};
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    out.push_back({p.substr(0, p.size() - 1)});
    out.push_back({p + "self_attn"});
    for (int k = 0; k < 4; ++k) out.push_back({p + kHfLinear[k], true, l * 7 + k});
    if (a.qk_norm) {
      out.push_back({p + "self_attn.q_norm"});
      out.push_back({p + "self_attn.k_norm"});
    }
    out.push_back({p + "mlp"});
    for (int k = 4; k < 7; ++k) out.push_back({p + kHfLinear[k], true, l * 7 + k});
    out.push_back({p + "mlp.act_fn"});
    out.push_back({p + "input_layernorm"});
    out.push_back({p + "post_attention_layernorm"});
    if (a.post_norms) {
      out.push_back({p + "pre_feedforward_layernorm"});
      out.push_back({p + "post_feedforward_layernorm"});
    }
  }
  out.push_back({"model.norm"});
  out.push_back({"model.rotary_emb"});
  out.push_back({"lm_head", true});
  return out;
}

struct GgufTensor {
  std::string name;
  int n_dims = 1;
  int64_t ne0 = 0;  // row length
  int player = -1;
};

// The tensors of the GGUF file convert_hf_to_gguf.py writes.
std::vector<GgufTensor> GgufTensors(const Arch& a) {
  std::vector<GgufTensor> out = {{"token_embd.weight", 2, a.dim}, {"output_norm.weight", 1, a.dim}};
  if (!a.tied) out.push_back({"output.weight", 2, a.dim});
  if (a.llama3_rope) out.push_back({"rope_freqs.weight", 1, a.head_dim / 2});
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    out.push_back({p + "attn_norm.weight", 1, a.dim});
    for (int k = 0; k < 7; ++k) {
      out.push_back({absl::StrCat(p, kGgufLinear[k], ".weight"), 2, InFeatures(a, k), l * 7 + k});
    }
    if (a.qk_norm) {
      out.push_back({p + "attn_q_norm.weight", 1, a.head_dim});
      out.push_back({p + "attn_k_norm.weight", 1, a.head_dim});
    }
    out.push_back({p + "ffn_norm.weight", 1, a.dim});
    if (a.post_norms) {
      out.push_back({p + "post_attention_norm.weight", 1, a.dim});
      out.push_back({p + "post_ffw_norm.weight", 1, a.dim});
    }
  }
  return out;
}

// --- Run files and allocations ------------------------------------------------------------

// Varies with layer and kind, so no kind has one width in every layer.
std::vector<int> MixedBits(const std::vector<int>& cycle) {
  std::vector<int> bits;
  for (int p = 0; p < kLayers * 7; ++p) bits.push_back(cycle[(p + p / 7) % cycle.size()]);
  return bits;
}

// One width per kind in every layer, with layer 1's ffn_down in full precision.
std::vector<int> PerKindBits() {
  const int by_kind[7] = {4, 8, 8, 4, 2, 2, 3};
  std::vector<int> bits;
  for (int p = 0; p < kLayers * 7; ++p) bits.push_back(p == 7 + 6 ? 16 : by_kind[p % 7]);
  return bits;
}

// A run file for `a` whose one allocation (impq at b_avg 3) is `bits`.
std::string WriteRun(const std::string& dir, const Arch& a, const std::vector<int>& bits,
                     const std::string& tag) {
  ordered_json players = ordered_json::array();
  for (int p = 0; p < kLayers * 7; ++p) players.push_back({{"name", absl::StrCat("p", p)}});
  const ordered_json run = {
      {"settings",
       {{"players", "module"}, {"backend", "rtn"}, {"group_size", kGroup},
        {"model", a.impq_name + "-F16.gguf"}, {"tokenizer", ""}, {"calibration_text", ""},
        {"calibration_docs", 0}, {"ctx", 512}, {"eval_mode", "document"}}},
      {"model", {{"config", a.Config()}, {"players", players}}},
      {"widths", {2, 3, 4, 8}},
      {"budgets",
       {{{"average_bits", 3.0}, {"budget_bytes", 1}, {"chosen", {{"method", "impq"}}},
         {"allocations", {{{"method", "impq"}, {"bits", bits}}}}}}}};
  const std::string path = absl::StrCat(dir, "/run_", a.impq_name, "_", tag, ".json");
  EXPECT_TRUE(WriteFileAtomically(path, run.dump()).ok());
  return path;
}

class ExportToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempFilePath(::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `impq export` and returns PATH's text.
  std::string Export(const std::string& run, const std::string& format, const std::string& out) {
    const tests::ShellResult r =
        RunImpq(absl::StrCat("export --from ", run, " --format ", format, " --out ", out));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    absl::StatusOr<std::string> text = ReadFileToString(out);
    EXPECT_TRUE(text.ok()) << out;
    return text.ok() ? *text : "";
  }

  std::string dir_;
};

// --- llama.cpp ------------------------------------------------------------------------------

// ggml's type table (ggml/src/ggml.c type_traits: type_name and blck_size), the part the
// fallback needs, and the bits of a weight's code in each.
struct GgmlType {
  const char* name;
  int64_t block;
  int bits;
};
const GgmlType kGgmlTypes[] = {
    {"f32", 1, 32},    {"f16", 1, 16},    {"q4_0", 32, 4},   {"q4_1", 32, 4},  {"q5_0", 32, 5},
    {"q5_1", 32, 5},   {"q8_0", 32, 8},   {"q2_K", 256, 2},  {"q3_K", 256, 3}, {"q4_K", 256, 4},
    {"q5_K", 256, 5},  {"q6_K", 256, 6},  {"iq4_nl", 32, 4}, {"bf16", 1, 16},
};
const GgmlType* FindType(const std::string& name) {
  for (const GgmlType& t : kGgmlTypes) {
    if (absl::EqualsIgnoreCase(t.name, name)) return &t;  // parse_ggml_type: striequals
  }
  return nullptr;
}

// tools/quantize/quantize.cpp parse_tensor_type_file + parse_tensor_type: `file >> arg`
// (whitespace-separated tokens, no comments), split at the first '=', the name lower-cased,
// the type matched case-insensitively. Fails the test on a token llama-quantize rejects.
std::vector<std::pair<std::regex, const GgmlType*>> ReadTensorTypeFile(const std::string& text) {
  std::vector<std::pair<std::regex, const GgmlType*>> out;
  std::istringstream in(text);
  std::string arg;
  while (in >> arg) {
    const size_t eq = arg.find('=');
    EXPECT_NE(eq, std::string::npos) << "malformed tensor type '" << arg << "'";
    EXPECT_GT(eq, 0u) << arg;
    if (eq == std::string::npos || eq == 0) continue;
    const GgmlType* type = FindType(arg.substr(eq + 1));
    EXPECT_NE(type, nullptr) << "invalid ggml_type in " << arg;
    if (type == nullptr) continue;
    out.emplace_back(std::regex(absl::AsciiStrToLower(arg.substr(0, eq))), type);
  }
  return out;
}

// src/llama-quant.cpp tensor_type_fallback: when the row is not a multiple of the type's
// block, q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0, and f16 when the
// fallback's block does not divide the row either; any other type (q8_0 among them) throws.
// `threw` reports the throw ("no tensor type fallback is defined").
const GgmlType* Fallback(const GgmlType* t, int64_t ne0, bool* threw) {
  if (ne0 % t->block == 0) return t;
  const std::map<std::string, std::string> next = {
      {"q2_K", "q4_0"}, {"q3_K", "q4_0"}, {"q4_K", "q5_0"}, {"q5_K", "q5_1"}, {"q6_K", "q8_0"}};
  auto it = next.find(t->name);
  if (it == next.end()) {
    *threw = true;
    return t;
  }
  const GgmlType* f = FindType(it->second);
  return ne0 % f->block == 0 ? f : FindType("f16");
}

struct LlamaQuantizeResult {
  std::map<std::string, const GgmlType*> type;  // quantizable tensor -> final type
  std::map<std::string, int> matches;           // tensor -> patterns that match it
  std::vector<std::string> threw, fell_back, unmatched;
};

// src/llama-quant.cpp for `llama-quantize --token-embedding-type f16 --output-tensor-type
// f16 --tensor-type-file FILE IN OUT Q6_K`: tensor_allows_quantization (2-D tensors whose
// name ends in "weight", no "_norm.weight"), then llama_tensor_get_type: the token embedding
// and output head take their flags' types; any other tensor the first pattern whose
// std::regex_search matches (none: the default type of Q6_K, llama_ftype_get_default_type),
// then tensor_type_fallback.
LlamaQuantizeResult LlamaQuantize(const std::vector<GgufTensor>& tensors,
                                  const std::vector<std::pair<std::regex, const GgmlType*>>& pats) {
  LlamaQuantizeResult r;
  for (const GgufTensor& t : tensors) {
    for (const auto& [re, type] : pats) r.matches[t.name] += std::regex_search(t.name, re);
    const bool quantizable = t.n_dims >= 2 && absl::EndsWith(t.name, "weight") &&
                             !absl::StrContains(t.name, "_norm.weight");
    if (!quantizable) continue;
    if (t.name == "token_embd.weight" || t.name == "output.weight") {
      r.type[t.name] = FindType("f16");
      continue;
    }
    const GgmlType* type = FindType("q6_K");
    bool manual = false;
    for (const auto& [re, want] : pats) {
      if (std::regex_search(t.name, re)) {
        type = want;
        manual = true;
        break;
      }
    }
    if (!manual) r.unmatched.push_back(t.name);
    bool threw = false;
    const GgmlType* final_type = Fallback(type, t.ne0, &threw);
    if (threw) r.threw.push_back(t.name);
    if (final_type != type) r.fell_back.push_back(t.name);
    r.type[t.name] = final_type;
  }
  return r;
}

TEST_F(ExportToolsTest, LlamaCppTypeFileGivesEveryTensorItsBitsInLlamaQuantize) {
  for (const Arch* a : kArchs) {
    SCOPED_TRACE(a->impq_name);
    const std::vector<int> bits = MixedBits({2, 3, 4, 8, 16});
    const std::string out = dir_ + "/" + a->impq_name + ".types.txt";
    const std::string text = Export(WriteRun(dir_, *a, bits, "mixed"), "llama.cpp", out);
    const LlamaQuantizeResult r = LlamaQuantize(GgufTensors(*a), ReadTensorTypeFile(text));
    EXPECT_THAT(r.threw, ::testing::IsEmpty());
    EXPECT_THAT(r.fell_back, ::testing::IsEmpty());  // real rows: every type fits as asked
    EXPECT_THAT(r.unmatched, ::testing::IsEmpty());
    for (const GgufTensor& t : GgufTensors(*a)) {
      if (t.player < 0) {
        // Norms (attn_q_norm too, which an unanchored `blk.3.attn_q` would have matched),
        // embeddings, rope factors: no pattern touches them.
        EXPECT_EQ(r.matches.at(t.name), 0) << t.name;
        continue;
      }
      EXPECT_EQ(r.matches.at(t.name), 1) << t.name;
      ASSERT_TRUE(r.type.count(t.name)) << t.name;
      EXPECT_EQ(r.type.at(t.name)->bits, bits[t.player]) << t.name;
    }
    EXPECT_EQ(r.type.at("token_embd.weight")->bits, 16);
    // The notes hold the command the replay ran, and say every module got its width.
    const std::string notes = *ReadFileToString(out + ".notes.txt");
    EXPECT_THAT(notes, HasSubstr("llama-quantize --token-embedding-type f16 --output-tensor-type "
                                 "f16 --tensor-type-file " + out + " " + a->impq_name +
                                 "-F16.gguf "));
    EXPECT_THAT(notes, HasSubstr(" Q6_K\n"));
    EXPECT_THAT(notes, HasSubstr("Every module gets its width's own type."));
  }
}

// Rows that no k-quant block divides (64 and 172 wide, stories260K's shape): nothing is left
// to llama.cpp's fallback (q8_0 on 172-wide rows would abort it); the file asks for what
// llama.cpp can write and the notes say which modules differ from their width and why.
TEST_F(ExportToolsTest, LlamaCppNarrowRowsNeverNeedAFallback) {
  const Arch small{"llama", 64, 172, 8, 4, 8, false, false, false, true};
  std::vector<int> bits;
  for (int p = 0; p < kLayers * 7; ++p) bits.push_back(std::vector<int>{2, 3, 4, 8}[p % 4]);
  const std::string out = dir_ + "/small.types.txt";
  const std::string text = Export(WriteRun(dir_, small, bits, "small"), "llama.cpp", out);
  const LlamaQuantizeResult r = LlamaQuantize(GgufTensors(small), ReadTensorTypeFile(text));
  EXPECT_THAT(r.threw, ::testing::IsEmpty());
  EXPECT_THAT(r.fell_back, ::testing::IsEmpty());
  for (const GgufTensor& t : GgufTensors(small)) {
    if (t.player < 0) continue;
    const int want = t.ne0 % 32 != 0 ? 16 : bits[t.player] == 8 ? 8 : 4;
    EXPECT_EQ(r.type.at(t.name)->bits, want) << t.name;
  }
  const std::string notes = *ReadFileToString(out + ".notes.txt");
  // Player p has {2, 3, 4, 8}[p % 4]: blk.0.ffn_down (player 6) 4 bits, blk.3.ffn_down (27)
  // 8 bits, blk.0.attn_q (0) 2 bits, blk.0.attn_output (3, rows of 64) 8 bits.
  EXPECT_THAT(notes, HasSubstr("blk.0.ffn_down.weight: 4 bits -> f16 (16 bits): rows of 172 "
                               "weights are not a multiple of 32"));
  EXPECT_THAT(notes, HasSubstr("blk.3.ffn_down.weight: 8 bits -> f16 (16 bits): rows of 172 "
                               "weights are not a multiple of 32, the smallest block of any "
                               "llama.cpp quantized type (for q8_0 llama.cpp has no fallback "
                               "and aborts)"));
  EXPECT_THAT(notes, HasSubstr("blk.0.attn_q.weight: 2 bits -> q4_0 (4 bits): q2_K needs rows "
                               "that are multiples of 256 weights (these have 64)"));
  EXPECT_THAT(text, HasSubstr("^blk\\.0\\.attn_output\\.weight$=q8_0\n"));
}

// --- GPTQModel ------------------------------------------------------------------------------

// gptqmodel/quantization/config.py dynamic_get: the "dynamic" keys in order; "-:" + pattern
// that re.match-es the module name -> not quantized (False); "+:" (or no prefix) + pattern
// that matches -> its overrides; the first match decides. re.match anchors at the start only:
// std::regex_search with match_continuous, which agrees with Python `re` on these patterns
// (literals, `\.`, `^`, `$`; module names hold no newline for `$` to differ on).
TEST_F(ExportToolsTest, GptqModelDynamicGivesEveryModuleItsBits) {
  for (const Arch* a : kArchs) {
    SCOPED_TRACE(a->impq_name);
    const std::vector<int> bits = MixedBits({2, 3, 4, 8, 16});
    const ordered_json j = ordered_json::parse(
        Export(WriteRun(dir_, *a, bits, "mixed"), "gptqmodel", dir_ + "/gptq.json"));
    // QuantizeConfig(**j) takes every key.
    std::set<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.insert(k);
    EXPECT_EQ(keys, (std::set<std::string>{"bits", "group_size", "sym", "desc_act", "dynamic"}));
    EXPECT_EQ(j["group_size"], kGroup);
    for (const HfModule& m : HfModules(*a)) {
      std::optional<ordered_json> got;  // nullopt: no key matches; null: "-:" (not quantized)
      for (const auto& [key, overrides] : j["dynamic"].items()) {
        const bool negative = absl::StartsWith(key, "-:");
        const std::string pattern = absl::StartsWith(key, "+:") || negative ? key.substr(2) : key;
        if (std::regex_search(m.name, std::regex(pattern),
                              std::regex_constants::match_continuous)) {
          got = negative ? ordered_json(nullptr) : overrides;
          break;
        }
      }
      if (m.player < 0) {
        EXPECT_FALSE(got.has_value()) << m.name;
        continue;
      }
      ASSERT_TRUE(got.has_value()) << m.name;
      if (bits[m.player] >= 16) {
        EXPECT_TRUE(got->is_null()) << m.name;
      } else {
        ASSERT_TRUE(got->is_object()) << m.name;
        EXPECT_EQ((*got)["bits"], bits[m.player]) << m.name;
        EXPECT_EQ((*got)["group_size"], kGroup) << m.name;
      }
    }
  }
}

// --- HQQ ------------------------------------------------------------------------------------

// The shipped loader's own matching (impq_hqq_apply.py plan(): exact full names), run by
// python3 on every module name, and the file compiles.
TEST_F(ExportToolsTest, HqqLoaderGivesEveryModuleItsBits) {
  if (tests::Shell("python3 --version").exit_code != 0) GTEST_SKIP() << "no python3";
  for (const Arch* a : kArchs) {
    SCOPED_TRACE(a->impq_name);
    const std::vector<int> bits = MixedBits({2, 3, 4, 8, 16});
    const std::string out = dir_ + "/alloc.hqq.json";
    const ordered_json j =
        ordered_json::parse(Export(WriteRun(dir_, *a, bits, "mixed"), "hqq", out));
    const std::string loader = dir_ + "/impq_hqq_apply.py";
    ASSERT_TRUE(fs::exists(loader));
    tests::ShellResult r = tests::Shell("python3 -m py_compile " + loader);
    EXPECT_EQ(r.exit_code, 0) << r.out;

    std::string names;
    for (const HfModule& m : HfModules(*a)) {
      if (m.linear) names += m.name + "\n";  // apply_allocation passes the nn.Linear ones
    }
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/names.txt", names).ok());
    r = tests::Shell("python3 " + loader + " --plan " + out + " < " + dir_ + "/names.txt");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    std::map<std::string, std::string> planned;
    for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      ASSERT_EQ(f.size(), 2u) << line;
      planned[f[0]] = f[1];
    }
    for (const HfModule& m : HfModules(*a)) {
      if (!m.linear) continue;
      const std::string want =
          m.player < 0 || bits[m.player] >= 16 ? "keep" : absl::StrCat(bits[m.player]);
      EXPECT_EQ(planned[m.name], want) << m.name;
      if (m.player >= 0 && bits[m.player] < 16) {
        EXPECT_EQ(j["modules"][m.name]["group_size"], kGroup);
        EXPECT_EQ(j["modules"][m.name]["axis"], 1);
      }
    }
    // transformers cannot hold a per-layer allocation, and the file says so.
    EXPECT_TRUE(j["transformers"].is_null());
    EXPECT_THAT(j["transformers_note"].get<std::string>(),
                HasSubstr("HqqConfig cannot hold this allocation"));
  }
  // A model without one of the allocation's modules: the loader refuses, naming it.
  const std::string out = dir_ + "/alloc.hqq.json";
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/names.txt", "model.layers.0.self_attn.q_proj\n").ok());
  const tests::ShellResult r = tests::Shell("python3 " + dir_ + "/impq_hqq_apply.py --plan " +
                                            out + " < " + dir_ + "/names.txt");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("are not linear modules of the model, first "
                               "model.layers.0.self_attn.k_proj"));
}

// transformers quantizers/quantizer_hqq.py create_quantized_param: a module's settings are
// quant_config[".".join(name.split(".")[-2:])], and None (kept) when any skip_modules entry
// is a substring of its name. With one width per kind the export fills that section, and it
// gives every module its bits.
TEST_F(ExportToolsTest, HqqTransformersConfigWhenOneWidthPerKind) {
  for (const Arch* a : kArchs) {
    SCOPED_TRACE(a->impq_name);
    const std::vector<int> bits = PerKindBits();
    const ordered_json j = ordered_json::parse(
        Export(WriteRun(dir_, *a, bits, "per_kind"), "hqq", dir_ + "/alloc.hqq.json"));
    const ordered_json& t = j["transformers"];
    ASSERT_TRUE(t.is_object()) << j["transformers_note"];
    for (const HfModule& m : HfModules(*a)) {
      if (!m.linear) continue;
      std::vector<std::string> parts = absl::StrSplit(m.name, '.');
      const std::string tag = parts.size() >= 2
                                  ? parts[parts.size() - 2] + "." + parts.back()
                                  : parts.back();
      std::optional<int> got;
      if (t["dynamic_config"].contains(tag)) got = t["dynamic_config"][tag]["nbits"].get<int>();
      for (const auto& skip : t["skip_modules"]) {
        if (absl::StrContains(m.name, skip.get<std::string>())) got.reset();
      }
      if (m.player < 0 || bits[m.player] >= 16) {
        EXPECT_FALSE(got.has_value()) << m.name;
      } else {
        ASSERT_TRUE(got.has_value()) << m.name;
        EXPECT_EQ(*got, bits[m.player]) << m.name;
      }
    }
  }
}

// --- optimum-quanto ---------------------------------------------------------------------------

// Python fnmatch.fnmatch(name, pattern) on POSIX (os.path.normcase is the identity there):
// the whole name against the pattern, `*` any run, `?` one character, `[...]` a set.
bool FnMatch(const std::string& name, const std::string& pattern) {
  std::string re;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '*') {
      re += ".*";
    } else if (c == '?') {
      re += '.';
    } else if (c == '[' && pattern.find(']', i + 1) != std::string::npos) {
      const size_t end = pattern.find(']', i + 1);
      std::string set = pattern.substr(i + 1, end - i - 1);
      if (!set.empty() && set[0] == '!') set[0] = '^';
      re += "[" + set + "]";
      i = end;
    } else {
      if (absl::string_view("\\.^$|?*+()[]{}").find(c) != absl::string_view::npos) re += '\\';
      re += c;
    }
  }
  return std::regex_match(name, std::regex(re));
}

// optimum/quanto/quantize.py quantize(model, weights, include=...): for each (name, module)
// of model.named_modules(), skipped unless some include pattern fnmatch-es the name, else
// _quantize_submodule with `weights`. One call per qtype, as the README's recipe does; a
// module matched by two calls would be quantized twice.
TEST_F(ExportToolsTest, QuantoIncludeListsGiveEveryModuleItsBits) {
  const std::map<std::string, int> qtype_bits = {{"qint2", 2}, {"qint4", 4}, {"qint8", 8}};
  for (const Arch* a : kArchs) {
    SCOPED_TRACE(a->impq_name);
    const std::vector<int> bits = MixedBits({2, 4, 8, 16});
    const ordered_json j = ordered_json::parse(
        Export(WriteRun(dir_, *a, bits, "no3"), "quanto", dir_ + "/alloc.quanto.json"));
    std::map<std::string, std::vector<int>> got;  // module -> bits of each call that took it
    for (const auto& [qtype, names] : j["weights"].items()) {
      ASSERT_TRUE(qtype_bits.count(qtype)) << qtype;
      for (const HfModule& m : HfModules(*a)) {
        for (const auto& pattern : names) {
          if (FnMatch(m.name, pattern.get<std::string>())) {
            got[m.name].push_back(qtype_bits.at(qtype));
            break;
          }
        }
      }
    }
    for (const HfModule& m : HfModules(*a)) {
      if (m.player < 0 || bits[m.player] >= 16) {
        EXPECT_FALSE(got.count(m.name)) << m.name;
      } else {
        EXPECT_EQ(got[m.name], std::vector<int>{bits[m.player]}) << m.name;
      }
    }
    EXPECT_EQ(j["keep"].size(),
              static_cast<size_t>(std::count(bits.begin(), bits.end(), 16)));
  }
}

// quanto has no 3-bit type: exit 2 naming the first 3-bit module, nothing written.
TEST_F(ExportToolsTest, QuantoRefusesThreeBitModules) {
  const std::string out = dir_ + "/never.json";
  const tests::ShellResult r =
      RunImpq("export --from " + WriteRun(dir_, kLlama3, MixedBits({2, 3, 4, 8}), "mixed") +
              " --format quanto --out " + out);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("optimum-quanto has no 3-bit weight type"));
  EXPECT_THAT(r.out, HasSubstr("(first model.layers.0.self_attn.k_proj)"));
  EXPECT_FALSE(fs::exists(out));
}

// Bad input: exit 2 naming the problem, and none of the format's files (the HQQ loader, the
// llama.cpp notes) written either.
TEST_F(ExportToolsTest, BadInputWritesNoFileOfTheFormat) {
  const std::string run = WriteRun(dir_, kQwen3, MixedBits({2, 3, 4, 8}), "mixed");
  const std::string out_dir = dir_ + "/out";
  fs::create_directories(out_dir);
  auto expect_refused = [&](const std::string& args, const std::string& text) {
    const tests::ShellResult r = RunImpq(args + " --out " + out_dir + "/alloc");
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(text)) << args;
    EXPECT_TRUE(fs::is_empty(out_dir)) << args;
  };
  for (const char* format : {"llama.cpp", "gptqmodel", "hqq", "quanto"}) {
    expect_refused(absl::StrCat("export --from ", run, " --budget 2.5 --format ", format),
                   "--budget 2.5: not in " + run);
  }
  expect_refused("export --from " + run + " --format quanto", "no 3-bit weight type");
  // GPTQModel takes a fixed set of group sizes.
  ordered_json odd = ordered_json::parse(*ReadFileToString(run));
  odd["settings"]["group_size"] = 48;
  const std::string odd_path = dir_ + "/odd_group.json";
  ASSERT_TRUE(WriteFileAtomically(odd_path, odd.dump()).ok());
  expect_refused("export --from " + odd_path + " --format gptqmodel",
                 "settings.group_size is 48 (GPTQModel takes -1, 16, 32, 64, 128, 256, 512 or "
                 "1024)");
}

// --- README ---------------------------------------------------------------------------------

// The README's recipes are the ones replayed above.
TEST_F(ExportToolsTest, ReadmeRecipesAreTheReplayedOnes) {
  const absl::StatusOr<std::string> readme = ReadFileToString(IMPQ_README);
  ASSERT_TRUE(readme.ok()) << readme.status();
  for (const char* line : {
           "llama-quantize --token-embedding-type f16 --output-tensor-type f16 "
           "--tensor-type-file types.txt MODEL-F16.gguf MODEL-impq.gguf Q6_K",
           "QuantizeConfig(**json.load(open(\"gptq.json\")))",
           "apply_allocation(model, \"alloc.hqq.json\"",
           "HqqConfig(**json.load(open(\"alloc.hqq.json\"))[\"transformers\"])",
           "quantize(model, weights=qtype, include=names)",
       }) {
    EXPECT_THAT(*readme, HasSubstr(line));
  }
}

}  // namespace
}  // namespace impq
