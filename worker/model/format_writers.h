// Test-only writers of small models in the Hugging Face safetensors layout and in GGUF, and
// raw builders for hand-made (corrupt) files. Independent of the readers: they follow the
// published formats (huggingface/safetensors, ggml docs/gguf.md) directly.
#ifndef IMPQ_WORKER_MODEL_FORMAT_WRITERS_H_
#define IMPQ_WORKER_MODEL_FORMAT_WRITERS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/model.h"

namespace impq::model::testing {

uint16_t FloatToF16(float f);   // round to nearest even
uint16_t FloatToBf16(float f);  // round to nearest even
// Little-endian bytes of `values` as "F32", "F16" or "BF16".
std::string EncodeFloats(std::span<const float> values, const std::string& dtype);

// Q/K rows from Meta's interleaved-pair rotary layout to Hugging Face's rotate_half layout
// (convert_llama_weights_to_hf.py's permute): within each head, row 2i + j moves to
// j·head_dim/2 + i. `rows` = heads · head_dim.
std::vector<float> PermuteToHalf(std::span<const float> w, int heads, int head_dim, int64_t cols);

struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
// u64 length + header + data, the raw form (for corrupt files).
std::string SafetensorsBytes(const std::string& header_json, const std::string& data);
// A valid file of `tensors`, laid out consecutively in order.
std::string BuildSafetensors(const std::vector<StTensor>& tensors);

// Writes `m` as a Hugging Face directory of its architecture (config.arch: "llama", "qwen3",
// "gemma2"): config.json and model.safetensors, or `shards` > 1 files plus
// model.safetensors.index.json. Q/K of an interleaved-rope model (as MakeRandomModel builds by
// default) are permuted to rotate_half; rotate_half models are written as they are. Tied
// models omit lm_head.weight. Norms are written as stored (HF Gemma-2 keeps w of 1 + w).
absl::Status WriteHfModel(const Model& m, const std::string& dir, const std::string& dtype,
                          int shards = 1);

// GGUF v3 (or v2) builder.
class GgufBuilder {
 public:
  void U32(const std::string& key, uint32_t v);
  void F32(const std::string& key, float v);
  void Bool(const std::string& key, bool v);
  void Str(const std::string& key, const std::string& v);
  void StrArray(const std::string& key, const std::vector<std::string>& v);
  void F32Array(const std::string& key, const std::vector<float>& v);
  void I32Array(const std::string& key, const std::vector<int32_t>& v);
  // `shape` outermost-first (PyTorch order); written as innermost-first ne.
  void Tensor(const std::string& name, const std::vector<int64_t>& shape, uint32_t ggml_type,
              const std::string& bytes);
  std::string Build(uint32_t version = 3, uint32_t alignment = 32) const;

 private:
  std::string kv_;
  uint64_t n_kv_ = 0;
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t type;
    std::string bytes;
  };
  std::vector<T> tensors_;
};

// Writes `m` as a GGUF model of its architecture (llama.cpp's "llama", "qwen3", "gemma2") with
// tensors of `ggml_type` (0 F32, 1 F16, 30 BF16); the output head is written when the model is
// untied, or when `duplicate_tied_head`. Q/K are written as stored (llama expects interleaved,
// qwen3/gemma2 rotate_half); norms as norm_weight_offset + w (llama.cpp's Gemma-2 converter
// adds the 1); a llama3 rope_scaling becomes rope_freqs.weight (Llama3RopeFreqFactors).
absl::Status WriteGgufModel(const Model& m, const std::string& path, uint32_t ggml_type,
                            bool duplicate_tied_head = false);
// llama.cpp's per-frequency divisors of the llama3 rule (convert_hf_to_gguf.py), float32.
std::vector<float> Llama3RopeFreqFactors(const ModelConfig& c);
// The builder WriteGgufModel uses, for tests that add or corrupt entries.
GgufBuilder GgufModelBuilder(const Model& m, uint32_t ggml_type, bool duplicate_tied_head);

void AppendU32(std::string& out, uint32_t v);
void AppendU64(std::string& out, uint64_t v);

}  // namespace impq::model::testing

#endif  // IMPQ_WORKER_MODEL_FORMAT_WRITERS_H_
