#include "worker/model/sentencepiece_shim.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "worker/model/sentencepiece_plugin_abi.h"

namespace impq::model {
namespace {

// A sanitizer runtime intercepts dlopen() and aborts the process on RTLD_DEEPBIND
// (google/sanitizers#611).
bool SanitizerRuntimeLoaded() {
  for (const char* s : {"__asan_init", "__tsan_init", "__msan_init", "__lsan_init"}) {
    if (dlsym(RTLD_DEFAULT, s) != nullptr) return true;
  }
  return false;
}

// Whether a libprotobuf is in the process's global scope (any version exports this).
bool ProtobufLoaded() {
  return dlsym(RTLD_DEFAULT, "_ZN6google8protobuf8internal13VerifyVersionEiiPKc") != nullptr;
}

std::string ExecutableDir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// Owned by the process: modules are never unloaded (libsentencepiece has STB_GNU_UNIQUE
// symbols, which make dlclose a no-op anyway).
struct ModuleTable {
  absl::Mutex mu;
  std::map<std::string, const ImpqSpmApi*> loaded ABSL_GUARDED_BY(mu);
};

ModuleTable& Modules() {
  static ModuleTable* table = new ModuleTable;
  return *table;
}

// Takes ownership of a module-allocated string.
std::string TakeString(const ImpqSpmApi* api, char* s, size_t len) {
  std::string out = s != nullptr ? std::string(s, len) : std::string();
  api->free_buffer(s);
  return out;
}

std::string TakeError(const ImpqSpmApi* api, char* s) {
  if (s == nullptr) return "unknown error";
  std::string out(s);
  api->free_buffer(s);
  return out;
}

}  // namespace

std::vector<std::string> SentencePieceModuleCandidates() {
  if (const char* env = std::getenv(kSentencePieceModuleEnv); env != nullptr && *env != '\0') {
    return {env};
  }
  std::vector<std::string> out;
  if (const std::string dir = ExecutableDir(); !dir.empty()) {
    out.push_back(absl::StrCat(dir, "/", kSentencePieceModuleFile));
    out.push_back(absl::StrCat(dir, "/../lib/impq/", kSentencePieceModuleFile));
  }
#ifdef IMPQ_SENTENCEPIECE_MODULE_PATH
  out.push_back(IMPQ_SENTENCEPIECE_MODULE_PATH);
#endif
  return out;
}

absl::StatusOr<const ImpqSpmApi*> LoadSentencePieceModule(const std::string& path) {
  ModuleTable& table = Modules();
  absl::MutexLock lock(&table.mu);
  if (auto it = table.loaded.find(path); it != table.loaded.end()) return it->second;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("SentencePiece module ", path, ": no such file"));
  }
  int flags = RTLD_NOW | RTLD_LOCAL;
  if (!SanitizerRuntimeLoaded()) {
    flags |= RTLD_DEEPBIND;
  } else if (ProtobufLoaded()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SentencePiece module ", path,
        ": cannot be isolated from this process's libprotobuf under a sanitizer runtime "
        "(sanitizers refuse RTLD_DEEPBIND); load SentencePiece models in a process without "
        "protobuf"));
  }
  dlerror();
  void* handle = dlopen(path.c_str(), flags);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("SentencePiece module ", path,
                                                      ": dlopen failed: ",
                                                      why != nullptr ? why : "unknown error"));
  }
  auto get_api = reinterpret_cast<ImpqSpmGetApiFn>(dlsym(handle, "impq_spm_get_api"));
  if (get_api == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SentencePiece module ", path, ": no impq_spm_get_api symbol (not an impq module)"));
  }
  const ImpqSpmApi* api = get_api();
  if (api == nullptr || api->abi_version != IMPQ_SPM_ABI_VERSION) {
    return absl::FailedPreconditionError(
        absl::StrCat("SentencePiece module ", path, ": ABI version ",
                     api == nullptr ? -1 : api->abi_version, ", expected ", IMPQ_SPM_ABI_VERSION,
                     " (a module from another build)"));
  }
  table.loaded.emplace(path, api);
  return api;
}

absl::StatusOr<const ImpqSpmApi*> SentencePieceModule() {
  const std::vector<std::string> candidates = SentencePieceModuleCandidates();
  for (const std::string& c : candidates) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(c, ec)) return LoadSentencePieceModule(c);
  }
  return absl::NotFoundError(absl::StrCat(
      "SentencePiece module ", kSentencePieceModuleFile, " not found; tried: ",
      candidates.empty() ? std::string("(nothing)") : absl::StrJoin(candidates, ", "),
      ". Build the impq_sentencepiece target, install the module next to the executable, or set ",
      kSentencePieceModuleEnv, " to its path"));
}

absl::StatusOr<std::unique_ptr<SpmProcessor>> SpmProcessor::Load(const std::string& path) {
  absl::StatusOr<const ImpqSpmApi*> api = SentencePieceModule();
  if (!api.ok()) return api.status();
  char* error = nullptr;
  ImpqSpmProcessor* p = (*api)->load(path.c_str(), &error);
  if (p == nullptr) {
    return absl::InvalidArgumentError(TakeError(*api, error));
  }
  return std::unique_ptr<SpmProcessor>(new SpmProcessor(*api, p));
}

SpmProcessor::~SpmProcessor() { api_->destroy(p_); }

int SpmProcessor::piece_size() const { return api_->piece_size(p_); }
int SpmProcessor::bos_id() const { return api_->bos_id(p_); }
int SpmProcessor::eos_id() const { return api_->eos_id(p_); }

bool SpmProcessor::Encode(std::string_view text, std::vector<int>* ids, std::string* error) const {
  int* out = nullptr;
  size_t count = 0;
  char* err = nullptr;
  if (!api_->encode(p_, text.data(), text.size(), &out, &count, &err)) {
    *error = TakeError(api_, err);
    return false;
  }
  ids->assign(out, out + count);
  api_->free_buffer(out);
  return true;
}

bool SpmProcessor::Decode(const std::vector<int>& ids, std::string* text,
                          std::string* error) const {
  char* out = nullptr;
  size_t len = 0;
  char* err = nullptr;
  if (!api_->decode(p_, ids.data(), ids.size(), &out, &len, &err)) {
    *error = TakeError(api_, err);
    return false;
  }
  *text = TakeString(api_, out, len);
  return true;
}

std::string SpmProcessor::IdToPiece(int id) const {
  char* out = nullptr;
  size_t len = 0;
  if (!api_->id_to_piece(p_, id, &out, &len)) return {};
  return TakeString(api_, out, len);
}

float SpmProcessor::Score(int id) const { return api_->score(p_, id); }
bool SpmProcessor::IsControl(int id) const { return api_->is_control(p_, id) != 0; }

}  // namespace impq::model
