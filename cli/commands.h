// The `impq` subcommands. Each takes its arguments (after the subcommand name) and returns
// the process exit code: 0 success, 1 runtime failure, 2 bad usage.
#ifndef IMPQ_CLI_COMMANDS_H_
#define IMPQ_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace impq::cli {

int EvalCommand(const std::vector<std::string>& args);
int ExportCommand(const std::vector<std::string>& args);
int QuantizeEvalCommand(const std::vector<std::string>& args);
int RunCommand(const std::vector<std::string>& args);
int ReportCommand(const std::vector<std::string>& args);

// Directory of the shared data: $IMPQ_SHARED_DATA, else ../shared/data.
std::string SharedDataDir();

}  // namespace impq::cli

#endif  // IMPQ_CLI_COMMANDS_H_
