#ifndef RECUR_SERVER_PROCESS_METRICS_H_
#define RECUR_SERVER_PROCESS_METRICS_H_

// The process's own series, under the names Prometheus's client libraries give them, read from
// /proc at each scrape (prometheus-cpp has no process collector):
//   process_resident_memory_bytes, process_virtual_memory_bytes   gauges
//   process_cpu_seconds_total                                     counter (user + system)
//   process_open_fds, process_max_fds                             gauges
//   process_start_time_seconds                                    gauge (Unix time)
// A value /proc does not give (another OS, a restricted /proc) is left out, not reported as 0.

#include <vector>

#include "prometheus/metric_family.h"

namespace recur {

std::vector<prometheus::MetricFamily> CollectProcessMetrics();

}  // namespace recur

#endif  // RECUR_SERVER_PROCESS_METRICS_H_
