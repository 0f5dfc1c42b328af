#ifndef RECUR_SERVER_METRICS_SERVER_H_
#define RECUR_SERVER_METRICS_SERVER_H_

// Prometheus's scrape endpoint, GET /metrics, on cpp-httplib (prometheus-cpp's own civetweb
// exposer refuses to start in a process that has loaded Debian's LibTorch: "null context when
// constructing CivetServer"). Connections are served concurrently by a pool of threads, each
// connection with read and write timeouts, so idle or slow clients cannot hold up a scrape (the
// hand-written endpoint this replaces served one connection at a time: one idle connection
// delayed every scrape by 5 s). A port in use is an error (no SO_REUSEPORT).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics.h"

namespace recur {

// Serves `metrics` until destroyed.
class MetricsServer {
 public:
  virtual ~MetricsServer() = default;
  virtual int port() const = 0;
};

// Listens on host:port (port 0 picks a free one); UNAVAILABLE naming the address when it cannot.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsServer(const std::string& host, int port,
                                                                  const Metrics& metrics);

}  // namespace recur

#endif  // RECUR_SERVER_METRICS_SERVER_H_
