#include "base/session_id.h"

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace recur {

std::string NewSessionId(absl::string_view routing_key) {
  absl::BitGen gen;
  std::string id =
      absl::StrFormat("s-%016x%016x", absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen));
  if (routing_key.size() == kRoutingKeyLength) {
    id.replace(0, kRoutingKeyLength, std::string(routing_key));
  }
  return id;
}

bool IsSessionId(absl::string_view id) {
  if (id.size() != kSessionIdLength || !absl::StartsWith(id, "s-")) return false;
  for (size_t i = 2; i < id.size(); ++i) {
    if (!absl::ascii_isxdigit(id[i]) || absl::ascii_isupper(id[i])) return false;
  }
  return true;
}

}  // namespace recur
