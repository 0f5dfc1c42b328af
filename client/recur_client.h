#ifndef RECUR_CLIENT_RECUR_CLIENT_H_
#define RECUR_CLIENT_RECUR_CLIENT_H_

// A thin synchronous client for recur.v1.Recur, shared by the `recur` CLI and its load generator.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "recur/v1/recur.grpc.pb.h"

namespace recur {

// How to reach a server that has TLS or bearer tokens (server/server.h's SecurityOptions).
struct ConnectionOptions {
  bool tls = false;
  std::string tls_root_certs;  // PEM CA certificates to trust; empty: the system's
  std::string tls_cert_chain;  // PEM client certificate, for mutual TLS
  std::string tls_private_key;
  std::string token;  // sent as `authorization: Bearer <token>` on every call; empty: none
};

// The header a proxy routes sessions by (its value: the session id; deploy/nginx/recur.conf).
inline constexpr char kSessionHeader[] = "recur-session-id";

// Lets another thread stop a Generate in progress (e.g. on Ctrl-C): the call ends CANCELLED, and
// a session keeps the text streamed so far.
class Cancellation {
 public:
  // Cancels the call in progress; false when there is none.
  bool Cancel();

 private:
  friend class RecurClient;
  absl::Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
};

class RecurClient {
 public:
  // `timeout`: the deadline of each call (absl::InfiniteDuration() for none).
  RecurClient(const std::string& address, absl::Duration timeout,
              const ConnectionOptions& connection = {});

  // Streams a generation; `on_message` sees every message as it arrives, the last one holding the
  // finish reason and usage. Returns the RPC's status.
  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<void(const v1::GenerateResponse&)>& on_message,
                        Cancellation* cancellation = nullptr);

  // Every call naming a session sends its id as the `recur-session-id` header, so a proxy that
  // routes by it (deploy/nginx) keeps a session on one replica. Creating and importing choose the
  // new session's id here for the same reason.
  absl::StatusOr<v1::Session> CreateSession();
  absl::StatusOr<v1::Session> GetSession(const std::string& id);
  absl::Status CloseSession(const std::string& id);
  absl::StatusOr<v1::Session> ForkSession(const std::string& id);
  absl::StatusOr<std::string> ExportSession(const std::string& id);
  absl::StatusOr<v1::Session> ImportSession(const std::string& state);
  absl::StatusOr<v1::ModelInfo> GetModelInfo();
  // The standard health service's verdict: "SERVING", "NOT_SERVING", ...
  absl::StatusOr<std::string> Health();

 private:
  // The deadline, the bearer token and, when `session_id` is given, the routing header.
  void Prepare(grpc::ClientContext* context, const std::string& session_id = "") const;
  // One unary call with a fresh context and the deadline.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::Recur::Stub::*method)(grpc::ClientContext*,
                                                                        const Request&, Response*),
                                const Request& request, const std::string& session_id = "");

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Recur::Stub> stub_;
  absl::Duration timeout_;
  std::string authorization_;  // the header's value, or empty
};

}  // namespace recur

#endif  // RECUR_CLIENT_RECUR_CLIENT_H_
