// Running commands from the end-to-end tests: a shell command line, its exit code and its
// output (stdout and stderr together).
#ifndef IMPQ_TESTS_SHELL_H_
#define IMPQ_TESTS_SHELL_H_

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace impq::tests {

struct ShellResult {
  int exit_code = -1;  // the command's exit status; 128 + the signal when killed; -1: not run
  std::string out;     // stdout and stderr together
};

// Runs `cmd` through /bin/sh with stderr joined to stdout.
inline ShellResult Shell(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {};
  ShellResult r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace impq::tests

#endif  // IMPQ_TESTS_SHELL_H_
