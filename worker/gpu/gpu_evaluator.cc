#include "worker/gpu/gpu_evaluator.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "worker/gpu/gpu_model_reference.h"

namespace impq::gpu {

using model::LinearKind;

GpuEvaluator::GpuEvaluator(GpuRuntime* runtime, const quant::QuantizedModel& qmodel,
                           const eval::EvalSet& set, solver::WidthLadder ladder)
    : runtime_(runtime), qmodel_(qmodel), set_(set), ladder_(std::move(ladder)) {}

GpuEvaluator::~GpuEvaluator() {
  if (model_ != nullptr) runtime_->api().model_destroy(model_);
}

absl::Status GpuEvaluator::Check(int rc, const ImpqGpuError& err, absl::string_view what) {
  if (rc == IMPQ_GPU_EDEVICE) device_failed_ = true;
  return GpuRuntime::ToStatus(rc, err, what);
}

std::unique_ptr<const GpuModelDescription> MakeGpuModelDescription(const model::Model& m,
                                                                   int positions) {
  const model::ModelConfig& c = m.config;
  auto r = std::make_unique<GpuModelDescription>();
  r->tables = MakeGpuModelTables(m, positions);
  r->norms.resize(static_cast<size_t>(c.n_layers));
  auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  for (int l = 0; l < c.n_layers; ++l) {
    const GpuModelTables::Layer& t = r->tables.layers[l];
    r->norms[l] = ImpqGpuLayerNorms{ptr(t.attn), ptr(t.ffn),       ptr(t.q),
                                    ptr(t.k),    ptr(t.post_attn), ptr(t.post_ffn)};
  }
  ImpqGpuModelDesc& d = r->desc;
  d.dim = c.dim;
  d.hidden_dim = c.hidden_dim;
  d.n_layers = c.n_layers;
  d.n_heads = c.n_heads;
  d.n_kv_heads = c.n_kv_heads;
  d.head_dim = c.head_dim;
  d.vocab_size = c.vocab_size;
  d.seq_len = positions;
  d.norm_eps = c.norm_eps;
  d.rope_style = c.rope_style == model::RopeStyle::kInterleaved ? IMPQ_GPU_ROPE_INTERLEAVED
                                                                : IMPQ_GPU_ROPE_HALF;
  d.rope_cos = r->tables.rope_cos.data();
  d.rope_sin = r->tables.rope_sin.data();
  d.qk_norm = c.qk_norm ? 1 : 0;
  d.post_norms = c.post_norms ? 1 : 0;
  d.embed_scale = r->tables.embed_scale;
  d.ffn_activation = c.ffn_activation == model::FfnActivation::kGeluTanh ? IMPQ_GPU_ACT_GELU_TANH
                                                                         : IMPQ_GPU_ACT_SILU;
  d.attn_scale = c.AttentionScale();
  d.attn_logit_softcap = c.attn_logit_softcap;
  d.final_logit_softcap = c.final_logit_softcap;
  d.sliding_window = c.sliding_window;
  d.embedding = m.embedding.data();
  d.output = m.output.data();
  d.final_norm = r->tables.final_norm.data();
  d.layers = r->norms.data();
  return r;
}

absl::StatusOr<std::unique_ptr<GpuEvaluator>> GpuEvaluator::Create(
    GpuRuntime* runtime, int device, const quant::QuantizedModel& qmodel, const eval::EvalSet& set,
    const GpuEvaluatorOptions& options) {
  if (runtime == nullptr) return absl::InvalidArgumentError("GpuEvaluator: runtime is null");
  RETURN_IF_ERROR(runtime->DeviceInfo(device).status());
  const model::Model& m = qmodel.model();
  const model::ModelConfig& c = m.config;
  RETURN_IF_ERROR(eval::ValidateEvalSet(c, set, "GpuEvaluator evaluation set"));
  if (options.max_cache_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GpuEvaluatorOptions.max_cache_bytes = ", options.max_cache_bytes, "; expected >= 0"));
  }
  ASSIGN_OR_RETURN(solver::WidthLadder ladder,
                   solver::WidthLadder::Create(qmodel.num_players(), options.widths));
  for (int bits : options.widths) {
    if (!qmodel.HasWidth(bits)) {
      return absl::InvalidArgumentError(
          absl::StrCat("GpuEvaluator: width ", bits, " bits is not prepared by the quantized model "
                       "(widths [", absl::StrJoin(qmodel.widths(), ", "), "])"));
    }
  }
  // A plugin older than the widths (version 1 and 3 or 8 bits): refused here, by name, before
  // anything is uploaded.
  RETURN_IF_ERROR(
      GpuRuntime::CheckWidths(runtime->api_version(), runtime->plugin_path(), options.widths));
  std::unique_ptr<GpuEvaluator> ev(new GpuEvaluator(runtime, qmodel, set, std::move(ladder)));
  const ImpqGpuApi& api = runtime->api();

  // Everything but the linear modules, exactly as LlamaForward multiplies by it, for the
  // longest sequence of the set (ValidateEvalSet: <= seq_len).
  size_t longest = 2;
  for (const eval::EvalSequence& s : set.sequences) longest = std::max(longest, s.tokens.size());
  const std::unique_ptr<const GpuModelDescription> desc =
      MakeGpuModelDescription(m, static_cast<int>(longest));
  ImpqGpuError err{};
  RETURN_IF_ERROR(
      ev->Check(api.model_create(device, &desc->desc, &ev->model_, &err), err, "model_create"));

  for (int l = 0; l < c.n_layers; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      for (int bits : options.widths) {
        const quant::PackedTensor& p = qmodel.Packed(l, kind, bits);
        RETURN_IF_ERROR(ev->Check(
            api.model_set_linear_packed(ev->model_, l, k, bits, p.group_size, p.codes.data(),
                                        p.scales.data(), p.zeros.data(), &err),
            err,
            absl::StrCat("model_set_linear_packed(layers.", l, ".", model::LinearKindName(kind),
                         ", ", bits, " bits)")));
      }
      if (options.upload_full) {
        RETURN_IF_ERROR(ev->Check(
            api.model_set_linear_f32(ev->model_, l, k, m.layers[l][kind].data(), &err), err,
            absl::StrCat("model_set_linear_f32(layers.", l, ".", model::LinearKindName(kind),
                         ")")));
      }
    }
  }
  ev->full_uploaded_ = options.upload_full;

