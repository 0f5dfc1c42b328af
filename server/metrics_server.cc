#include "server/metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"
#include "server/process_metrics.h"

namespace recur {

namespace {

// Threads serving connections: a scrape finds one free while this many other clients hold theirs.
constexpr int kWorkers = 32;
// How long a connection may sit between bytes (reading a request, writing the answer) or idle
// between keep-alive requests before it is closed.
constexpr time_t kIoTimeoutSeconds = 2;

class HttplibMetricsServer : public MetricsServer {
 public:
  HttplibMetricsServer(std::unique_ptr<httplib::Server> server, int port)
      : server_(std::move(server)),
        port_(port),
        thread_([this] { server_->listen_after_bind(); }) {}

  ~HttplibMetricsServer() override {
    server_->stop();
    thread_.join();
  }

  int port() const override { return port_; }

 private:
  std::unique_ptr<httplib::Server> server_;
  const int port_;
  std::thread thread_;
};

// cpp-httplib's default options set SO_REUSEPORT, under which a second server on the same port
// would start and share the scrapes; SO_REUSEADDR only lets a restarted server rebind at once.
void SocketOptions(socket_t fd) {
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                                  const Metrics& metrics) {
  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server->set_socket_options(SocketOptions);
  server->set_read_timeout(kIoTimeoutSeconds);
  server->set_write_timeout(kIoTimeoutSeconds);
  server->set_keep_alive_timeout(kIoTimeoutSeconds);
  std::shared_ptr<prometheus::Registry> registry = metrics.registry();
  server->Get("/metrics", [registry](const httplib::Request&, httplib::Response& response) {
    std::vector<prometheus::MetricFamily> families = registry->Collect();
    for (auto& family : CollectProcessMetrics()) families.push_back(std::move(family));
    response.set_content(prometheus::TextSerializer().Serialize(families),
                         "text/plain; version=0.0.4; charset=utf-8");
  });
  server->set_error_handler([](const httplib::Request&, httplib::Response& response) {
    response.set_content("recur-server serves Prometheus metrics at GET /metrics\n", "text/plain");
  });
  const int bound = port == 0                          ? server->bind_to_any_port(host)
                    : server->bind_to_port(host, port) ? port
                                                       : -1;
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port,
                                               " (is the port in use by another server?)"));
  }
  return std::unique_ptr<MetricsServer>(
      std::make_unique<HttplibMetricsServer>(std::move(server), bound));
}

}  // namespace recur
