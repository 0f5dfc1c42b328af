#ifndef RECUR_MODEL_STATUS_MACROS_H_
#define RECUR_MODEL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Early-return helpers in the style of Abseil's internal macros.
#define RECUR_CONCAT_INNER_(a, b) a##b
#define RECUR_CONCAT_(a, b) RECUR_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    const ::absl::Status recur_status_ = (expr);     \
    if (!recur_status_.ok()) return recur_status_;   \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(RECUR_CONCAT_(recur_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(statusor).value()

#endif  // RECUR_MODEL_STATUS_MACROS_H_
