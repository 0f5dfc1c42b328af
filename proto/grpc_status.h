#ifndef RECUR_PROTO_GRPC_STATUS_H_
#define RECUR_PROTO_GRPC_STATUS_H_

// absl::Status ↔ grpc::Status, both directions in one place: the server answers with the codes
// its engine returns, the client hands the codes it receives to its callers. The two code sets
// are numerically the same (both are google.rpc.Code), so a code and its message pass unchanged.

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace recur {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace recur

#endif  // RECUR_PROTO_GRPC_STATUS_H_
