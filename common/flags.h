// Command-line flags for subcommands (`impq eval --model M ...`).
//
// Each subcommand registers its flags on a FlagSet bound to variables, then parses its
// arguments. Accepted forms: `--name value`, `--name=value`, and `--name` for booleans.
// '-' and '_' are interchangeable in names (--group-size is --group_size).
// Errors (unknown flag, missing value, unparsable number, missing required flag) name the flag.
// Thread-compatible.
#ifndef IMPQ_COMMON_FLAGS_H_
#define IMPQ_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace impq {

class FlagSet {
 public:
  explicit FlagSet(std::string command) : command_(std::move(command)) {}

  void String(const std::string& name, std::string* out, const std::string& help,
              bool required = false);
  void Int(const std::string& name, int64_t* out, const std::string& help);
  void Double(const std::string& name, double* out, const std::string& help);
  void Bool(const std::string& name, bool* out, const std::string& help);

  // Parses `args` (without the program and subcommand names). Positional arguments are an
  // error. `--help` sets help_requested() and stops.
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_; }
  // True when the flag was given on the command line.
  bool WasSet(const std::string& name) const;

  // Usage text: the command and every flag with its help and default.
  std::string Usage() const;

  // For a program's main(): parses argv[1..]. On an error prints it and the usage to stderr
  // and returns 2; on --help prints the usage to stdout and returns 0; otherwise returns
  // nullopt (go on).
  std::optional<int> ParseMain(int argc, char** argv);
  // The same for a subcommand's arguments (those after `impq <command>`).
  std::optional<int> ParseCommand(const std::vector<std::string>& args);

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    bool required = false;
    bool set = false;
    std::function<absl::Status(const std::string&)> assign;
  };
  Flag* Find(const std::string& name);

  std::string command_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

}  // namespace impq

#endif  // IMPQ_COMMON_FLAGS_H_