  std::vector<int32_t> tokens;
  tokens.reserve(static_cast<size_t>(set.processed_tokens));
  std::vector<int64_t> offsets = {0}, score_begin;
  for (const eval::EvalSequence& s : set.sequences) {
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    offsets.push_back(static_cast<int64_t>(tokens.size()));
    score_begin.push_back(s.score_begin);
  }
  RETURN_IF_ERROR(ev->Check(api.model_set_eval(ev->model_, tokens.data(), offsets.data(),
                                               static_cast<int64_t>(set.sequences.size()),
                                               score_begin.data(), options.max_cache_bytes, &err),
                            err, "model_set_eval"));
  return ev;
}

absl::StatusOr<std::vector<uint8_t>> VariantTable(const quant::QuantizedModel& qmodel,
                                                  std::span<const int> bits,
                                                  std::span<const int> held, bool full) {
  const int n = qmodel.num_players();
  if (static_cast<int>(bits.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("GpuEvaluator: ", bits.size(), " widths for ", n, " players"));
  }
  int widest = -1;
  for (int b : held) {
    if (impq_gpu_variant_of_bits(b) >= 0) widest = std::max(widest, b);
  }
  if (widest < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GpuEvaluator: no quantized width held (held: [", absl::StrJoin(held, ", "), "])"));
  }
  const model::ModelConfig& c = qmodel.model().config;
  std::vector<uint8_t> v(static_cast<size_t>(c.n_layers) * model::kNumLinear,
                         static_cast<uint8_t>(impq_gpu_variant_of_bits(widest)));
  for (int i = 0; i < n; ++i) {
    const int b = bits[i];
    int variant;
    if (b == 16 || b == 32) {
      if (!full) {
        return absl::FailedPreconditionError(absl::StrCat(
            "GpuEvaluator: player ", i, " at ", b,
            " bits needs the full-precision weights (GpuEvaluatorOptions.upload_full)"));
      }
      variant = IMPQ_GPU_VARIANT_FULL;
    } else if (std::find(held.begin(), held.end(), b) != held.end() &&
               impq_gpu_variant_of_bits(b) >= 0) {
      variant = impq_gpu_variant_of_bits(b);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("GpuEvaluator: player ", i, " at ", b, " bits; expected one of [",
                       absl::StrJoin(held, ", "), "] (the widths on the device) or 16/32"));
    }
    for (const quant::LinearRef& r : qmodel.players()[i].linears) {
      v[static_cast<size_t>(r.layer) * model::kNumLinear + static_cast<int>(r.kind)] =
          static_cast<uint8_t>(variant);
    }
  }
  return v;
}

