#include "worker/model/gguf_reader.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/model/model_arch.h"

namespace impq::model {

bool GgufReader::Recognizes(const std::string& path, std::span<const uint8_t> head) const {
  if (head.size() >= 4 && head[0] == 'G' && head[1] == 'G' && head[2] == 'U' && head[3] == 'F') {
    return true;
  }
  return absl::EndsWith(path, ".gguf");
}

absl::StatusOr<Model> GgufReader::Read(const std::string& path) const {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  return FromFile(*gguf);
}

absl::StatusOr<Model> GgufReader::FromFile(const GgufFile& gguf) {
  ASSIGN_OR_RETURN(std::string arch_name, gguf.GetString("general.architecture"));
  const ModelArch* arch = FindArchByGguf(arch_name);
  if (arch == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": general.architecture \"",
                                                   arch_name, "\" not supported; supported: ",
                                                   SupportedGgufArchs()));
  }
  ASSIGN_OR_RETURN(ModelConfig c, arch->ConfigFromGguf(gguf));
  TensorSource src;
  src.path = gguf.path();
  for (const GgufTensorInfo& t : gguf.tensors()) src.names.push_back(t.name);
  src.file_name = [arch](TensorRole role, int layer) { return arch->GgufTensorName(role, layer); };
  src.fetch = [&](TensorRole role, int layer) {
    return gguf.ReadTensor(arch->GgufTensorName(role, layer));
  };
  src.field = GgufFieldSpelling(arch_name);
  return AssembleModel(c, src);
}

}  // namespace impq::model
