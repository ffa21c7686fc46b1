// impq export --from RUN.json [--budget B] [--method NAME] --format F --out PATH
//             [--model M] [--tokenizer T] [--threads K]
//
// Writes one allocation of an `impq run --json` file in a form another tool (or impq itself)
// applies: --format llama.cpp | gptqmodel | hqq | quanto (cli/allocation_export.h: PATH, plus
// for llama.cpp the notes PATH.notes.txt and for hqq the loader impq_hqq_apply.py beside PATH)
// or safetensors (a directory: impq's quantized checkpoint, worker/model/impq_checkpoint.h,
// which `impq eval --model PATH` loads). --budget picks the budget by its average bits (optional when
// the file holds one), --method the allocation (default: the budget's chosen one).
//
// --model M is the model the export is for. safetensors quantizes it (default: the run's model,
// by the absolute path the run recorded) with the run's backend and group size, GPTQ calibrated
// as the run calibrated (the first calibration_docs documents of its calibration text); the
// other formats only check it when given, and llama.cpp checks a GGUF M holds every tensor it
// names. The model must be the run's: the same config and, when the run recorded one, the same
// weights fingerprint (worker/model/fingerprint.h; the llama2.c, GGUF and HF files of one model
// agree).
//
// Everything is validated and built in memory before anything is written; each file (or the
// directory, built beside PATH and renamed into place) appears whole or not at all, and when
// one of several files cannot be written the ones already written are removed.
//
// Exit codes: 0 written; 2 bad input (unknown flag or format, a run file that is missing or not
// a run file, a budget or method not in it, another model's file, an existing non-empty --out
// directory, an allocation the format cannot express: 3-bit modules for quanto); 1 failure
// while quantizing or writing.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/allocation_export.h"
#include "cli/commands.h"
#include "cli/run_file.h"
#include "worker/engine/job_inputs.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/fingerprint.h"
#include "worker/model/gguf_file.h"
#include "worker/model/loader.h"
#include "worker/model/model_reader.h"
#include "worker/quant/quantized_checkpoint.h"
#include "worker/quant/quantized_model.h"

namespace impq::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormats[] = {"llama.cpp", "gptqmodel", "hqq", "quanto", "safetensors"};

bool Exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// The model the export is for: --model, else the run's (its recorded absolute path when that
// still exists, else the path as the run was given it).
std::string ModelPath(const RunFile& run, const std::string& flag) {
  if (!flag.empty()) return flag;
  if (!run.model.absolute_path.empty() && Exists(run.model.absolute_path)) {
    return run.model.absolute_path;
  }
  return run.model.path;
}

// The run's tokenizer: its recorded absolute path when that still exists, else the path as
// the run was given it (empty: the model's own).
std::string TokenizerPath(const RunFile& run) {
  if (!run.model.absolute_tokenizer.empty() && Exists(run.model.absolute_tokenizer)) {
    return run.model.absolute_tokenizer;
  }
  return run.model.tokenizer;
}

// OK when `m` is the model `run` measured; otherwise InvalidArgument saying what differs.
absl::Status CheckSameModel(const RunFile& run, const model::Model& m, const std::string& path) {
  const std::string config = m.config.ToString();
  if (config != run.model.config) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model ", path, " is not the model ", run.path, " was run on: its config is \"", config,
        "\", the run's model.config is \"", run.model.config, "\""));
  }
  if (!run.model.fingerprint.empty()) {
    const std::string fp = model::WeightsFingerprint(m);
    if (fp != run.model.fingerprint) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--model ", path, " is not the model ", run.path,
          " was run on: same config, other weights (fingerprint ", fp, ", the run's ",
          run.model.fingerprint, " in model.identity.fingerprint)"));
    }
  }
  return absl::OkStatus();
}

// llama.cpp: every tensor the export names must be in the GGUF the command will quantize.
absl::Status CheckGgufNames(const RunFile& run, const PickedAllocation& picked,
                            const std::string& gguf_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<model::GgufFile> g, model::GgufFile::Open(gguf_path));
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  for (const ModuleWidth& m : modules) {
    if (g->FindTensor(m.gguf_name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("--model ", gguf_path, " has no tensor ",
                                                     m.gguf_name));
    }
  }
  return absl::OkStatus();
}

// Writes `files` into a fresh directory `out`: built in a sibling temporary directory, then
// renamed, so `out` never holds a partial checkpoint. `out` must not exist or be empty.
absl::Status WriteDirectory(const std::string& out,
                            const std::map<std::string, std::string>& files) {
  const fs::path target = fs::path(out).lexically_normal();
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const fs::path tmp =
      parent / absl::StrCat(".", target.filename().string(), ".tmp-", ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec) || ec) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp.string(), ": ", ec.message()));
  }
  for (const auto& [name, contents] : files) {
    if (absl::Status s = WriteFileAtomically((tmp / name).string(), contents); !s.ok()) {
      fs::remove_all(tmp, ec);
      return s;
    }
  }
  if (fs::exists(target, ec)) fs::remove(target, ec);  // an empty directory (checked before)
  fs::rename(tmp, target, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove_all(tmp, ec);
    return absl::InternalError(absl::StrCat("cannot rename ", tmp.string(), " to ", out, ": ", why));
  }
  return absl::OkStatus();
}

