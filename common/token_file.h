// Bearer tokens from files (never argv, which `ps` shows): ReadTokenFile, and the flag-or-
// environment rule every binary that takes a token follows (ReadTokenFromFlagOrEnv).
#ifndef IMPQ_COMMON_TOKEN_FILE_H_
#define IMPQ_COMMON_TOKEN_FILE_H_

#include <cstdlib>
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

// a == b in time that depends only on the lengths (a secret's prefix does not leak through
// timing).
inline bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff |= static_cast<unsigned>(static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

// Environment variables naming token files (never the tokens: a file can be a mounted
// Secret with its own permissions). The clients' token: impq-coordinator's --token_file and
// impqctl's; the workers' token: impq-coordinator's --worker_token_file and impq-worker's
// --token_file.
inline constexpr char kTokenFileEnv[] = "IMPQ_TOKEN_FILE";
inline constexpr char kWorkerTokenFileEnv[] = "IMPQ_WORKER_TOKEN_FILE";

// The token of `flag` (e.g. "--token_file"): ReadTokenFile(file) when `file` is non-empty,
// else ReadTokenFile($env_var) when that variable is set and non-empty, else "" (no token
// configured). Errors start with the flag or the variable, then the file's error.
inline absl::StatusOr<std::string> ReadTokenFromFlagOrEnv(const std::string& flag,
                                                          const std::string& file,
                                                          const char* env_var) {
  std::string from = flag, path = file;
  if (path.empty()) {
    const char* env = std::getenv(env_var);
    if (env == nullptr || *env == '\0') return std::string();
    from = absl::StrCat("$", env_var);
    path = env;
  }
  absl::StatusOr<std::string> t = ReadTokenFile(path);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(from, ": ", t.status().message()));
  return t;
}

// The warning a binary prints when a token is given on its command line (deprecated flag
// `flag`): every local user sees argv in ps and /proc.
inline std::string ArgvTokenWarning(const std::string& program, const std::string& flag,
                                    const std::string& file_flag, const char* env_var) {
  return absl::StrCat(program, ": WARNING: ", flag,
                      " is deprecated: a token on the command line is visible to every local "
                      "user (ps, /proc/PID/cmdline); put it in a file (mode 0600) and pass ",
                      file_flag, " or set ", env_var, "\n");
}

}  // namespace impq

#endif  // IMPQ_COMMON_TOKEN_FILE_H_
