#include "worker/gpu/gpu_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "worker/forward/kernels.h"
#include "worker/gpu/gpu_api.h"
#include "worker/quant/block_format.h"
#include "worker/quant/packed_tensor.h"
#include "worker/quant/rtn.h"

namespace impq::gpu {

uint16_t F32ToBf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN -> canonical quiet NaN
  // Round to nearest, ties to even, on the bit pattern: adding 0x7fff plus the lowest kept
  // bit carries into the kept half exactly when the dropped half is > 0x8000, or == 0x8000
  // with an odd kept half. A carry out of the mantissa bumps the exponent (correct rounding
  // up to the next binade, or to inf past the largest finite value).
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return static_cast<uint16_t>(u >> 16);
}

float Bf16BitsToF32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

float RoundBf16(float x) { return Bf16BitsToF32(F32ToBf16Bits(x)); }

namespace {

std::vector<float> Widen(const uint16_t* b, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16BitsToF32(b[i]);
  return out;
}

void Store(float v, int64_t i, float* out_f32, uint16_t* out_bf16) {
  if (out_f32 != nullptr) out_f32[i] = v;
  if (out_bf16 != nullptr) out_bf16[i] = F32ToBf16Bits(v);
}

}  // namespace

absl::Status RtnQuantizeRef(int bits, int64_t rows, int64_t cols, int64_t group,
                            const float* w, uint8_t* packed, float* scales, float* zeros) {
  quant::QuantConfig cfg;
  cfg.bits = bits;
  cfg.group_size = static_cast<int>(group);
  if (group != cfg.group_size) {
    return absl::InvalidArgumentError("RtnQuantizeRef: group size does not fit an int");
  }
  quant::RtnQuantizer rtn;
  absl::StatusOr<quant::PackedTensor> p = rtn.Quantize(w, rows, cols, cfg, nullptr);
  if (!p.ok()) return p.status();
  std::memcpy(packed, p->codes.data(), p->codes.size());
  std::memcpy(scales, p->scales.data(), p->scales.size() * sizeof(float));
  std::memcpy(zeros, p->zeros.data(), p->zeros.size() * sizeof(float));
  return absl::OkStatus();
}

void PackRef(int bits, int64_t rows, int64_t cols, const uint8_t* codes, uint8_t* packed) {
  const int64_t rb = impq_code_bytes(bits, cols);
  for (int64_t r = 0; r < rows; ++r) {
    quant::PackRow(std::span<const uint8_t>(codes + r * cols, static_cast<size_t>(cols)), bits,
                   packed + r * rb);
  }
}

void UnpackRef(int bits, int64_t rows, int64_t cols, const uint8_t* packed, uint8_t* codes) {
  const int64_t rb = impq_code_bytes(bits, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      codes[r * cols + c] = static_cast<uint8_t>(impq_get_code(packed + r * rb, bits, c));
    }
  }
}

void DequantizeRef(int bits, int64_t rows, int64_t cols, int64_t group, const uint8_t* packed,
                   const float* scales, const float* zeros, float* out_f32,
                   uint16_t* out_bf16) {
  const int64_t rb = impq_code_bytes(bits, cols), groups = impq_groups_per_row(cols, group);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = r * groups + c / group;
      const float v =
          impq_dequantize_value(impq_get_code(packed + r * rb, bits, c), scales[g], zeros[g]);
      Store(v, r * cols + c, out_f32, out_bf16);
    }
  }
}

void EmbedRef(const float* table, int64_t /*vocab*/, int dim, const int32_t* tokens,
              int64_t rows, float scale, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = table + static_cast<int64_t>(tokens[r]) * dim;
    for (int i = 0; i < dim; ++i) out[r * dim + i] = src[i] * scale;
  }
}

void RmsNormRef(const float* x, int64_t rows, int dim, const float* mult, float eps,
                float* out_f32, uint16_t* out_bf16) {
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    forward::RmsNormRow(x + r * dim, mult, dim, eps, row.data());
    for (int i = 0; i < dim; ++i) Store(row[i], r * dim + i, out_f32, out_bf16);
  }
}

void RmsNormAddRef(const float* in, int64_t rows, int dim, const float* mult, float eps,
                   float* x) {
  std::vector<float> row(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    forward::RmsNormRow(in + r * dim, mult, dim, eps, row.data());
    for (int i = 0; i < dim; ++i) x[r * dim + i] += row[i];
  }
}

void RopeRef(const float* x, int64_t T, int heads, int head_dim, const float* head_mult,
             float eps, const float* cos, const float* sin, int rope_style, float* out_f32,
             uint16_t* out_bf16) {
  const int64_t half = head_dim / 2, width = static_cast<int64_t>(heads) * head_dim;
  const bool interleaved = rope_style == IMPQ_GPU_ROPE_INTERLEAVED;
  std::vector<float> v(static_cast<size_t>(head_dim));
  for (int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* src = x + t * width + static_cast<int64_t>(h) * head_dim;
      if (head_mult != nullptr) {
        forward::RmsNormRow(src, head_mult, head_dim, eps, v.data());
      } else {
        std::copy(src, src + head_dim, v.begin());
      }
      forward::RopeHead(v.data(), head_dim, cos + t * half, sin + t * half, interleaved);
      for (int i = 0; i < head_dim; ++i) {
        Store(v[i], (static_cast<int64_t>(h) * T + t) * head_dim + i, out_f32, out_bf16);
      }
    }
  }
}

