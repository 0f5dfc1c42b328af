#ifndef RECUR_BASE_SESSION_ID_H_
#define RECUR_BASE_SESSION_ID_H_

// Session ids, the one format the server, its client and a proxy agree on: "s-" and 32
// lower-case hex digits (128 random bits), the first 8 digits the routing key a proxy hashes
// (deploy/nginx/, proto/recur/v1/recur.proto). The server makes them, and so does a client that
// creates a session behind such a proxy.

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace recur {

inline constexpr size_t kSessionIdLength = 34;   // "s-" and 32 hex digits
inline constexpr size_t kRoutingKeyLength = 10;  // "s-" and the first 8 hex digits

// A random id; with `routing_key` (another id's first kRoutingKeyLength characters), one with the
// same key, which the proxy sends to the same replica.
std::string NewSessionId(absl::string_view routing_key = "");

// `id` has the form above.
bool IsSessionId(absl::string_view id);

}  // namespace recur

#endif  // RECUR_BASE_SESSION_ID_H_
