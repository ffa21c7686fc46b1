// A checksum that identifies a model's weights whatever file they were read from.
//
// `impq run` records it in its JSON; `impq export` compares it with the model it is asked to
// export for, so an allocation computed for one model is never applied to another that merely
// has the same shapes.
#ifndef IMPQ_WORKER_MODEL_FINGERPRINT_H_
#define IMPQ_WORKER_MODEL_FINGERPRINT_H_

#include <string>

#include "worker/model/model.h"

namespace impq::model {

// "fnv1a64:" + 16 lower-case hex digits: 64-bit FNV-1a over the architecture name, the shape
// fields of the config, and every tensor's float32 bit patterns in a fixed order (embedding;
// per layer the norms and the seven linears in LinearKind order; the final norm; the output
// head only when untied). Q and K rows are hashed in the interleaved (Meta / llama2.c / GGUF)
// rotary layout whatever layout the model stores, so the llama2.c, GGUF and Hugging Face
// files of one model give the same fingerprint; any changed weight bit (a BF16 copy, another
// checkpoint) gives another. REQUIRES: m.Validate().ok().
std::string WeightsFingerprint(const Model& m);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_FINGERPRINT_H_
