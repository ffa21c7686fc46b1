#include "job/facts_proto.h"

#include "absl/strings/str_format.h"
#include "worker/model/fingerprint.h"

namespace impq::job {

v1::GameFacts FactsToProto(const GameFacts& f) {
  v1::GameFacts out;
  out.set_model_config(f.model_config);
  out.set_fingerprint(f.fingerprint);
  out.set_linear_weights(f.linear_weights);
  for (const std::string& name : f.player_names) out.add_player_names(name);
  for (int64_t b : f.bytes2) out.add_bytes2(b);
  for (int64_t b : f.bytes4) out.add_bytes4(b);
  for (int64_t b : f.width_bytes) out.add_width_bytes(b);
  out.set_calib_sequences(f.calib_sequences);
  out.set_calib_tokens(f.calib_tokens);
  out.set_calib_processed_tokens(f.calib_processed_tokens);
  out.set_select_sequences(f.select_sequences);
  out.set_select_tokens(f.select_tokens);
  out.set_select_on_calibration(f.select_on_calibration);
  for (int64_t t : f.select_sequence_tokens) out.add_select_sequence_tokens(t);
  out.set_heldout_sequences(f.heldout_sequences);
  out.set_heldout_tokens(f.heldout_tokens);
  out.set_heldout_processed_tokens(f.heldout_processed_tokens);
  for (double x : f.lim) out.add_lim(x);
  for (double x : f.zscore) out.add_zscore(x);
  for (double x : f.actnorm) out.add_actnorm(x);
  out.set_heldout_nll_fp32(f.heldout_nll_fp32);
  out.set_load_seconds(f.load_seconds);
  out.set_quantize_seconds(f.quantize_seconds);
  return out;
}

GameFacts FactsFromProto(const v1::GameFacts& f) {
  GameFacts out;
  out.model_config = f.model_config();
  out.fingerprint = f.fingerprint();
  out.linear_weights = f.linear_weights();
  out.player_names.assign(f.player_names().begin(), f.player_names().end());
  out.bytes2.assign(f.bytes2().begin(), f.bytes2().end());
  out.bytes4.assign(f.bytes4().begin(), f.bytes4().end());
  out.width_bytes.assign(f.width_bytes().begin(), f.width_bytes().end());
  out.calib_sequences = f.calib_sequences();
  out.calib_tokens = f.calib_tokens();
  out.calib_processed_tokens = f.calib_processed_tokens();
  out.select_sequences = f.select_sequences();
  out.select_tokens = f.select_tokens();
  out.select_on_calibration = f.select_on_calibration();
  out.select_sequence_tokens.assign(f.select_sequence_tokens().begin(),
                                    f.select_sequence_tokens().end());
  out.heldout_sequences = f.heldout_sequences();
  out.heldout_tokens = f.heldout_tokens();
  out.heldout_processed_tokens = f.heldout_processed_tokens();
  out.lim.assign(f.lim().begin(), f.lim().end());
  out.zscore.assign(f.zscore().begin(), f.zscore().end());
  out.actnorm.assign(f.actnorm().begin(), f.actnorm().end());
  out.heldout_nll_fp32 = f.heldout_nll_fp32();
  out.load_seconds = f.load_seconds();
  out.quantize_seconds = f.quantize_seconds();
  return out;
}

std::string FactsDigest(const GameFacts& f) {
  model::Fnv1a64 h;
  h.Str(f.model_config);
  h.Str(f.fingerprint);
  h.Int(f.linear_weights);
  h.Int(static_cast<int64_t>(f.player_names.size()));
  for (const std::string& name : f.player_names) h.Str(name);
  for (const std::vector<int64_t>* v :
       {&f.bytes2, &f.bytes4, &f.width_bytes, &f.select_sequence_tokens}) {
    h.Int(static_cast<int64_t>(v->size()));
    for (int64_t x : *v) h.Int(x);
  }
  for (int64_t x : {f.calib_sequences, f.calib_tokens, f.calib_processed_tokens,
                    f.select_sequences, f.select_tokens, int64_t{f.select_on_calibration},
                    f.heldout_sequences, f.heldout_tokens, f.heldout_processed_tokens}) {
    h.Int(x);
  }
  return absl::StrFormat("facts:%016x", h.value());
}

}  // namespace impq::job