// Writes each of `files` (path -> contents) atomically; when one fails, removes those already
// written, so that none or all appear (a file that existed before is not restored).
absl::Status WriteFiles(const std::map<std::string, std::string>& files) {
  std::vector<std::string> written;
  for (const auto& [path, contents] : files) {
    if (absl::Status s = WriteFileAtomically(path, contents); !s.ok()) {
      std::error_code ec;
      for (const std::string& w : written) fs::remove(w, ec);
      return s;
    }
    written.push_back(path);
  }
  return absl::OkStatus();
}

// The tokenizer file to ship in the checkpoint directory (name there, source), or nullopt when
// the tokenizer is not a separate file (a GGUF's embedded vocabulary).
std::optional<std::pair<std::string, std::string>> TokenizerFile(const std::string& path) {
  if (path.empty()) return std::nullopt;
  if (absl::EndsWith(path, ".model")) return std::make_pair(std::string("tokenizer.model"), path);
  if (absl::EndsWith(path, ".json")) return std::make_pair(std::string("tokenizer.json"), path);
  if (absl::EndsWith(path, ".gguf")) return std::nullopt;
  return std::make_pair(std::string("tokenizer.bin"), path);
}

}  // namespace

int ExportCommand(const std::vector<std::string>& args) {
  std::string from, method, format, out, model_flag, tokenizer_flag;
  double budget = 0;
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  FlagSet flags("impq export");
  flags.String("from", &from, "the file `impq run --json FILE` wrote", true);
  flags.Double("budget", &budget,
               "average bit-width of the budget to export (needed when the file holds several)");
  flags.String("method", &method, "allocation method (default: the budget's chosen one)");
  flags.String("format", &format, "llama.cpp | gptqmodel | hqq | quanto | safetensors", true);
  flags.String("out", &out, "output file (a directory for safetensors)", true);
  flags.String("model", &model_flag,
               "the model to export for (default: the run's); checked against the run");
  flags.String("tokenizer", &tokenizer_flag,
               "safetensors: the tokenizer to ship (default: the run's)");
  flags.Int("threads", &threads, "safetensors: threads for quantization");
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;
  auto bad_input = [](const absl::Status& s) {
    std::cerr << "impq export: " << s.message() << "\n";
    return 2;
  };
  auto fail = [](const absl::Status& s) {
    std::cerr << "impq export: " << s.message() << "\n";
    return 1;
  };
  bool known_format = false;
  for (const char* f : kFormats) known_format |= format == f;
  if (!known_format) {
    return bad_input(absl::InvalidArgumentError(absl::StrCat(
        "--format ", format, ": unknown (expected ", absl::StrJoin(kFormats, ", "), ")")));
  }
  if (threads < 1) {
    return bad_input(absl::InvalidArgumentError(absl::StrCat("--threads must be >= 1, got ", threads)));
  }
  absl::StatusOr<RunFile> run = ReadRunFile(from);
  if (!run.ok()) {
    return bad_input(absl::Status(run.status().code(),
                                  absl::StrCat("--from ", run.status().message())));
  }
  std::optional<double> want_budget;
  if (flags.WasSet("budget")) want_budget = budget;
  absl::StatusOr<PickedAllocation> picked = PickAllocation(*run, want_budget, method);
  if (!picked.ok()) return bad_input(picked.status());
  const bool directory = format == "safetensors";
  {
    std::error_code ec;
    if (directory && fs::exists(out, ec) &&
        (!fs::is_directory(out, ec) || !fs::is_empty(out, ec))) {
      return bad_input(absl::InvalidArgumentError(absl::StrCat(
          "--out ", out, " exists and is not an empty directory; remove it or pick another")));
    }
    if (!directory && fs::is_directory(out, ec)) {
      return bad_input(absl::InvalidArgumentError(absl::StrCat("--out ", out, " is a directory")));
    }
  }

  // The model: loaded for safetensors (it is quantized) and whenever --model is given (it is
  // checked against the run).
  const std::string model_path = ModelPath(*run, model_flag);
  std::optional<model::LoadedModel> loaded;
  if (directory) {
    const std::string tokenizer = !tokenizer_flag.empty() ? tokenizer_flag : TokenizerPath(*run);
    absl::StatusOr<model::LoadedModel> l = model::LoadModelAndTokenizer(model_path, tokenizer);
    if (!l.ok()) {
      return bad_input(absl::Status(l.status().code(),
                                    absl::StrCat("--model: ", l.status().message())));
    }
    loaded = *std::move(l);
  } else if (!model_flag.empty()) {
    absl::StatusOr<model::Model> m = model::LoadModel(model_path);
    if (!m.ok()) {
      return bad_input(absl::Status(m.status().code(),
                                    absl::StrCat("--model: ", m.status().message())));
    }
    loaded.emplace();
    loaded->model = *std::move(m);
  }
  if (loaded) {
    if (absl::Status s = CheckSameModel(*run, loaded->model, model_path); !s.ok()) {
      return bad_input(s);
    }
  }

  // The single-file formats: path -> contents (PATH and what is written beside it).
  absl::StatusOr<std::map<std::string, std::string>> text_files;
  std::map<std::string, std::string> files;
  const fs::path beside = fs::path(out).parent_path();
  if (format == "llama.cpp") {
    const bool gguf = absl::EndsWith(model_path, ".gguf");
    if (gguf && loaded) {
      if (absl::Status s = CheckGgufNames(*run, *picked, model_path); !s.ok()) return bad_input(s);
    }
    LlamaCppOptions o;
    o.input_gguf = gguf ? model_path : "MODEL-F16.gguf";
    o.output_gguf = absl::StrCat(gguf ? fs::path(model_path).stem().string() : "MODEL", "-impq-",
                                 FormatAverageBits(picked->budget->average_bits), ".gguf");
    o.types_file = out;
    absl::StatusOr<LlamaCppFiles> l = LlamaCppExport(*run, *picked, o);
    if (l.ok()) {
      text_files = std::map<std::string, std::string>{{out, l->types},
                                                      {out + ".notes.txt", l->notes}};
    } else {
      text_files = l.status();
    }
  } else if (format == "gptqmodel" || format == "quanto") {
    absl::StatusOr<std::string> t =
        format == "gptqmodel" ? GptqModelExport(*run, *picked) : QuantoExport(*run, *picked);
    if (t.ok()) {
      text_files = std::map<std::string, std::string>{{out, *t}};
    } else {
      text_files = t.status();
    }
  } else if (format == "hqq") {
    absl::StatusOr<HqqFiles> h = HqqExport(*run, *picked);
    if (h.ok()) {
      text_files = std::map<std::string, std::string>{
          {out, h->config}, {(beside / kHqqLoaderName).string(), h->loader}};
    } else {
      text_files = h.status();
    }
  } else {
    // safetensors: quantize as the run did, then pack the allocation.
    const model::Model& m = loaded->model;
    if (absl::StatusOr<std::unique_ptr<quant::Quantizer>> q = quant::MakeQuantizer(run->backend);
        !q.ok()) {
      return bad_input(absl::InvalidArgumentError(
          absl::StrCat("--from ", from, ": settings.backend: ", q.status().message())));
    }
    forward::LlamaForward fwd(m);
    std::optional<eval::EvalSet> calib_set;
    if (run->backend == "gptq") {
      const std::string calib_path = !run->absolute_calibration_text.empty() &&
                                             Exists(run->absolute_calibration_text)
                                         ? run->absolute_calibration_text
                                         : run->calibration_text;
      auto set = engine::LoadFirstSequences(*loaded->tokenizer, calib_path, run->mode, run->ctx,
                                            m.config.seq_len, run->calibration_docs);
      if (!set.ok()) {
        return bad_input(absl::Status(set.status().code(),
                                      absl::StrCat("the run's settings.calibration_text: ",
                                                   set.status().message())));
      }
      calib_set = *std::move(set);
    }
    // Quantized as the run did (engine::QuantizePlayers, the job's recipe), at the widths the
    // allocation uses.
    engine::QuantizeRecipe recipe;
    recipe.backend = run->backend;
    recipe.group_size = run->group_size;
    recipe.players = run->players;
    recipe.widths = quant::CheckpointWidths(picked->allocation->bits);
    recipe.calibration = calib_set ? &*calib_set : nullptr;
    recipe.threads = static_cast<int>(threads);
    auto qm = engine::QuantizePlayers(fwd, recipe);
    if (!qm.ok()) return fail(qm.status());
    const nlohmann::json provenance = {
        {"run_file", from},
        {"method", picked->allocation->method},
        {"average_bits", picked->budget->average_bits},
        {"budget_bytes", picked->budget->budget_bytes},
        {"model", model_path},
        {"model_fingerprint", model::WeightsFingerprint(m)}};
    auto built = quant::BuildQuantizedCheckpoint(**qm, picked->allocation->bits, provenance);
    if (!built.ok()) return bad_input(built.status());
    files = *std::move(built);
    if (auto tok = TokenizerFile(loaded->tokenizer_path)) {
      auto bytes = ReadFileToString(tok->second);
      if (!bytes.ok()) return fail(bytes.status());
      files[tok->first] = *std::move(bytes);
    } else {
      std::cerr << "impq export: note: the tokenizer (" << loaded->tokenizer_path
                << ") is not a separate file; pass it to `impq eval --tokenizer`\n";
    }
  }
  if (!directory && !text_files.ok()) return bad_input(text_files.status());

  absl::Status written = directory ? WriteDirectory(out, files) : WriteFiles(*text_files);
  if (!written.ok()) return fail(written);
  std::vector<std::string> names;
  for (const auto& [path, contents] : directory ? std::map<std::string, std::string>{{out, ""}}
                                                : *text_files) {
    names.push_back(path);
  }
  std::cerr << "impq export: wrote " << absl::StrJoin(names, ", ") << " (" << format << ", "
            << picked->Describe() << " from " << from << ")\n";
  return 0;
}

}  // namespace impq::cli