absl::StatusOr<std::vector<uint8_t>> GpuEvaluator::Variants(std::span<const int> bits) const {
  return VariantTable(qmodel_, bits, ladder_.widths(), full_uploaded_);
}

absl::StatusOr<std::vector<double>> GpuEvaluator::Run(const std::vector<uint8_t>& variants) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<double> sums(set_.sequences.size(), 0.0);
  ImpqGpuError err{};
  RETURN_IF_ERROR(Check(runtime_->api().model_evaluate(model_, variants.data(), sums.data(), &err),
                        err, "model_evaluate"));
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return sums;
}

double GpuEvaluator::Mean(const std::vector<double>& sums) const {
  double total = 0.0;
  for (double s : sums) total += s;  // sequence order, as eval::Evaluator
  return total / static_cast<double>(set_.scored_tokens);
}

absl::StatusOr<std::vector<double>> GpuEvaluator::Evaluate(
    std::span<const solver::Coalition> coalitions) {
  std::vector<std::vector<uint8_t>> variants;
  variants.reserve(coalitions.size());
  for (const solver::Coalition& q : coalitions) {
    // The binary game: q_i = 1 is the narrower width; else the ladder's closed coalitions
    // (LocalEvaluator's ValidateCoalition and BitsOf, so both evaluators play one game).
    if (ladder_.binary()) {
      RETURN_IF_ERROR(solver::ValidateCoalition(q, num_players()));
    } else {
      RETURN_IF_ERROR(ladder_.ValidateClosed(q));
    }
    ASSIGN_OR_RETURN(const std::vector<int> bits, ladder_.BitsOf(q));
    ASSIGN_OR_RETURN(std::vector<uint8_t> v, Variants(bits));
    variants.push_back(std::move(v));
  }
  std::vector<double> losses;
  losses.reserve(variants.size());
  for (const std::vector<uint8_t>& v : variants) {
    ASSIGN_OR_RETURN(std::vector<double> sums, Run(v));
    losses.push_back(Mean(sums));
  }
  coalitions_ += static_cast<int64_t>(coalitions.size());
  return losses;
}

absl::StatusOr<std::vector<double>> GpuEvaluator::SequenceSums(std::span<const int> bits) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> v, Variants(bits));
  return Run(v);
}

absl::StatusOr<std::vector<double>> GpuEvaluator::SequenceSumsOfVariants(
    std::span<const uint8_t> variants) {
  const model::ModelConfig& c = qmodel_.model().config;
  const size_t expected = static_cast<size_t>(c.n_layers) * model::kNumLinear;
  if (variants.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GpuEvaluator: ", variants.size(), " variants; expected n_layers * 7 = ", expected));
  }
  return Run(std::vector<uint8_t>(variants.begin(), variants.end()));
}

absl::StatusOr<double> GpuEvaluator::NllOfBits(std::span<const int> bits) {
  ASSIGN_OR_RETURN(std::vector<double> sums, SequenceSums(bits));
  return Mean(sums);
}

absl::StatusOr<GpuEvaluatorStats> GpuEvaluator::stats() const {
  ImpqGpuEvalStats s{};
  ImpqGpuError err{};
  const int rc = runtime_->api().model_stats(model_, &s, &err);
  RETURN_IF_ERROR(GpuRuntime::ToStatus(rc, err, "model_stats"));
  GpuEvaluatorStats out;
  out.coalitions = coalitions_;
  out.block_evals_done = s.block_evals_done;
  out.block_evals_full = s.block_evals_full;
  out.cached_sequences = s.cached_sequences;
  out.cache_bytes = s.cache_bytes;
  out.resident_bytes = s.resident_bytes;
  out.seconds = seconds_;
  return out;
}

}  // namespace impq::gpu
