#include "server/server.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "glog/logging.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/malformed_request_interceptor.h"

namespace recur {

absl::StatusOr<std::unique_ptr<RecurServer>> RecurServer::Start(Checkpoint checkpoint,
                                                                ServerOptions options) {
  RECUR_RETURN_IF_ERROR(options.engine.Validate());
  std::unique_ptr<RecurServer> server(new RecurServer());
  server->metrics_ = std::make_shared<Metrics>();
  if (options.metrics_port >= 0) {
    auto metrics_server =
        StartMetricsServer(options.metrics_host, options.metrics_port, *server->metrics_);
    if (!metrics_server.ok()) return metrics_server.status();
    server->metrics_server_ = *std::move(metrics_server);
  }
  server->engine_ =
      std::make_unique<Engine>(std::move(checkpoint), options.engine, server->metrics_);
  server->service_ = std::make_unique<RecurServiceImpl>(*server->engine_, *server->metrics_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC binds with SO_REUSEPORT by default: a second server on a port in use would start and
  // take a share of the connections (and their sessions would come back NOT_FOUND at random).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->service_.get());
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
  server_->GetHealthCheckService()->SetServingStatus(false);
  // Waits for in-flight calls until the deadline, then cancels them (their streams end within one
  // engine step).
  server_->Shutdown(absl::ToChronoTime(absl::Now() + drain));
  server_->Wait();
}

RecurServer::~RecurServer() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
  // The engine goes after the gRPC server: no call can reach it any more.
  service_.reset();
  engine_.reset();
}

}  // namespace recur
