#include "client/load_generator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>
#include <vector>

#include "client/recur_client.h"

namespace recur {

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

LoadReport RunLoad(const LoadOptions& options) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::atomic<int> next{0};
  std::mutex mu;
  LoadReport report;
  std::vector<double> ttft, inter_token;

  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < options.concurrency; ++w) {
    workers.emplace_back([&] {
      // One channel per stream, as independent clients would have.
      RecurClient client(options.server, absl::InfiniteDuration(), options.connection);
      for (int i = next++; i < options.requests; i = next++) {
        v1::GenerateRequest request = options.request;
        request.mutable_sampling()->set_seed(options.request.sampling().seed() + i);
        std::vector<double> my_ttft, my_gaps;
        int64_t tokens = 0;
        const auto sent = Clock::now();
        auto last = sent;
        auto status = client.Generate(request, [&](const v1::GenerateResponse& message) {
          const int n = message.token_ids_size();
          if (n == 0) return;
          const auto now = Clock::now();
          if (tokens == 0) {
            my_ttft.push_back(seconds(now - sent));
            // Tokens that arrive together share the gap.
            for (int k = 1; k < n; ++k) my_gaps.push_back(0);
          } else {
            for (int k = 0; k < n; ++k) my_gaps.push_back(seconds(now - last) / n);
          }
          last = now;
          tokens += n;
        });
        std::lock_guard<std::mutex> lock(mu);
        report.requests += 1;
        if (!status.ok()) {
          report.failed += 1;
          if (report.first_error.empty()) report.first_error = status.ToString();
          continue;
        }
        report.tokens += tokens;
        ttft.insert(ttft.end(), my_ttft.begin(), my_ttft.end());
        inter_token.insert(inter_token.end(), my_gaps.begin(), my_gaps.end());
      }
    });
  }
  for (auto& worker : workers) worker.join();
  report.seconds = seconds(Clock::now() - start);
  report.tokens_per_second = report.seconds > 0 ? report.tokens / report.seconds : 0;
  report.ttft_p50 = Quantile(ttft, 0.5);
  report.ttft_p99 = Quantile(ttft, 0.99);
  report.inter_token_p50 = Quantile(inter_token, 0.5);
  report.inter_token_p99 = Quantile(inter_token, 0.99);
  return report;
}

}  // namespace recur
