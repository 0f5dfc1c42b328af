#ifndef RECUR_SERVER_SERVER_H_
#define RECUR_SERVER_SERVER_H_

// A running recur-server: the engine, the gRPC service (with health checking and reflection) and
// the metrics endpoint, put together. Used by recur-server's main and by the tests.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "model/checkpoint.h"
#include "server/authenticator.h"
#include "server/engine.h"
#include "server/http_api.h"
#include "server/metrics.h"
#include "server/metrics_server.h"
#include "server/recur_service_impl.h"

namespace recur {

// Files in PEM format; all empty: plaintext and no authentication (fit for loopback only).
struct SecurityOptions {
  std::string tls_cert_file;  // with tls_key_file: serve TLS
  std::string tls_key_file;
  std::string tls_client_ca_file;  // mutual TLS: clients must present a certificate it signed
  std::string auth_token_file;     // bearer tokens, `token tenant` per line (authenticator.h)

  bool tls() const { return !tls_cert_file.empty(); }
};

// --session_dir: sessions kept on disk across restarts and replicas (server/session_keeper.h).
struct SessionPersistenceOptions {
  std::string directory;  // empty: sessions live in memory only
  std::string replica;    // this replica's subdirectory of `directory`
  absl::Duration sync_interval = absl::ZeroDuration();  // zero: saved only when draining
};

struct ServerOptions {
  std::string address = "127.0.0.1:50051";  // port 0 picks a free one
  std::string metrics_host = "127.0.0.1";
  int metrics_port = -1;             // -1: no metrics endpoint; 0 picks a free port
  int http_port = -1;                // the OpenAI-compatible HTTP API (server/http_api.h); -1: none
  std::string model_name = "recur";  // the model's id in the HTTP API
  SecurityOptions security;
  SessionPersistenceOptions persistence;
  EngineOptions engine;
};

class RecurServer {
 public:
  static absl::StatusOr<std::unique_ptr<RecurServer>> Start(Checkpoint checkpoint,
                                                            ServerOptions options);
  ~RecurServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_server_ != nullptr ? metrics_server_->port() : -1; }
  int http_port() const { return http_ != nullptr ? http_->port() : -1; }
  Engine& engine() { return *engine_; }
  Metrics& metrics() { return *metrics_; }
  const Authenticator& authenticator() const { return authenticator_; }

  // Drains: health turns NOT_SERVING and new calls are refused (UNAVAILABLE) while the requests
  // running or queued finish, for up to `drain`; those still running then end with a final
  // message (FINISH_REASON_SHUTDOWN, with usage). With a session directory the sessions are then
  // saved, each as of its last turn. Then the listener closes.
  void Shutdown(absl::Duration drain);

 private:
  RecurServer() = default;

  std::shared_ptr<Metrics> metrics_;
  Authenticator authenticator_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<RecurServiceImpl> service_;
  std::unique_ptr<grpc::Service> reflection_v1_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<HttpApi> http_;  // before the engine goes
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace recur

#endif  // RECUR_SERVER_SERVER_H_
