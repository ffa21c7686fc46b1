#include "worker/model/sentencepiece_tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace impq::model {

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such SentencePiece model"));
  }
  // libsentencepiece opens the path itself, with a blocking open(). Open it here under
  // OpenRegularFile's rules (no FIFO, device or directory; never blocks) and hand the library
  // /proc/self/fd/N, which reopens this very regular file: no window in which the path could be
  // swapped for a FIFO between the check and the library's open.
  ASSIGN_OR_RETURN(RegularFile file, OpenRegularFile(path));
  absl::StatusOr<std::unique_ptr<SpmProcessor>> spm =
      SpmProcessor::Load(absl::StrCat("/proc/self/fd/", file.fd()));
  if (absl::IsInvalidArgument(spm.status())) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a SentencePiece model: ", spm.status().message()));
  }
  if (!spm.ok()) {  // the module's own errors name the module
    return absl::Status(spm.status().code(),
                        absl::StrCat(path, ": ", spm.status().message()));
  }
  return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(*std::move(spm)));
}

std::vector<int> SentencePieceTokenizer::Encode(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  std::string error;
  if (!spm_->Encode(text, &ids, &error)) ids.clear();
  if (add_bos && bos_id() >= 0) ids.insert(ids.begin(), bos_id());
  return ids;
}

std::string SentencePieceTokenizer::Decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int id : ids) {
    if (id >= 0 && id < vocab_size() && !spm_->IsControl(id)) kept.push_back(id);
  }
  std::string text, error;
  if (!spm_->Decode(kept, &text, &error)) return {};
  return text;
}

std::string SentencePieceTokenizer::Piece(int id) const {
  if (id < 0 || id >= vocab_size()) return absl::StrCat("<invalid ", id, ">");
  return spm_->IdToPiece(id);
}

}  // namespace impq::model
