#include "worker/model/llama2c_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace impq::model {
namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42"
constexpr size_t kHeaderV0 = 7 * sizeof(int32_t);
constexpr size_t kHeaderV1 = 256;

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  bool shared_classifier;
  int version;  // 0 or 1
  size_t data_offset;
};

int32_t ReadI32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

absl::StatusOr<Header> ParseHeader(const std::string& path, std::span<const uint8_t> bytes) {
  Header h{};
  const uint8_t* p = bytes.data();
  if (bytes.size() >= 8 && static_cast<uint32_t>(ReadI32(p)) == kMagicV1) {
    h.version = ReadI32(p + 4);
    if (h.version != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": llama2.c export version ", h.version,
          " is not supported (only the fp32 formats: legacy version 0 and version 1)"));
    }
    if (bytes.size() < kHeaderV1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header: file has ",
                                                     bytes.size(), " bytes, a version-1 header needs ",
                                                     kHeaderV1));
    }
    p += 8;
    h.shared_classifier = bytes[8 + kHeaderV0] != 0;
    h.data_offset = kHeaderV1;
  } else {
    if (bytes.size() < kHeaderV0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header: file has ",
                                                     bytes.size(), " bytes, the header needs ",
                                                     kHeaderV0));
    }
    h.version = 0;
    h.data_offset = kHeaderV0;
  }
  h.dim = ReadI32(p);
  h.hidden_dim = ReadI32(p + 4);
  h.n_layers = ReadI32(p + 8);
  h.n_heads = ReadI32(p + 12);
  h.n_kv_heads = ReadI32(p + 16);
  h.vocab_size = ReadI32(p + 20);
  h.seq_len = ReadI32(p + 24);
  if (h.version == 0) {
    h.shared_classifier = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
  }
  struct Field {
    const char* name;
    int32_t value;
  };
  for (Field f : {Field{"dim", h.dim}, {"hidden_dim", h.hidden_dim}, {"n_layers", h.n_layers},
                  {"n_heads", h.n_heads}, {"n_kv_heads", h.n_kv_heads},
                  {"vocab_size", h.vocab_size}, {"seq_len", h.seq_len}}) {
    if (f.value <= 0 || f.value > (1 << 24)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": header field ", f.name, " = ",
                                                     f.value,
                                                     " is out of range (1..16777216); is this a "
                                                     "llama2.c checkpoint?"));
    }
  }
  if (h.dim % h.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header dim ", h.dim,
                                                   " is not a multiple of n_heads ", h.n_heads));
  }
  if (h.n_heads % h.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header n_heads ", h.n_heads,
                                                   " is not a multiple of n_kv_heads ",
                                                   h.n_kv_heads));
  }
  return h;
}

ModelConfig ConfigFromHeader(const Header& h) {
  ModelConfig c;
  c.arch = "llama";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = h.vocab_size;
  c.seq_len = h.seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::kInterleaved;
  c.tied_embeddings = h.shared_classifier;
  return c;
}

// Hands out consecutive float arrays from the mapped file, in file order.
class Cursor {
 public:
  Cursor(std::shared_ptr<const MappedFile> file, size_t offset)
      : file_(std::move(file)), offset_(offset) {}
  // Per-layer views of an array [L, rows, cols] (or [L, rows] when cols == 0).
  std::vector<Tensor> TakeLayers(const std::string& what, int layers, int64_t rows,
                                 int64_t cols) {
    std::vector<Tensor> out;
    for (int l = 0; l < layers; ++l) {
      std::vector<int64_t> shape = cols > 0 ? std::vector<int64_t>{rows, cols}
                                            : std::vector<int64_t>{rows};
      out.push_back(Take(absl::StrCat("layers.", l, ".", what), shape));
    }
    return out;
  }
  Tensor Take(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const float* data = reinterpret_cast<const float*>(file_->bytes().data() + offset_);
    offset_ += static_cast<size_t>(n) * sizeof(float);
    return Tensor(name, std::move(shape), data, file_);
  }
  void Skip(int64_t floats) { offset_ += static_cast<size_t>(floats) * sizeof(float); }

 private:
  std::shared_ptr<const MappedFile> file_;
  size_t offset_;
};

}  // namespace

bool Llama2cReader::Recognizes(const std::string& path, std::span<const uint8_t> head) const {
  if (head.size() >= 4 && static_cast<uint32_t>(ReadI32(head.data())) == kMagicV1) return true;
  // The legacy format has no magic: a `.bin` file is taken for one, and Read() names the header
  // field that is out of range when it is not ("n_layers = 16777217 is out of range ...; is
  // this a llama2.c checkpoint?") rather than "unrecognised".
  return absl::EndsWith(path, ".bin");
}

