#ifndef RECUR_SERVER_AUTHENTICATOR_H_
#define RECUR_SERVER_AUTHENTICATOR_H_

// Bearer-token authentication. recur-server's --auth_token_file holds one `token tenant` pair per
// line (blank lines and lines starting with '#' are skipped); a caller presents
// `authorization: Bearer <token>` and acts as that tenant, which owns the sessions it creates or
// imports. Without a token file every caller is the anonymous tenant "".
//
// Tokens are compared in constant time (against every token, so the time does not say which one
// nearly matched); no message ever quotes a token.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

class Authenticator {
 public:
  // Every caller is the anonymous tenant.
  Authenticator() = default;

  // Reads a token file: INVALID_ARGUMENT naming the line of a malformed entry (a line that is not
  // two fields, a token shorter than 16 characters, a repeated token, a tenant name outside
  // [A-Za-z0-9._-]{1,64}), NOT_FOUND when the file is missing.
  static absl::StatusOr<Authenticator> FromFile(const std::string& path);
  static absl::StatusOr<Authenticator> FromText(absl::string_view text);

  bool enabled() const { return !tokens_.empty(); }
  size_t tenants() const;

  // The caller's tenant, from the value of its `authorization` header ("" when absent):
  // UNAUTHENTICATED unless it is "Bearer <a known token>". Always "" when not enabled.
  absl::StatusOr<std::string> Authenticate(absl::string_view authorization) const;

 private:
  std::vector<std::pair<std::string, std::string>> tokens_;  // token, tenant
};

}  // namespace recur

#endif  // RECUR_SERVER_AUTHENTICATOR_H_
