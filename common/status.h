// Status helpers used across every boundary of impq.
//
// Errors are absl::Status / absl::StatusOr<T>; no exception crosses a module boundary.
// A message names the file, field or tensor, the reason, and expected vs actual values.
#ifndef IMPQ_COMMON_STATUS_H_
#define IMPQ_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IMPQ_STATUS_CONCAT_INNER_(a, b) a##b
#define IMPQ_STATUS_CONCAT_(a, b) IMPQ_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the current function if not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status impq_status_ = (expr);             \
    if (!impq_status_.ok()) return impq_status_;      \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error returns the
// status, otherwise moves the value into `lhs` (which may be a declaration, e.g. `auto x`).
#define ASSIGN_OR_RETURN(lhs, expr) \
  IMPQ_ASSIGN_OR_RETURN_IMPL_(IMPQ_STATUS_CONCAT_(impq_statusor_, __LINE__), lhs, expr)
#define IMPQ_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

#endif  // IMPQ_COMMON_STATUS_H_
