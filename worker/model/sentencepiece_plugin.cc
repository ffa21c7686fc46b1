// libimpq_sentencepiece.so: Debian's libsentencepiece behind the C ABI of
// sentencepiece_plugin_abi.h. Built as a MODULE and dlopen()ed by sentencepiece_shim.cc; see
// the ABI header for why.
//
// No Abseil header may be included here: sentencepiece_processor.h declares
// `namespace absl { using std::string_view; }`, which collides with Debian's Abseil.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "worker/model/sentencepiece_plugin_abi.h"

struct ImpqSpmProcessor {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

// A malloc'ed, NUL-terminated copy (released by free_buffer); nullptr if out of memory.
char* CopyOut(const std::string& s, size_t* len = nullptr) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  if (len != nullptr) *len = s.size();
  return out;
}

void SetError(char** error, const std::string& message) {
  if (error != nullptr) *error = CopyOut(message);
}

ImpqSpmProcessor* Load(const char* path, char** error) {
  try {
    auto* p = new ImpqSpmProcessor;
    const auto status = p->processor.Load(path);
    if (!status.ok()) {
      SetError(error, status.ToString());
      delete p;
      return nullptr;
    }
    return p;
  } catch (const std::exception& e) {
    SetError(error, e.what());
  } catch (...) {
    SetError(error, "unknown exception in libsentencepiece");
  }
  return nullptr;
}

void Destroy(ImpqSpmProcessor* p) { delete p; }
int PieceSize(const ImpqSpmProcessor* p) { return p->processor.GetPieceSize(); }
int BosId(const ImpqSpmProcessor* p) { return p->processor.bos_id(); }
int EosId(const ImpqSpmProcessor* p) { return p->processor.eos_id(); }

int Encode(const ImpqSpmProcessor* p, const char* text, size_t len, int** ids, size_t* count,
           char** error) {
  *ids = nullptr;
  *count = 0;
  try {
    std::vector<int> out;
    const auto status = p->processor.Encode(std::string_view(text, len), &out);
    if (!status.ok()) {
      SetError(error, status.ToString());
      return 0;
    }
    if (!out.empty()) {
      *ids = static_cast<int*>(std::malloc(out.size() * sizeof(int)));
      if (*ids == nullptr) {
        SetError(error, "out of memory");
        return 0;
      }
      std::memcpy(*ids, out.data(), out.size() * sizeof(int));
    }
    *count = out.size();
    return 1;
  } catch (const std::exception& e) {
    SetError(error, e.what());
  } catch (...) {
    SetError(error, "unknown exception in libsentencepiece");
  }
  return 0;
}

int Decode(const ImpqSpmProcessor* p, const int* ids, size_t count, char** text, size_t* len,
           char** error) {
  *text = nullptr;
  *len = 0;
  try {
    std::string out;
    const auto status = p->processor.Decode(std::vector<int>(ids, ids + count), &out);
    if (!status.ok()) {
      SetError(error, status.ToString());
      return 0;
    }
    *text = CopyOut(out, len);
    if (*text == nullptr) {
      SetError(error, "out of memory");
      return 0;
    }
    return 1;
  } catch (const std::exception& e) {
    SetError(error, e.what());
  } catch (...) {
    SetError(error, "unknown exception in libsentencepiece");
  }
  return 0;
}

int IdToPiece(const ImpqSpmProcessor* p, int id, char** piece, size_t* len) {
  try {
    *piece = CopyOut(p->processor.IdToPiece(id), len);
    return *piece != nullptr;
  } catch (...) {
    *piece = nullptr;
    return 0;
  }
}

float Score(const ImpqSpmProcessor* p, int id) { return p->processor.GetScore(id); }
int IsControl(const ImpqSpmProcessor* p, int id) { return p->processor.IsControl(id) ? 1 : 0; }
void FreeBuffer(void* buffer) { std::free(buffer); }

constexpr ImpqSpmApi kApi = {
    IMPQ_SPM_ABI_VERSION, Load, Destroy, PieceSize, BosId,     EosId,    Encode,
    Decode,               IdToPiece, Score, IsControl, FreeBuffer,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ImpqSpmApi* impq_spm_get_api(void) {
  return &kApi;
}
