// The C ABI of libimpq_sentencepiece.so, the module that holds Debian's libsentencepiece.
//
// Why a module: libsentencepiece.so.0 (Debian 0.1.97) bundles and exports its own copy of
// protobuf-lite 3.14. Linked into a process that also loads libprotobuf 3.21 (gRPC, the
// service's messages), the two copies interpose on each other: protobuf's static
// initialisers crash before main() when libsentencepiece comes first, and a tokenizer.model
// fails protobuf's version check when libprotobuf comes first. The host (sentencepiece_shim.cc)
// therefore never links libsentencepiece; it dlopen()s this module with RTLD_LOCAL (nothing of
// it joins the global scope) and RTLD_DEEPBIND (libsentencepiece's own references resolve to
// its own protobuf-lite before the process's libprotobuf). Only `impq_spm_get_api` is
// exported, and only plain C types cross the boundary; no C++ exception does.
//
// Ownership: a processor from `load` is released with `destroy`; every buffer or string the
// module returns through an out-pointer (`ids`, `text`, `piece`, `error`) is released with
// `free_buffer`. All functions taking a processor are thread-safe for concurrent calls on the
// same processor (SentencePieceProcessor's encode/decode are const).
#ifndef IMPQ_WORKER_MODEL_SENTENCEPIECE_PLUGIN_ABI_H_
#define IMPQ_WORKER_MODEL_SENTENCEPIECE_PLUGIN_ABI_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped on any change of ImpqSpmApi; the host refuses a module with another version.
#define IMPQ_SPM_ABI_VERSION 1

typedef struct ImpqSpmProcessor ImpqSpmProcessor;

typedef struct ImpqSpmApi {
  int abi_version;  // IMPQ_SPM_ABI_VERSION of the module
  // Loads a SentencePiece model file. NULL on failure, with *error set (NUL-terminated).
  ImpqSpmProcessor* (*load)(const char* path, char** error);
  void (*destroy)(ImpqSpmProcessor* p);
  int (*piece_size)(const ImpqSpmProcessor* p);
  int (*bos_id)(const ImpqSpmProcessor* p);  // -1 when the model has none
  int (*eos_id)(const ImpqSpmProcessor* p);
  // Encodes text[0, len) into *ids (*count ids). 1 on success; 0 with *error set.
  int (*encode)(const ImpqSpmProcessor* p, const char* text, size_t len, int** ids,
                size_t* count, char** error);
  // Decodes ids[0, count) into *text (*len bytes, NUL-terminated). 1 on success; 0 with *error.
  int (*decode)(const ImpqSpmProcessor* p, const int* ids, size_t count, char** text,
                size_t* len, char** error);
  // The piece of `id` into *piece (*len bytes, NUL-terminated). 1 on success, 0 on failure.
  int (*id_to_piece)(const ImpqSpmProcessor* p, int id, char** piece, size_t* len);
  float (*score)(const ImpqSpmProcessor* p, int id);
  int (*is_control)(const ImpqSpmProcessor* p, int id);
  void (*free_buffer)(void* buffer);  // NULL is allowed
} ImpqSpmApi;

// The module's only exported symbol.
const ImpqSpmApi* impq_spm_get_api(void);
typedef const ImpqSpmApi* (*ImpqSpmGetApiFn)(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // IMPQ_WORKER_MODEL_SENTENCEPIECE_PLUGIN_ABI_H_
