#ifndef RECUR_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_
#define RECUR_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_

// gRPC answers a request it cannot parse as its method's protobuf message (truncated bytes, a
// field of the wrong wire type, a string that is not UTF-8) with UNIMPLEMENTED and an empty
// message, before any handler of ours runs, so such requests were neither explained nor counted.
// This server interceptor sees that the parse failed (no received message), rewrites the status to
// INVALID_ARGUMENT saying why, and counts it in recur_requests_total.

#include <memory>

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics.h"

namespace recur {

// `metrics` must outlive the server the factory is installed in.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MalformedRequestInterceptorFactory(Metrics& metrics);

}  // namespace recur

#endif  // RECUR_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_
