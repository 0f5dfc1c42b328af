#include "model/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace recur {

StepLogprobs ComputeLogprobs(absl::Span<const float> logits, int64_t chosen, int top_n) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  top_n = std::clamp(top_n, 0, static_cast<int>(std::min<int64_t>(vocab, kMaxTopLogprobs)));
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, static_cast<double>(x));
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  const double log_normaliser = max + std::log(sum);

  // The best top_n so far, kept sorted (descending logit, ascending id): top_n is at most 20.
  auto better = [&](int64_t a, int64_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::vector<int64_t> best;
  best.reserve(top_n + 1);
  for (int64_t id = 0; id < vocab && top_n > 0; ++id) {
    if (static_cast<int>(best.size()) == top_n && !better(id, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), id, better), id);
    if (static_cast<int>(best.size()) > top_n) best.pop_back();
  }
  StepLogprobs out;
  out.chosen = {chosen, static_cast<double>(logits[chosen]) - log_normaliser};
  for (int64_t id : best) out.top.push_back({id, static_cast<double>(logits[id]) - log_normaliser});
  return out;
}

}  // namespace recur
