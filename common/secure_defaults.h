// The start-up rule impq-coordinator and impq-worker share (issue 20, "secure by default"):
// the --data_root flag's directories, and the refusal to start while something that keeps an
// anonymous caller out is missing, unless --insecure.
#ifndef IMPQ_COMMON_SECURE_DEFAULTS_H_
#define IMPQ_COMMON_SECURE_DEFAULTS_H_

#include <sys/stat.h>

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace impq {

// The comma-separated directories of a --data_root flag, empty entries skipped.
// InvalidArgument naming the flag and the entry when one is not an existing directory.
inline absl::StatusOr<std::vector<std::string>> ParseDataRoots(const std::string& flag_value) {
  std::vector<std::string> roots;
  for (absl::string_view r : absl::StrSplit(flag_value, ',', absl::SkipEmpty())) {
    std::string root(r);
    struct stat st;
    if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--data_root: '", root, "' is not a directory"));
    }
    roots.push_back(std::move(root));
  }
  return roots;
}

// `missing` lists what is not configured, each entry saying how to configure it and what an
// anonymous caller could do meanwhile. Nothing missing: nullopt (go on). Otherwise the list
// goes to stderr, headed "refusing to start" and followed by `how_to` and how to override —
// exit code 2 — or, with `insecure`, headed by a loud WARNING, and nullopt (go on).
inline std::optional<int> RefuseToStartUnlessInsecure(const std::string& program,
                                                      const std::vector<std::string>& missing,
                                                      bool insecure, const std::string& how_to) {
  if (missing.empty()) return std::nullopt;
  std::cerr << program << ": "
            << (insecure ? "WARNING: running INSECURE (--insecure)" : "refusing to start")
            << ":\n";
  for (const std::string& m : missing) std::cerr << "  - " << m << "\n";
  if (insecure) return std::nullopt;
  std::cerr << how_to << "  Pass --insecure to start anyway (local experiments only).\n";
  return 2;
}

}  // namespace impq

#endif  // IMPQ_COMMON_SECURE_DEFAULTS_H_