absl::StatusOr<Model> Llama2cReader::Read(const std::string& path) const {
  ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(Header h, ParseHeader(path, file->bytes()));
  ModelConfig c = ConfigFromHeader(h);
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }

  // Exact size the header implies (128-bit arithmetic: header values are untrusted). This is
  // the format's one check of its metadata against its tensors: the layout has no names or
  // shapes, so the size must match exactly, before anything is allocated from the header.
  using u128 = unsigned __int128;
  const u128 L = h.n_layers, D = h.dim, H = h.hidden_dim, V = h.vocab_size, S = h.seq_len;
  const u128 KV = static_cast<u128>(c.kv_dim());
  const u128 per_layer = D * 2                  // attention_norm, ffn_norm
                         + D * D * 2 + KV * D * 2  // wq, wo, wk, wv
                         + H * D * 3;           // w1, w2, w3
  u128 fixed = V * D   // token embedding
               + D;    // final norm
  if (h.version == 0) fixed += S * static_cast<u128>(c.head_dim);  // freq_cis real + imag
  if (!h.shared_classifier) fixed += V * D;
  const u128 floats = fixed + L * per_layer;
  const u128 expected = static_cast<u128>(h.data_offset) + floats * sizeof(float);
  if (expected != file->size()) {
    const bool truncated = expected > file->size();
    // The usual culprit is the layer count: say so when the file holds a whole number of
    // layers under the other fields.
    std::string layers;
    const u128 data = file->size() - std::min<u128>(file->size(), h.data_offset);
    if (data % sizeof(float) == 0 && data / sizeof(float) > fixed &&
        (data / sizeof(float) - fixed) % per_layer == 0) {
      const u128 held = (data / sizeof(float) - fixed) / per_layer;
      layers = absl::StrCat("; header field n_layers = ", h.n_layers, ", but with the other "
                            "fields as given the file holds the weights of ",
                            static_cast<uint64_t>(held), " layers (the header claims ",
                            held > L ? "fewer" : "more", " layers than the file holds)");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", truncated ? "truncated checkpoint" : "trailing bytes after the checkpoint",
        ": the header (", c.ToString(), ", version ", h.version, ") implies ",
        static_cast<uint64_t>(expected > ~uint64_t{0} ? ~uint64_t{0} : expected),
        " bytes, the file has ", file->size(), layers));
  }

  Model m;
  m.config = c;
  m.source = path;
  m.layers.resize(c.n_layers);
  Cursor cur(file, h.data_offset);
  const int Ln = c.n_layers;
  auto set_linear = [&](LinearKind k, std::vector<Tensor> ts) {
    for (int l = 0; l < Ln; ++l) m.layers[l].linear[static_cast<int>(k)] = std::move(ts[l]);
  };
  auto set_norm = [&](Tensor LayerWeights::*field, std::vector<Tensor> ts) {
    for (int l = 0; l < Ln; ++l) m.layers[l].*field = std::move(ts[l]);
  };
  auto take_linear = [&](LinearKind k) {
    set_linear(k, cur.TakeLayers(LinearKindName(k), Ln, c.LinearRows(k), c.LinearCols(k)));
  };
  if (h.version == 0) {
    m.embedding = cur.Take("token_embedding", {c.vocab_size, c.dim});
    set_norm(&LayerWeights::attn_norm, cur.TakeLayers("attn_norm", Ln, c.dim, 0));
    take_linear(LinearKind::kQ);
    take_linear(LinearKind::kK);
    take_linear(LinearKind::kV);
    take_linear(LinearKind::kO);
    set_norm(&LayerWeights::ffn_norm, cur.TakeLayers("ffn_norm", Ln, c.dim, 0));
    take_linear(LinearKind::kGate);
    take_linear(LinearKind::kDown);
    take_linear(LinearKind::kUp);
    m.final_norm = cur.Take("final_norm", {c.dim});
    cur.Skip(static_cast<int64_t>(c.seq_len) * c.head_dim);  // freq_cis_real, freq_cis_imag
  } else {
    set_norm(&LayerWeights::attn_norm, cur.TakeLayers("attn_norm", Ln, c.dim, 0));
    set_norm(&LayerWeights::ffn_norm, cur.TakeLayers("ffn_norm", Ln, c.dim, 0));
    m.final_norm = cur.Take("final_norm", {c.dim});
    m.embedding = cur.Take("token_embedding", {c.vocab_size, c.dim});
    take_linear(LinearKind::kQ);
    take_linear(LinearKind::kK);
    take_linear(LinearKind::kV);
    take_linear(LinearKind::kO);
    take_linear(LinearKind::kGate);
    take_linear(LinearKind::kDown);
    take_linear(LinearKind::kUp);
  }
  m.output = h.shared_classifier ? m.embedding.WithName("output")
                                 : cur.Take("output", {c.vocab_size, c.dim});
  // Every weight finite, named with impq's name and llama2.c's array (run.c's names).
  auto finite = [&](const Tensor& t, const std::string& array, int layer) -> absl::Status {
    const std::string label = layer < 0 ? absl::StrCat(t.name(), " (", array, ")")
                                        : absl::StrCat(t.name(), " (", array, "[", layer, "])");
    if (absl::Status s = CheckFinite(t, label); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(finite(m.embedding, "token_embedding_table", -1));
  static constexpr const char* kArrays[kNumLinear] = {"wq", "wk", "wv", "wo", "w1", "w3", "w2"};
  for (int l = 0; l < Ln; ++l) {
    RETURN_IF_ERROR(finite(m.layers[l].attn_norm, "rms_att_weight", l));
    RETURN_IF_ERROR(finite(m.layers[l].ffn_norm, "rms_ffn_weight", l));
    for (int k = 0; k < kNumLinear; ++k) RETURN_IF_ERROR(finite(m.layers[l].linear[k], kArrays[k], l));
  }
  RETURN_IF_ERROR(finite(m.final_norm, "rms_final_weight", -1));
  if (!h.shared_classifier) RETURN_IF_ERROR(finite(m.output, "wcls", -1));
  if (absl::Status s = m.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return m;
}

}  // namespace impq::model
