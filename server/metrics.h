#ifndef RECUR_SERVER_METRICS_H_
#define RECUR_SERVER_METRICS_H_

// The server's Prometheus series (prefix recur_, base units). One Metrics object per server; the
// engine and the gRPC service record into it; server/metrics_server.h serves it on /metrics.

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace recur {

class Metrics {
 public:
  Metrics();

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // Counts a finished RPC under its gRPC status code name, e.g. "OK", "NOT_FOUND".
  void CountRequest(absl::string_view code);
  // recur_build_info{version, attention, device, weights} 1: what this server runs.
  void SetBuildInfo(absl::string_view attention, absl::string_view device,
                    absl::string_view weights);

  prometheus::Histogram& time_to_first_token;  // seconds from arrival to the first token
  prometheus::Histogram& inter_token_latency;  // seconds between consecutive tokens of a stream
  prometheus::Histogram& request_duration;     // seconds from arrival to the last message
  prometheus::Histogram& batch_size;           // sequences per batched decode step
  // One batched decode step, in two parts: the model (tokens in, logits on the host) and the
  // rest (sampling, repetition penalty, stop sequences, detokenising, handing text to streams).
  prometheus::Histogram& decode_model_seconds;
  prometheus::Histogram& decode_output_seconds;
  prometheus::Counter& prompt_tokens;
  prometheus::Counter& generated_tokens;
  prometheus::Gauge& active_sessions;   // slots in use: sessions and one-off requests
  prometheus::Gauge& running_requests;  // admitted: prefilling or decoding
  prometheus::Gauge& queued_requests;   // waiting for a slot
  prometheus::Gauge& state_bytes;       // model state held by all slots
  // Capacity, for ratios on a dashboard: state slots in all and free, the queue's bound, and the
  // bytes all slots hold when full (linear attention; 0 for softmax, whose caches grow).
  prometheus::Gauge& session_slots;
  prometheus::Gauge& session_slots_free;
  prometheus::Gauge& max_queued_requests;
  prometheus::Gauge& state_bytes_capacity;
  // Softmax attention only (0 otherwise): the key/value tokens' bytes held and reserved, the
  // budget, and one session's context limit.
  prometheus::Gauge& kv_cache_bytes;
  prometheus::Gauge& kv_cache_budget_bytes;
  prometheus::Gauge& max_context_tokens;
  // The prefix-state cache (server/prefix_cache.h): lookups (one per eligible request), hits,
  // prompt tokens a hit saved feeding, entries evicted, and what it holds against its capacity.
  prometheus::Counter& prefix_cache_lookups;
  prometheus::Counter& prefix_cache_hits;
  prometheus::Counter& prefix_cache_hit_tokens;
  prometheus::Counter& prefix_cache_evictions;
  prometheus::Gauge& prefix_cache_bytes;
  prometheus::Gauge& prefix_cache_entries;
  prometheus::Gauge& prefix_cache_capacity_bytes;

 private:
  explicit Metrics(std::shared_ptr<prometheus::Registry> registry);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Gauge>& build_info_;
};

}  // namespace recur

#endif  // RECUR_SERVER_METRICS_H_
