// Reader for llama2.c checkpoints (karpathy/llama2.c).
//
// Legacy "version 0" (run.c's format): seven little-endian int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// then float32 arrays, all layers of one kind together:
//   tok_embeddings[V,dim], attention_norm[L,dim], wq[L,dim,dim], wk[L,kv,dim], wv[L,kv,dim],
//   wo[L,dim,dim], ffn_norm[L,dim], w1[L,hidden,dim] (gate), w2[L,dim,hidden] (down),
//   w3[L,hidden,dim] (up), norm[dim], freq_cis_real[seq,hd/2], freq_cis_imag[seq,hd/2],
//   and wcls[V,dim] only when vocab_size is negative (unshared classifier).
// Version 1 (export.py --version 1): magic "ak42" (0x616b3432), int32 version = 1, the seven
// int32, one byte shared_classifier, zero padding to 256 bytes, then float32
//   attention_norm, ffn_norm, norm, tok_embeddings, wq, wk, wv, wo, w1, w2, w3, [wcls].
// Rotary embeddings use the interleaved-pair convention; rope theta is 10000, eps 1e-5.
// Validation, before anything is allocated from the header: every field in [1, 2^24], dim a
// multiple of n_heads, n_heads of n_kv_heads; the file size exactly what the header implies
// (the layout has no names or shapes to check instead), the message naming n_layers when the
// file holds a whole number of layers under the other fields ("header field n_layers = 4, but
// ... the file holds the weights of 5 layers"). Then every weight must be finite (the message
// names impq's tensor and run.c's array: "layers.2.attn_q (wq[2])").
// Tensors are zero-copy views into a memory map of the file.
#ifndef IMPQ_WORKER_MODEL_LLAMA2C_READER_H_
#define IMPQ_WORKER_MODEL_LLAMA2C_READER_H_

#include "worker/model/model_reader.h"

namespace impq::model {

class Llama2cReader : public ModelReader {
 public:
  std::string format() const override { return "llama2c"; }
  // Recognises the v1 magic, or any `.bin` file (the legacy format has no magic; Read names
  // the implausible header field of one that is not a checkpoint).
  bool Recognizes(const std::string& path, std::span<const uint8_t> head) const override;
  absl::StatusOr<Model> Read(const std::string& path) const override;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_LLAMA2C_READER_H_
