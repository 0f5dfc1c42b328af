#include "server/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace recur {

namespace {

// Token latencies run from a fraction of a millisecond (a small model batched on a GPU) to seconds
// (a long prompt on a CPU): roughly three buckets per decade from 100 µs to 30 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};
}

prometheus::Histogram& MakeHistogram(prometheus::Registry& registry, const std::string& name,
                                     const std::string& help,
                                     prometheus::Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add(
      {}, std::move(buckets));
}

prometheus::Gauge& MakeGauge(prometheus::Registry& registry, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Counter& MakeCounter(prometheus::Registry& registry, const std::string& name,
                                 const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

std::shared_ptr<prometheus::Registry> NewRegistry() {
  return std::make_shared<prometheus::Registry>();
}

// A minimal HTTP/1.0 endpoint for GET /metrics. prometheus-cpp's own exposer (civetweb) refuses to
// start in a process that has loaded Debian's LibTorch ("null context when constructing
// CivetServer"), so the server answers scrapes itself: one connection at a time, which is what a
// Prometheus scraper does.
class HttpMetricsServer : public MetricsServer {
 public:
  HttpMetricsServer(int fd, int port, std::shared_ptr<prometheus::Registry> registry)
      : fd_(fd), port_(port), registry_(std::move(registry)), thread_([this] { Serve(); }) {}

  ~HttpMetricsServer() override {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }

  int port() const override { return port_; }

 private:
  void Serve() {
    while (!stopping_) {
      const int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) {
        if (errno == EINTR) continue;
        if (stopping_) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      timeval timeout{5, 0};
      ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
        const ssize_t n = ::recv(client, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
      if (absl::StartsWith(request, "GET /metrics ") ||
          absl::StartsWith(request, "GET /metrics?")) {
        body = prometheus::TextSerializer().Serialize(registry_->Collect());
      } else if (absl::StartsWith(request, "GET ")) {
        status = "404 Not Found";
        type = "text/plain";
        body = "recur-server serves Prometheus metrics at /metrics\n";
      } else {
        status = "405 Method Not Allowed";
        type = "text/plain";
        body = "only GET /metrics\n";
      }
      const std::string response =
          absl::StrCat("HTTP/1.0 ", status, "\r\nContent-Type: ", type,
                       "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
      for (size_t sent = 0; sent < response.size();) {
        const ssize_t n =
            ::send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      ::close(client);
    }
  }

  const int fd_;
  const int port_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace

Metrics::Metrics() : Metrics(NewRegistry()) {}

Metrics::Metrics(std::shared_ptr<prometheus::Registry> registry)
    : time_to_first_token(MakeHistogram(
          *registry, "recur_time_to_first_token_seconds",
          "Time from a Generate request's arrival to its first token.", LatencyBuckets())),
      inter_token_latency(MakeHistogram(*registry, "recur_inter_token_latency_seconds",
                                        "Time between consecutive tokens of one stream.",
                                        LatencyBuckets())),
      request_duration(MakeHistogram(*registry, "recur_request_duration_seconds",
                                     "Time from a Generate request's arrival to its end.",
                                     LatencyBuckets())),
      batch_size(MakeHistogram(*registry, "recur_batch_size", "Sequences per batched decode step.",
                               {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
      prompt_tokens(
          MakeCounter(*registry, "recur_prompt_tokens_total", "Prompt tokens fed to the model.")),
      generated_tokens(MakeCounter(*registry, "recur_generated_tokens_total", "Tokens generated.")),
      active_sessions(MakeGauge(*registry, "recur_active_sessions",
                                "State slots in use: open sessions and one-off requests.")),
      running_requests(MakeGauge(*registry, "recur_running_requests",
                                 "Generate requests admitted (prefilling or decoding).")),
      queued_requests(
          MakeGauge(*registry, "recur_queued_requests", "Generate requests waiting for a slot.")),
      state_bytes(
          MakeGauge(*registry, "recur_state_bytes", "Bytes of model state held by all slots.")),
      registry_(std::move(registry)),
      requests_(prometheus::BuildCounter()
                    .Name("recur_requests_total")
                    .Help("RPCs finished, by gRPC status code.")
                    .Register(*registry_)) {}

void Metrics::CountRequest(absl::string_view code) {
  requests_.Add({{"code", std::string(code)}}).Increment();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                                  const Metrics& metrics) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address ", host, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> list(found, freeaddrinfo);
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("metrics socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
    const int error = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", host, ":", port, ": ", std::strerror(error)));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  const int actual =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsServer>(
      std::make_unique<HttpMetricsServer>(fd, actual, metrics.registry()));
}

}  // namespace recur
