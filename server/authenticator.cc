#include "server/authenticator.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/files.h"
#include "base/status.h"

namespace recur {

namespace {

constexpr size_t kMinTokenLength = 16;
constexpr size_t kMaxTenantLength = 64;
constexpr absl::string_view kBearer = "Bearer ";

bool IsTenantName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxTenantLength) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

// Equal contents, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) difference |= a[i] ^ b[i];
  return difference == 0;
}

}  // namespace

absl::StatusOr<Authenticator> Authenticator::FromFile(const std::string& path) {
  RECUR_ASSIGN_OR_RETURN(const std::string text, ReadFileContents(path));
  auto authenticator = FromText(text);
  if (!authenticator.ok()) return Annotate(authenticator.status(), path);
  return authenticator;
}

absl::StatusOr<Authenticator> Authenticator::FromText(absl::string_view text) {
  Authenticator authenticator;
  std::set<std::string> seen;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto error = [line_number](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", what));
    };
    if (fields.size() != 2) return error("expected two fields, `token tenant`");
    if (fields[0].size() < kMinTokenLength) {
      return error(absl::StrCat("the token is shorter than ", kMinTokenLength, " characters"));
    }
    if (!IsTenantName(fields[1])) {
      return error("the tenant name is not 1 to 64 characters of [A-Za-z0-9._-]");
    }
    if (!seen.insert(std::string(fields[0])).second) return error("the token is repeated");
    authenticator.tokens_.emplace_back(std::string(fields[0]), std::string(fields[1]));
  }
  if (authenticator.tokens_.empty()) {
    return absl::InvalidArgumentError("the token file holds no `token tenant` line");
  }
  return authenticator;
}

size_t Authenticator::tenants() const {
  std::set<absl::string_view> names;
  for (const auto& [token, tenant] : tokens_) names.insert(tenant);
  return names.size();
}

absl::StatusOr<std::string> Authenticator::Authenticate(absl::string_view authorization) const {
  if (!enabled()) return std::string();
  if (!absl::StartsWith(authorization, kBearer)) {
    return absl::UnauthenticatedError(
        "this server needs a bearer token: send the header 'authorization: Bearer <token>'");
  }
  const absl::string_view token = authorization.substr(kBearer.size());
  const std::string* tenant = nullptr;
  for (const auto& [known, owner] : tokens_) {
    if (ConstantTimeEquals(known, token) && tenant == nullptr) tenant = &owner;
  }
  if (tenant == nullptr) return absl::UnauthenticatedError("the bearer token is not valid");
  return *tenant;
}

}  // namespace recur
