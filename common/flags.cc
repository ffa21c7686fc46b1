#include "common/flags.h"

#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace impq {

void FlagSet::String(const std::string& name, std::string* out, const std::string& help,
                     bool required) {
  flags_.push_back({name, help, out->empty() ? "" : *out, false, required, false,
                    [out](const std::string& v) {
                      *out = v;
                      return absl::OkStatus();
                    }});
}

void FlagSet::Int(const std::string& name, int64_t* out, const std::string& help) {
  flags_.push_back({name, help, absl::StrCat(*out), false, false, false,
                    [out, name](const std::string& v) {
                      if (!absl::SimpleAtoi(v, out)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, ": expected an integer, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagSet::Double(const std::string& name, double* out, const std::string& help) {
  flags_.push_back({name, help, absl::StrCat(*out), false, false, false,
                    [out, name](const std::string& v) {
                      if (!absl::SimpleAtod(v, out)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, ": expected a number, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

void FlagSet::Bool(const std::string& name, bool* out, const std::string& help) {
  flags_.push_back({name, help, *out ? "true" : "false", true, false, false,
                    [out, name](const std::string& v) {
                      if (v == "true" || v == "1" || v.empty()) {
                        *out = true;
                      } else if (v == "false" || v == "0") {
                        *out = false;
                      } else {
                        return absl::InvalidArgumentError(
                            absl::StrCat("--", name, ": expected true or false, got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

namespace {
// '-' and '_' are the same in flag names: --group-size == --group_size.
bool SameName(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
    if (x != y) return false;
  }
  return true;
}
}  // namespace

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (auto& f : flags_) {
    if (SameName(f.name, name)) return &f;
  }
  return nullptr;
}

bool FlagSet::WasSet(const std::string& name) const {
  for (const auto& f : flags_) {
    if (SameName(f.name, name)) return f.set;
  }
  return false;
}

std::optional<int> FlagSet::ParseMain(int argc, char** argv) {
  return ParseCommand(std::vector<std::string>(argv + 1, argv + argc));
}

std::optional<int> FlagSet::ParseCommand(const std::vector<std::string>& args) {
  if (absl::Status s = Parse(args); !s.ok()) {
    std::cerr << s.message() << "\n\n" << Usage();
    return 2;
  }
  if (help_) {
    std::cout << Usage();
    return 0;
  }
  return std::nullopt;
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
    if (a.size() < 3 || a.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(command_, ": unexpected argument '", a, "' (flags start with --)"));
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* f = Find(name);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(command_, ": unknown flag --", name, " (see --help)"));
    }
    if (!has_value && !f->is_bool) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(command_, ": --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (absl::Status s = f->assign(value); !s.ok()) return s;
    f->set = true;
  }
  for (const auto& f : flags_) {
    if (f.required && !f.set) {
      return absl::InvalidArgumentError(
          absl::StrCat(command_, ": missing required flag --", f.name, " (", f.help, ")"));
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat("usage: ", command_, " [flags]\n");
  for (const auto& f : flags_) {
    std::string left = absl::StrCat("  --", f.name, f.is_bool ? "" : " VALUE");
    if (left.size() < 24) left.resize(24, ' ');
    absl::StrAppend(&out, left, " ", f.help);
    if (f.required) {
      absl::StrAppend(&out, " (required)");
    } else if (!f.default_text.empty()) {
      absl::StrAppend(&out, " (default: ", f.default_text, ")");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace impq