void ToHeadMajorRef(const float* x, int64_t T, int heads, int head_dim, float* out_f32,
                    uint16_t* out_bf16) {
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  for (int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < head_dim; ++i) {
        Store(x[t * width + static_cast<int64_t>(h) * head_dim + i],
              (static_cast<int64_t>(h) * T + t) * head_dim + i, out_f32, out_bf16);
      }
    }
  }
}

void GluRef(const float* gate, const float* up, int64_t n, int activation, float* out_f32,
            uint16_t* out_bf16) {
  std::vector<float> g(gate, gate + n);
  if (activation == IMPQ_GPU_ACT_GELU_TANH) {
    forward::GeluTanhMul(g.data(), up, n);
  } else {
    forward::SiluMul(g.data(), up, n);
  }
  for (int64_t i = 0; i < n; ++i) Store(g[i], i, out_f32, out_bf16);
}

void GemmRefF32(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                float beta, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) {
        s += static_cast<double>(x[r * in + i]) * static_cast<double>(w[o * in + i]);
      }
      if (beta != 0.0f) s += static_cast<double>(beta) * static_cast<double>(y[r * out + o]);
      y[r * out + o] = static_cast<float>(s);
    }
  }
}

void GemmRef(const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w, int64_t out,
             float beta, float* y) {
  const std::vector<float> xf = Widen(x, rows * in), wf = Widen(w, out * in);
  GemmRefF32(xf.data(), rows, in, wf.data(), out, beta, y);
}

void AttentionRefF32(const float* q, const float* k, const float* v, int64_t T, int H, int Hkv,
                     int head_dim, float scale, float softcap, int window, bool round_probs,
                     float* out_f32, uint16_t* out_bf16) {
  const int group = H / Hkv;
  const int64_t hd = head_dim, width = static_cast<int64_t>(H) * hd;
  std::vector<float> s(static_cast<size_t>(T));
  std::vector<double> acc(static_cast<size_t>(hd));
  for (int h = 0; h < H; ++h) {
    const int g = h / group;
    const float* qh = q + static_cast<int64_t>(h) * T * hd;
    const float* kg = k + static_cast<int64_t>(g) * T * hd;
    const float* vg = v + static_cast<int64_t>(g) * T * hd;
    for (int64_t i = 0; i < T; ++i) {
      const int64_t first = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
      const int64_t n = i + 1 - first;  // visible keys first..i
      for (int64_t j = first; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) {
          dot += static_cast<double>(qh[i * hd + d]) * static_cast<double>(kg[j * hd + d]);
        }
        s[j - first] = static_cast<float>(static_cast<double>(scale) * dot);
      }
      if (softcap > 0) forward::SoftcapRow(s.data(), n, softcap);
      float mx = s[0];
      for (int64_t j = 1; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = forward::FastExp(s[j] - mx);
        sum += s[j];
      }
      const float inv = 1.0f / static_cast<float>(sum);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < n; ++j) {
        float p = s[j] * inv;
        if (round_probs) p = RoundBf16(p);
        const float* vj = vg + (first + j) * hd;
        for (int64_t d = 0; d < hd; ++d) acc[d] += static_cast<double>(p) * vj[d];
      }
      for (int64_t d = 0; d < hd; ++d) {
        Store(static_cast<float>(acc[d]), i * width + static_cast<int64_t>(h) * hd + d, out_f32,
              out_bf16);
      }
    }
  }
}

void AttentionRef(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t T, int H,
                  int Hkv, int head_dim, float scale, float softcap, int window,
                  uint16_t* out_bf16) {
  const std::vector<float> qf = Widen(q, static_cast<int64_t>(H) * T * head_dim);
  const std::vector<float> kf = Widen(k, static_cast<int64_t>(Hkv) * T * head_dim);
  const std::vector<float> vf = Widen(v, static_cast<int64_t>(Hkv) * T * head_dim);
  AttentionRefF32(qf.data(), kf.data(), vf.data(), T, H, Hkv, head_dim, scale, softcap, window,
                  /*round_probs=*/true, nullptr, out_bf16);
}

void NllRef(const float* logits, int64_t rows, int vocab, const int32_t* targets,
            float softcap, float* nll) {
  std::vector<float> row(static_cast<size_t>(vocab));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(logits + r * vocab, logits + (r + 1) * vocab, row.begin());
    if (softcap > 0) forward::SoftcapRow(row.data(), vocab, softcap);
    nll[r] = static_cast<float>(forward::LogSumExp(row.data(), vocab) -
                                static_cast<double>(row[targets[r]]));
  }
}

}  // namespace impq::gpu
