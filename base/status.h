#ifndef RECUR_BASE_STATUS_H_
#define RECUR_BASE_STATUS_H_

// recur's one status vocabulary: early-return macros in the style of Abseil's internal ones, and
// Annotate, which adds context to a message and keeps the code (a missing file stays NOT_FOUND),
// and Excerpt, which bounds what of a client's input a message quotes.

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace recur {

// `status` with "<context>: " before its message and the same code; OK stays OK.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

// Client-supplied text fit for a status message: at most `max_bytes` of it, escaped, and its full
// length when cut. Unbounded input echoed into a message can overflow the client's metadata limits.
inline std::string Excerpt(absl::string_view text, size_t max_bytes = 64) {
  std::string out = absl::CHexEscape(text.substr(0, max_bytes));
  if (text.size() > max_bytes) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

}  // namespace recur

#define RECUR_CONCAT_INNER_(a, b) a##b
#define RECUR_CONCAT_(a, b) RECUR_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function unless it is OK.
#define RECUR_RETURN_IF_ERROR(expr)                \
  do {                                             \
    const ::absl::Status recur_status_ = (expr);   \
    if (!recur_status_.ok()) return recur_status_; \
  } while (0)

// Evaluates `expr` (an absl::StatusOr<T>); on error returns its status, else moves the value into
// `lhs` (a declaration such as `auto x` or an existing variable).
#define RECUR_ASSIGN_OR_RETURN(lhs, expr) \
  RECUR_ASSIGN_OR_RETURN_IMPL_(RECUR_CONCAT_(recur_statusor_, __LINE__), lhs, expr)

#define RECUR_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return statusor.status();           \
  lhs = std::move(statusor).value()

#endif  // RECUR_BASE_STATUS_H_
