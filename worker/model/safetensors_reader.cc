#include "worker/model/safetensors_reader.h"

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"
#include "worker/model/safetensors_file.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;

constexpr char kSingle[] = "model.safetensors";
constexpr char kIndex[] = "model.safetensors.index.json";

bool IsDir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}
bool Exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON: ", e.what()));
  }
}

// Which files make up the checkpoint: the index (sharded) or one safetensors file.
struct Layout {
  std::string dir;
  std::string index;   // set when sharded
  std::string single;  // set when not
};

absl::StatusOr<Layout> Resolve(const std::string& path) {
  Layout l;
  l.dir = HfModelDir(path);
  const std::string index = (fs::path(l.dir) / kIndex).string();
  if (IsDir(path)) {
    if (Exists(index)) {
      l.index = index;
    } else if (const std::string single = (fs::path(l.dir) / kSingle).string(); Exists(single)) {
      l.single = single;
    } else {
      return absl::NotFoundError(absl::StrCat(path, ": neither ", kSingle, " nor ", kIndex,
                                              " in the model directory"));
    }
  } else if (absl::EndsWith(path, ".index.json")) {
    l.index = path;
  } else if (fs::path(path).filename() != kSingle && Exists(index)) {
    l.index = index;  // one shard of a sharded checkpoint stands for the whole checkpoint
  } else {
    l.single = path;
  }
  return l;
}

}  // namespace

std::string HfModelDir(const std::string& path) {
  if (IsDir(path)) return path;
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

bool SafetensorsReader::Recognizes(const std::string& path, std::span<const uint8_t>) const {
  if (IsDir(path)) {
    return Exists((fs::path(path) / "config.json").string()) &&
           (Exists((fs::path(path) / kSingle).string()) ||
            Exists((fs::path(path) / kIndex).string()));
  }
  return absl::EndsWith(path, ".safetensors") || absl::EndsWith(path, ".safetensors.index.json");
}

absl::StatusOr<Model> SafetensorsReader::Read(const std::string& path) const {
  ASSIGN_OR_RETURN(Layout layout, Resolve(path));
  const std::string config_path = (fs::path(layout.dir) / "config.json").string();
  if (!Exists(config_path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no config.json in ", layout.dir,
                                            " (a safetensors model needs its Hugging Face "
                                            "config)"));
  }
  ASSIGN_OR_RETURN(nlohmann::json config, ReadJson(config_path));
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": must be a JSON object"));
  }
  const ModelArch* arch = nullptr;
  std::string named = "(none)";
  if (config.contains("architectures") && config["architectures"].is_array()) {
    named = config["architectures"].dump();
    for (const auto& a : config["architectures"]) {
      if (a.is_string() && (arch = FindArchByHfClass(a.get<std::string>())) != nullptr) break;
    }
  }
  if (arch == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": architectures ", named,
                                                   " not supported; supported: ",
                                                   SupportedHfClasses()));
  }
  ASSIGN_OR_RETURN(ModelConfig c, arch->ConfigFromHf(config, config_path));

  // Open the files; map each tensor name to the file holding it.
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files;  // by path
  std::map<std::string, std::string> weight_map;                  // tensor -> path (sharded)
  std::string source;
  if (!layout.index.empty()) {
    source = layout.index;
    ASSIGN_OR_RETURN(nlohmann::json index, ReadJson(layout.index));
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(layout.index,
                                                     ": needs a \"weight_map\" object"));
    }
    for (const auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(layout.index, ": weight_map entry ", name,
                                                       " must be a file name"));
      }
      const std::string file = shard.get<std::string>();
      if (file.empty() || fs::path(file).is_absolute() || absl::StrContains(file, "..")) {
        return absl::InvalidArgumentError(absl::StrCat(
            layout.index, ": weight_map entry ", name, " names \"", file,
            "\"; shards must be relative paths inside the model directory"));
      }
      const std::string shard_path = (fs::path(layout.dir) / file).string();
      if (!files.count(shard_path)) {
        ASSIGN_OR_RETURN(files[shard_path], SafetensorsFile::Open(shard_path));
      }
      weight_map[name] = shard_path;
    }
  } else {
    source = layout.single;
    ASSIGN_OR_RETURN(files[layout.single], SafetensorsFile::Open(layout.single));
  }

  TensorSource src;
  src.path = source;
  if (layout.index.empty()) {
    for (const auto& [name, e] : files.begin()->second->entries()) src.names.push_back(name);
  } else {
    for (const auto& [name, shard] : weight_map) src.names.push_back(name);
  }
  src.file_name = [arch](TensorRole role, int layer) { return arch->HfTensorName(role, layer); };
  src.field = HfFieldSpelling();
  src.fetch = [&](TensorRole role, int layer) -> absl::StatusOr<Tensor> {
    const std::string name = arch->HfTensorName(role, layer);
    if (layout.index.empty()) return files.begin()->second->ReadTensor(name);
    auto it = weight_map.find(name);
    if (it == weight_map.end()) {
      return absl::NotFoundError(absl::StrCat(layout.index, ": tensor ", name,
                                              " is missing from weight_map"));
    }
    const SafetensorsFile& f = *files.at(it->second);
    if (!f.Has(name)) {
      return absl::InvalidArgumentError(absl::StrCat(layout.index, " maps tensor ", name,
                                                     " to ", it->second,
                                                     ", which does not hold it"));
    }
    return f.ReadTensor(name);
  };
  return AssembleModel(c, src);
}

}  // namespace impq::model
