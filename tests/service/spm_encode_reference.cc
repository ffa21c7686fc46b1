// The SentencePiece reference for sentencepiece_isolation_test: a process WITHOUT protobuf
// (links impq_model and impq_eval only) that loads a tokenizer and prints, per document of a
// text, the encoded ids (BOS first). First line: "protobuf: absent" or "protobuf: loaded", so
// the test can check this process really has no libprotobuf.
//
//   spm_encode_reference TOKENIZER TEXT
#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/file_util.h"
#include "worker/eval/eval_set.h"
#include "worker/model/loader.h"

namespace {

int FindProtobuf(dl_phdr_info* info, size_t, void* found) {
  if (info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "libprotobuf") != nullptr) {
    *static_cast<bool*>(found) = true;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER TEXT\n", argv[0]);
    return 2;
  }
  bool protobuf = false;
  dl_iterate_phdr(FindProtobuf, &protobuf);
  std::printf("protobuf: %s\n", protobuf ? "loaded" : "absent");
  auto tok = impq::model::LoadTokenizer(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  auto text = impq::ReadFileToString(argv[2]);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
    return 1;
  }
  for (std::string_view doc : impq::eval::SplitDocuments(*text)) {
    std::string line;
    for (int id : (*tok)->Encode(doc, true)) line += std::to_string(id) + " ";
    std::printf("%s\n", line.c_str());
  }
  return 0;
}
