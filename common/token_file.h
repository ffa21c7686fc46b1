// ReadTokenFile: a bearer token from a file (never argv, which `ps` shows): its contents
// without surrounding whitespace. Used by every binary that takes --token_file.
#ifndef IMPQ_COMMON_TOKEN_FILE_H_
#define IMPQ_COMMON_TOKEN_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace impq {

// InvalidArgument naming the file when it is empty (an empty token would turn auth off);
// ReadFileToString's errors otherwise.
inline absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the token file is empty"));
  }
  return token;
}

}  // namespace impq

#endif  // IMPQ_COMMON_TOKEN_FILE_H_
