#include "common/logging.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace impq {
namespace {

LogSeverity ThresholdFromEnv() {
  const char* env = std::getenv("IMPQ_LOG_LEVEL");
  if (env == nullptr) return LogSeverity::kInfo;
  std::string v(env);
  if (v == "DEBUG" || v == "debug") return LogSeverity::kDebug;
  if (v == "WARNING" || v == "warning") return LogSeverity::kWarning;
  if (v == "ERROR" || v == "error") return LogSeverity::kError;
  return LogSeverity::kInfo;
}

const char* SeverityLetter(LogSeverity s) {
  switch (s) {
    case LogSeverity::kDebug: return "D";
    case LogSeverity::kInfo: return "I";
    case LogSeverity::kWarning: return "W";
    case LogSeverity::kError: return "E";
    case LogSeverity::kFatal: return "F";
  }
  return "?";
}

}  // namespace

bool LogEnabled(LogSeverity severity) {
  static const LogSeverity threshold = ThresholdFromEnv();
  return severity >= threshold;
}

LogMessage::LogMessage(LogSeverity severity, const char* file, int line) : severity_(severity) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  const char* base = std::strrchr(file, '/');
  stream_ << SeverityLetter(severity) << buf << " " << (base ? base + 1 : file) << ":" << line
          << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  std::string s = stream_.str();
  ssize_t ignored = ::write(STDERR_FILENO, s.data(), s.size());
  (void)ignored;
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace impq
