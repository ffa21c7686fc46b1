// SentencePiece through libimpq_sentencepiece.so, a module loaded at run time.
//
// Why: Debian's libsentencepiece bundles and exports its own protobuf-lite 3.14, which
// collides with the libprotobuf 3.21 of any process that also runs gRPC (the coordinator, the
// worker, `impq` itself). No impq binary links libsentencepiece: the first SentencePiece model
// loaded dlopen()s the module (sentencepiece_plugin.cc) with RTLD_LOCAL | RTLD_DEEPBIND, so its
// protobuf copy stays private to it and the process's libprotobuf is untouched (see
// sentencepiece_plugin_abi.h). Under a sanitizer runtime, which refuses RTLD_DEEPBIND, the
// module is loaded with RTLD_LOCAL only; that isolates it only while the process has no
// libprotobuf, and loading fails with FailedPrecondition otherwise.
//
// Where the module is looked for, first match wins:
//   1. $IMPQ_SENTENCEPIECE_MODULE (a path to the file; when set, nothing else is tried);
//   2. next to the executable:            <dir of /proc/self/exe>/libimpq_sentencepiece.so;
//   3. the images' install layout:  <dir of /proc/self/exe>/../lib/impq/libimpq_sentencepiece.so;
//   4. the build tree's module (its path is compiled in).
// A missing module is a NotFound error naming every path tried.
#ifndef IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_
#define IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

struct ImpqSpmApi;
struct ImpqSpmProcessor;

namespace impq::model {

inline constexpr char kSentencePieceModuleFile[] = "libimpq_sentencepiece.so";
inline constexpr char kSentencePieceModuleEnv[] = "IMPQ_SENTENCEPIECE_MODULE";

// The paths tried, in order (see the file comment).
std::vector<std::string> SentencePieceModuleCandidates();

// Loads the module at `path` (once per path and process; later calls return the same table).
// NotFound naming the file when it does not exist; FailedPrecondition naming it when dlopen()
// fails, the entry point is missing, its ABI version differs, or a sanitizer runtime prevents
// isolating it from a loaded libprotobuf.
absl::StatusOr<const ImpqSpmApi*> LoadSentencePieceModule(const std::string& path);

// The first candidate that exists, loaded. NotFound naming every candidate when none does;
// else LoadSentencePieceModule's errors.
absl::StatusOr<const ImpqSpmApi*> SentencePieceModule();

// One loaded SentencePiece model. Immutable after Load; thread-safe.
class SpmProcessor {
 public:
  // Loads a SentencePiece model (tokenizer.model). Errors: the module's (above), or
  // InvalidArgument with libsentencepiece's message when the file is not a model.
  static absl::StatusOr<std::unique_ptr<SpmProcessor>> Load(const std::string& path);
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  int piece_size() const;
  int bos_id() const;  // -1 when the model has none
  int eos_id() const;
  // False and `*error` set on failure.
  bool Encode(std::string_view text, std::vector<int>* ids, std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;
  // REQUIRES for the three below: 0 <= id < piece_size().
  std::string IdToPiece(int id) const;
  float Score(int id) const;
  bool IsControl(int id) const;

 private:
  SpmProcessor(const ImpqSpmApi* api, ImpqSpmProcessor* p) : api_(api), p_(p) {}
  const ImpqSpmApi* api_;
  ImpqSpmProcessor* p_;  // owned; released with api_->destroy
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_SENTENCEPIECE_SHIM_H_
