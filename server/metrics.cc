#include "server/metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace recur {

namespace {

// Token latencies run from a fraction of a millisecond (a small model batched on a GPU) to seconds
// (a long prompt on a CPU): roughly three buckets per decade from 100 µs to 30 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};
}

// The latencies users see and dashboards take percentiles of (time to first token, inter-token):
// 14 buckets per decade from 100 µs to 30 s, neighbours at most 25 % apart, so
// histogram_quantile's interpolation inside a bucket stays close to the true quantile (with the
// three-per-decade buckets a p99 of 5.4 ms read back as 7.7 ms; tests/server/prometheus_test.cc).
prometheus::Histogram::BucketBoundaries FineLatencyBuckets() {
  constexpr double kMantissas[] = {1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 9};
  prometheus::Histogram::BucketBoundaries buckets;
  for (double decade = 1e-4; decade < 100; decade *= 10) {
    for (double mantissa : kMantissas) {
      const double bound = mantissa * decade;
      if (bound > 30.0 * (1 + 1e-9)) return buckets;
      buckets.push_back(bound);
    }
  }
  return buckets;
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

}  // namespace

Metrics::Metrics() : Metrics(NewRegistry()) {}

Metrics::Metrics(std::shared_ptr<prometheus::Registry> registry)
    : time_to_first_token(MakeHistogram(
          *registry, "recur_time_to_first_token_seconds",
          "Time from a Generate request's arrival to its first token.", FineLatencyBuckets())),
      inter_token_latency(MakeHistogram(*registry, "recur_inter_token_latency_seconds",
                                        "Time between consecutive tokens of one stream.",
                                        FineLatencyBuckets())),
      request_duration(MakeHistogram(*registry, "recur_request_duration_seconds",
                                     "Time from a Generate request's arrival to its end.",
                                     LatencyBuckets())),
      batch_size(MakeHistogram(*registry, "recur_batch_size", "Sequences per batched decode step.",
                               {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})),
      decode_model_seconds(MakeHistogram(*registry, "recur_decode_model_seconds",
                                         "The model's part of one batched decode step.",
                                         LatencyBuckets())),
      decode_output_seconds(MakeHistogram(
          *registry, "recur_decode_output_seconds",
          "Sampling, stop checks and detokenising for one batched decode step.", LatencyBuckets())),
      prompt_tokens(MakeCounter(*registry, "recur_prompt_tokens_total",
                                "Prompt tokens of admitted requests (fed to the model, or held by "
                                "the prefix cache: recur_prefix_cache_hit_tokens_total).")),
      generated_tokens(MakeCounter(*registry, "recur_generated_tokens_total", "Tokens generated.")),
      active_sessions(MakeGauge(*registry, "recur_active_sessions",
                                "State slots in use: open sessions and one-off requests.")),
      running_requests(MakeGauge(*registry, "recur_running_requests",
                                 "Generate requests admitted (prefilling or decoding).")),
      queued_requests(
          MakeGauge(*registry, "recur_queued_requests", "Generate requests waiting for a slot.")),
      state_bytes(
          MakeGauge(*registry, "recur_state_bytes", "Bytes of model state held by all slots.")),
      session_slots(MakeGauge(*registry, "recur_session_slots",
                              "State slots in all (--max_sessions or --state_memory_mb).")),
      session_slots_free(MakeGauge(*registry, "recur_session_slots_free",
                                   "State slots free for a new session or request.")),
      max_queued_requests(MakeGauge(*registry, "recur_max_queued_requests",
                                    "The most Generate requests that may wait (--max_queue).")),
      state_bytes_capacity(MakeGauge(
          *registry, "recur_state_bytes_capacity",
          "Linear attention: bytes of model state all slots hold when full (0 for softmax).")),
      kv_cache_bytes(MakeGauge(
          *registry, "recur_kv_cache_bytes",
          "Softmax attention: key/value bytes held by sessions and reserved by running requests.")),
      kv_cache_budget_bytes(
          MakeGauge(*registry, "recur_kv_cache_budget_bytes",
                    "Softmax attention: the key/value budget (--kv_cache_memory_mb).")),
      max_context_tokens(MakeGauge(*registry, "recur_max_context_tokens",
                                   "Softmax attention: the most tokens one session may hold.")),
      prefix_cache_lookups(
          MakeCounter(*registry, "recur_prefix_cache_lookups_total",
                      "Requests that looked their prompt up in the prefix cache.")),
      prefix_cache_hits(MakeCounter(*registry, "recur_prefix_cache_hits_total",
                                    "Prefix-cache lookups that found a kept prefix.")),
      prefix_cache_hit_tokens(MakeCounter(*registry, "recur_prefix_cache_hit_tokens_total",
                                          "Prompt tokens not fed because the cache held them.")),
      prefix_cache_evictions(MakeCounter(*registry, "recur_prefix_cache_evictions_total",
                                         "Prefix-cache entries dropped to stay within capacity.")),
      prefix_cache_bytes(MakeGauge(*registry, "recur_prefix_cache_bytes",
                                   "Bytes the prefix cache holds (states, logits, keys).")),
      prefix_cache_entries(
          MakeGauge(*registry, "recur_prefix_cache_entries", "Prefixes the cache holds.")),
      prefix_cache_capacity_bytes(
          MakeGauge(*registry, "recur_prefix_cache_capacity_bytes",
                    "The prefix cache's bound (--prefix_cache_mb; 0: off).")),
      registry_(std::move(registry)),
      requests_(prometheus::BuildCounter()
                    .Name("recur_requests_total")
                    .Help("RPCs finished, by gRPC status code.")
                    .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("recur_build_info")
                      .Help("1, labelled with the version, attention kind, device and weight "
                            "format this server runs.")
                      .Register(*registry_)) {}

void Metrics::CountRequest(absl::string_view code) {
  requests_.Add({{"code", std::string(code)}}).Increment();
}

void Metrics::SetBuildInfo(absl::string_view attention, absl::string_view device,
                           absl::string_view weights) {
  build_info_
      .Add({{"version", RECUR_VERSION},
            {"attention", std::string(attention)},
            {"device", std::string(device)},
            {"weights", std::string(weights)}})
      .Set(1);
}

}  // namespace recur
