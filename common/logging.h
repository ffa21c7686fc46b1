// Minimal logging and invariant checks (Debian's Abseil has no absl/log).
//
//   IMPQ_LOG(INFO) << "loaded " << n << " tensors";
//   IMPQ_CHECK(x > 0) << "broken invariant";   // aborts: only for bugs, never for user input
//
// Log lines go to stderr with a UTC timestamp and severity. Thread-safe: each line is written
// with one write(2) call. The verbosity threshold comes from IMPQ_LOG_LEVEL (INFO by default).
#ifndef IMPQ_COMMON_LOGGING_H_
#define IMPQ_COMMON_LOGGING_H_

#include <sstream>

namespace impq {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// True when messages of `severity` are printed.
bool LogEnabled(LogSeverity severity);

class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Swallows the stream when logging is disabled.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace impq

#define IMPQ_LOG_SEVERITY_DEBUG ::impq::LogSeverity::kDebug
#define IMPQ_LOG_SEVERITY_INFO ::impq::LogSeverity::kInfo
#define IMPQ_LOG_SEVERITY_WARNING ::impq::LogSeverity::kWarning
#define IMPQ_LOG_SEVERITY_ERROR ::impq::LogSeverity::kError
#define IMPQ_LOG_SEVERITY_FATAL ::impq::LogSeverity::kFatal

#define IMPQ_LOG(sev)                                                  \
  !::impq::LogEnabled(IMPQ_LOG_SEVERITY_##sev)                         \
      ? (void)0                                                        \
      : ::impq::LogVoidify() &                                         \
            ::impq::LogMessage(IMPQ_LOG_SEVERITY_##sev, __FILE__, __LINE__).stream()

#define IMPQ_CHECK(cond)                                                               \
  (cond) ? (void)0                                                                     \
         : ::impq::LogVoidify() &                                                      \
               ::impq::LogMessage(::impq::LogSeverity::kFatal, __FILE__, __LINE__).stream() \
                   << "Check failed: " #cond " "

#endif  // IMPQ_COMMON_LOGGING_H_
