#include "model/sampling.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace recur {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", temperature));
  }
  if (top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", top_k));
  if (!(top_p > 0.0 && top_p <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be > 0, got ", repetition_penalty));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), generator_(params.seed) {}

std::vector<std::pair<int64_t, double>> Sampler::Filter(absl::Span<const float> logits,
                                                        absl::Span<const int64_t> history) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  std::vector<double> scores(logits.begin(), logits.end());
  if (params_.repetition_penalty != 1.0) {
    absl::flat_hash_set<int64_t> seen(history.begin(), history.end());
    for (int64_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      double& s = scores[id];
      s = s > 0 ? s / params_.repetition_penalty : s * params_.repetition_penalty;
    }
  }
  std::vector<std::pair<int64_t, double>> ranked;
  ranked.reserve(vocab);
  for (int64_t i = 0; i < vocab; ++i) ranked.emplace_back(i, scores[i]);
  // Most likely first; ties broken by the lower id so the order is total.
  auto by_score = [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  if (params_.temperature == 0.0) {
    auto best = std::min_element(ranked.begin(), ranked.end(), by_score);
    return {{best->first, 1.0}};
  }
  int64_t keep = vocab;
  if (params_.top_k > 0) keep = std::min(keep, params_.top_k);
  std::partial_sort(ranked.begin(), ranked.begin() + keep, ranked.end(), by_score);
  ranked.resize(keep);

  // Softmax over the survivors, shifted by the maximum for stability.
  const double max_score = ranked.front().second;
  double total = 0.0;
  for (auto& [id, score] : ranked) {
    score = std::exp((score - max_score) / params_.temperature);
    total += score;
  }
  if (params_.top_p < 1.0) {
    double cumulative = 0.0;
    size_t n = 0;
    while (n < ranked.size()) {
      cumulative += ranked[n].second / total;
      ++n;
      if (cumulative >= params_.top_p) break;
    }
    ranked.resize(n);
  }
  return ranked;
}

std::vector<int64_t> Sampler::Candidates(absl::Span<const float> logits,
                                         absl::Span<const int64_t> history) const {
  std::vector<int64_t> ids;
  for (const auto& [id, p] : Filter(logits, history)) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

int64_t Sampler::Sample(absl::Span<const float> logits, absl::Span<const int64_t> history) {
  auto candidates = Filter(logits, history);
  if (candidates.size() == 1) return candidates.front().first;
  double total = 0.0;
  for (const auto& c : candidates) total += c.second;
  // A uniform double in [0, 1) from 53 random bits: the same on every platform, unlike
  // std::uniform_real_distribution.
  const double u = static_cast<double>(generator_() >> 11) * 0x1.0p-53;
  double target = u * total;
  for (const auto& [id, p] : candidates) {
    if (target < p) return id;
    target -= p;
  }
  return candidates.back().first;
}

}  // namespace recur
