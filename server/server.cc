#include "server/server.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/files.h"
#include "base/status.h"
#include "glog/logging.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/malformed_request_interceptor.h"
#include "server/reflection_v1.h"

namespace recur {

namespace {

constexpr absl::Duration kDrainPoll = absl::Milliseconds(10);

// TLS credentials from the options' PEM files, or plaintext when none are given.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const SecurityOptions& security) {
  if (!security.tls()) {
    if (!security.tls_key_file.empty() || !security.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_key_file and --tls_client_ca_file need --tls_cert_file");
    }
    return grpc::InsecureServerCredentials();
  }
  if (security.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file needs --tls_key_file");
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  RECUR_ASSIGN_OR_RETURN(pair.cert_chain, ReadFileContents(security.tls_cert_file));
  RECUR_ASSIGN_OR_RETURN(pair.private_key, ReadFileContents(security.tls_key_file));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!security.tls_client_ca_file.empty()) {
    RECUR_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFileContents(security.tls_client_ca_file));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RecurServer>> RecurServer::Start(Checkpoint checkpoint,
                                                                ServerOptions options) {
  RECUR_RETURN_IF_ERROR(options.engine.Validate());
  const SessionPersistenceOptions& keep = options.persistence;
  if (keep.sync_interval < absl::ZeroDuration() ||
      (keep.sync_interval > absl::ZeroDuration() && keep.directory.empty())) {
    return absl::InvalidArgumentError(
        "--session_sync_interval must be >= 0 and needs --session_dir");
  }
  RECUR_ASSIGN_OR_RETURN(auto credentials, Credentials(options.security));
  std::unique_ptr<RecurServer> server(new RecurServer());
  if (!options.security.auth_token_file.empty()) {
    RECUR_ASSIGN_OR_RETURN(server->authenticator_,
                           Authenticator::FromFile(options.security.auth_token_file));
  }
  server->metrics_ = std::make_shared<Metrics>();
  if (options.metrics_port >= 0) {
    auto metrics_server =
        StartMetricsServer(options.metrics_host, options.metrics_port, *server->metrics_);
    if (!metrics_server.ok()) return metrics_server.status();
    server->metrics_server_ = *std::move(metrics_server);
  }
  server->engine_ =
      std::make_unique<Engine>(std::move(checkpoint), options.engine, server->metrics_);
  if (!keep.directory.empty()) {
    RECUR_ASSIGN_OR_RETURN(SessionDirectory directory,
                           SessionDirectory::Open(keep.directory, keep.replica));
    const std::string path = directory.path().string();
    const int64_t restored =
        server->engine_->KeepSessions(std::move(directory), keep.sync_interval);
    LOG(INFO) << "sessions kept in " << path << ": " << restored << " restored"
              << (keep.sync_interval > absl::ZeroDuration()
                      ? absl::StrCat(", changes saved every ",
                                     absl::FormatDuration(keep.sync_interval))
                      : std::string(", saved when draining"));
  }
  server->service_ = std::make_unique<RecurServiceImpl>(*server->engine_, *server->metrics_,
                                                        server->authenticator_);

  if (options.http_port >= 0) {
    HttpApiOptions http{options.metrics_host, options.http_port, options.model_name};
    RECUR_ASSIGN_OR_RETURN(server->http_,
                           HttpApi::Start(std::move(http), *server->engine_, *server->metrics_,
                                          server->authenticator_));
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC binds with SO_REUSEPORT by default: a second server on a port in use would start and
  // take a share of the connections (and their sessions would come back NOT_FOUND at random).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.address, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  server->reflection_v1_ = std::make_unique<ReflectionV1Service>(std::vector<std::string>{
      "recur.v1.Recur", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection"});
  builder.RegisterService(server->reflection_v1_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MalformedRequestInterceptorFactory(*server->metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.address,
                                               " (is the port in use by another server?)"));
  }
  return server;
}

void RecurServer::Shutdown(absl::Duration drain) {
  if (shut_down_) return;
  shut_down_ = true;
  // The listener stays open while requests finish, so health probes see NOT_SERVING and new
  // calls get UNAVAILABLE (a load balancer moves them to another replica).
  server_->GetHealthCheckService()->SetServingStatus(false);
  if (http_ != nullptr) http_->SetServing(false);
  engine_->Drain();
  const absl::Time deadline = absl::Now() + drain;
  while (!engine_->Idle() && absl::Now() < deadline) absl::SleepFor(kDrainPoll);
  if (!engine_->Idle()) {
    LOG(INFO) << "drain timeout: ending the requests still running, each with its final message";
    engine_->EndRequests();
    const absl::Time ended = absl::Now() + absl::Seconds(10);  // within a step; bounded anyway
    while (!engine_->Idle() && absl::Now() < ended) absl::SleepFor(kDrainPoll);
  }
  if (auto saved = engine_->SaveSessions(); !saved.ok()) {
    LOG(ERROR) << "saving sessions: " << saved.status();
  } else if (*saved > 0) {
    LOG(INFO) << "saved " << *saved << " sessions";
  }
  // The final messages are written; then gRPC cancels whatever is left.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  server_->Wait();
  http_.reset();
}

RecurServer::~RecurServer() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
  // The engine goes after the gRPC and HTTP servers: no call can reach it any more.
  http_.reset();
  service_.reset();
  engine_.reset();
}

}  // namespace recur
