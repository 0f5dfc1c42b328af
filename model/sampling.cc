#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

// The loops below are written so that GCC vectorises them (sixteen fixed lanes, arithmetic only)
// and built for three vector widths at once (target_clones picks one at load time). This file is
// compiled with -ffp-contract=off (model/CMakeLists.txt): no fused multiply-adds, so every width
// rounds exactly alike and a seed gives the same tokens on every x86-64 machine.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RECUR_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RECUR_VECTOR_CLONES
#endif

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

namespace {

constexpr int64_t kBlock = 512;  // tokens per block of mass: a draw walks blocks, then one block
constexpr int kLanes = 16;

int64_t Blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

template <typename T>
T Penalised(T score, T penalty) {
  return score > 0 ? score / penalty : score * penalty;
}

// exp(x) for x ≤ 0 in float32: Cephes' expf (range reduction by ln 2, a degree-6 polynomial;
// within 2 ulp of the exact value), 0 below exp(−87) where float32 leaves the normal range.
inline __attribute__((always_inline)) float ExpNonPositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f, kLn2Low = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds
  const float clamped = x < -87.0f ? -87.0f : x;
  const float n = (clamped * kLog2e + kRound) - kRound;
  const float r = (clamped - n * kLn2High) - n * kLn2Low;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : p * scale;
}

// The sum of w[0, n) in a fixed order: sixteen float lanes, then the lanes and the tail in
// double.
inline __attribute__((always_inline)) double SumLanes(const float* w, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += w[i + l];
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  for (; i < n; ++i) total += w[i];
  return total;
}

// The sum of those w[0, n) that are > `bound` (≥ when `inclusive`), in SumLanes' order.
inline __attribute__((always_inline)) double SumAbove(const float* w, int64_t n, float bound,
                                                      bool inclusive) {
  float acc[kLanes] = {};
  int64_t i = 0;
  if (inclusive) {
    for (; i + kLanes <= n; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += w[i + l] >= bound ? w[i + l] : 0.0f;
    }
  } else {
    for (; i + kLanes <= n; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += w[i + l] > bound ? w[i + l] : 0.0f;
    }
  }
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  for (; i < n; ++i) {
    if (w[i] > bound || (inclusive && w[i] == bound)) total += w[i];
  }
  return total;
}

// The maximum of x[0, n), in sixteen lanes.
inline __attribute__((always_inline)) float MaxLanes(const float* x, int64_t n) {
  float acc[kLanes];
  std::fill(acc, acc + kLanes, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  }
  float best = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < kLanes; ++l) best = std::max(best, acc[l]);
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

RECUR_VECTOR_CLONES float MaxOf(const float* x, int64_t n) { return MaxLanes(x, n); }

// The maximum of every kLanes-long chunk of x[0, n) into chunk_max (the last may be shorter).
RECUR_VECTOR_CLONES void ChunkMaxes(const float* x, int64_t n, float* chunk_max) {
  int64_t c = 0;
  for (; (c + 1) * kLanes <= n; ++c) {
    float best = x[c * kLanes];
    for (int l = 1; l < kLanes; ++l) best = x[c * kLanes + l] > best ? x[c * kLanes + l] : best;
    chunk_max[c] = best;
  }
  if (c * kLanes < n) chunk_max[c] = *std::max_element(x + c * kLanes, x + n);
}

// w[i] = exp((x[i] − max) · inv_t), each block's sum into block_mass and its largest weight into
// block_max; returns the total. x and w must not overlap: written from x into a separate w, the
// row is read from memory once (a copy first, then exp in place, read it three times, and at 64
// rows of 33,278 words the logits do not stay in cache).
RECUR_VECTOR_CLONES double ExpWeights(const float* __restrict x, int64_t n, float max, float inv_t,
                                      float* __restrict w, double* block_mass, float* block_max) {
  double total = 0;
  for (int64_t b = 0; b < Blocks(n); ++b) {
    const float* in = x + b * kBlock;
    float* block = w + b * kBlock;
    const int64_t length = std::min(kBlock, n - b * kBlock);
    for (int64_t i = 0; i < length; ++i) block[i] = ExpNonPositive((in[i] - max) * inv_t);
    block_mass[b] = SumLanes(block, length);
    block_max[b] = MaxLanes(block, length);
    total += block_mass[b];
  }
  return total;
}

// Whether token i ranks before token j: larger weight, or the same weight and a lower id.
bool RanksBefore(const float* w, int64_t i, int64_t j) {
  return w[i] > w[j] || (w[i] == w[j] && i < j);
}

// The mass of the tokens ranked before j, per block into block_mass, and in all. A block whose
// largest weight is below w_j holds none of them and is not read: a likely token is checked in
// a few blocks.
RECUR_VECTOR_CLONES double MassBefore(const float* w, int64_t n, int64_t j, const float* block_max,
                                      double* block_mass) {
  const float wj = w[j];
  const int64_t j_block = j / kBlock;
  double total = 0;
  for (int64_t b = 0; b < Blocks(n); ++b) {
    const float* block = w + b * kBlock;
    const int64_t length = std::min(kBlock, n - b * kBlock);
    if (block_max[b] < wj || (b > j_block && block_max[b] == wj)) {
      block_mass[b] = 0;
      continue;
    }
    if (b != j_block) {
      // Equal weights rank before j only below its id, i.e. in earlier blocks.
      block_mass[b] = SumAbove(block, length, wj, /*inclusive=*/b < j_block);
    } else {
      double mass = 0;
      for (int64_t i = b * kBlock; i < b * kBlock + length; ++i) {
        if (RanksBefore(w, i, j)) mass += w[i];
      }
      block_mass[b] = mass;
    }
    total += block_mass[b];
  }
  return total;
}

// The token at `target` along the cumulative weight in id order, counting only tokens ranked
// before `pivot` (every token when pivot < 0), whose mass per block is block_mass. Rounding may
// leave `target` past a block's last token: that token is taken.
int64_t Draw(const float* w, int64_t n, const double* block_mass, double target, int64_t pivot) {
  int64_t b = 0, last_nonempty = 0;
  for (; b < Blocks(n); ++b) {
    if (block_mass[b] > 0) last_nonempty = b;
    if (target < block_mass[b]) break;
    target -= block_mass[b];
  }
  if (b == Blocks(n)) {
    b = last_nonempty;
    target = std::numeric_limits<double>::infinity();
  }
  int64_t last = -1;
  for (int64_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
    if (w[i] == 0 || (pivot >= 0 && !RanksBefore(w, i, pivot))) continue;
    last = i;
    if (target < w[i]) return i;
    target -= w[i];
  }
  return last;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), generator_(params.seed) {}

double Sampler::Uniform() { return static_cast<double>(generator_() >> 11) * 0x1.0p-53; }

int64_t Sampler::Sample(absl::Span<const float> logits, const TokenSet& seen) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params_.temperature == 0.0) return Greedy(logits, seen);
  if (params_.top_k > 0 && params_.top_k < vocab) return SampleTopK(logits, seen);
  return SampleNucleus(logits, seen);
}

int64_t Sampler::Chunks(absl::Span<const float> logits) {
  const int64_t n = static_cast<int64_t>(logits.size());
  chunk_max_.resize((n + kLanes - 1) / kLanes);
  ChunkMaxes(logits.data(), n, chunk_max_.data());
  return static_cast<int64_t>(chunk_max_.size());
}

int64_t Sampler::Greedy(absl::Span<const float> logits, const TokenSet& seen) {
  const int64_t n = static_cast<int64_t>(logits.size());
  const bool penalise = params_.repetition_penalty != 1.0;
  // A penalty ≥ 1 only lowers scores: a chunk whose raw maximum cannot win is skipped.
  const bool skip = params_.repetition_penalty >= 1.0;
  const int64_t chunks = Chunks(logits);
  int64_t best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < chunks; ++c) {
    if (skip && chunk_max_[c] <= best_score) continue;
    for (int64_t i = c * kLanes; i < std::min(n, (c + 1) * kLanes); ++i) {
      double score = logits[i];
      if (penalise && seen.Contains(i)) score = Penalised(score, params_.repetition_penalty);
      if (score > best_score) {
        best = i;
        best_score = score;
      }
    }
  }
  return best;
}

int64_t Sampler::SampleTopK(absl::Span<const float> logits, const TokenSet& seen) {
  const bool penalise = params_.repetition_penalty != 1.0;
  const size_t k = static_cast<size_t>(params_.top_k);
  // Rank order: the higher score first, ties broken by the lower id.
  auto ranks_before = [](const std::pair<int64_t, double>& a, const std::pair<int64_t, double>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  // One pass keeping the k best in a heap whose root is the worst of them. Ids rise along the
  // pass, so a later token must score strictly more than the root to enter: once the heap is
  // full, a chunk whose raw maximum is not above the root is skipped (a penalty ≥ 1 only lowers
  // scores).
  const int64_t n = static_cast<int64_t>(logits.size());
  const bool skip = params_.repetition_penalty >= 1.0;
  const int64_t chunks = Chunks(logits);
  top_.clear();
  for (int64_t c = 0; c < chunks; ++c) {
    if (skip && top_.size() == k && chunk_max_[c] <= top_.front().second) continue;
    for (int64_t i = c * kLanes; i < std::min(n, (c + 1) * kLanes); ++i) {
      double score = logits[i];
      if (penalise && seen.Contains(i)) score = Penalised(score, params_.repetition_penalty);
      // NaN (a broken model) ranks last, keeping the heap's order total.
      if (std::isnan(score)) score = -std::numeric_limits<double>::infinity();
      if (top_.size() < k) {
        top_.emplace_back(i, score);
        std::push_heap(top_.begin(), top_.end(), ranks_before);
      } else if (ranks_before({i, score}, top_.front())) {
        std::pop_heap(top_.begin(), top_.end(), ranks_before);
        top_.back() = {i, score};
        std::push_heap(top_.begin(), top_.end(), ranks_before);
      }
    }
  }
  std::sort(top_.begin(), top_.end(), ranks_before);

  // Softmax over the k, shifted by the maximum for stability, then the top-p cut.
  const double max_score = top_.front().second;
  double total = 0.0;
  for (auto& [id, score] : top_) {
    score = std::exp((score - max_score) / params_.temperature);
    total += score;
  }
  if (params_.top_p < 1.0) {
    double cumulative = 0.0;
    size_t n = 0;
    while (n < top_.size()) {
      cumulative += top_[n].second / total;
      ++n;
      if (cumulative >= params_.top_p) break;
    }
    top_.resize(n);
    total = 0.0;
    for (const auto& candidate : top_) total += candidate.second;
  }
  if (top_.size() == 1) return top_.front().first;
  double target = Uniform() * total;
  for (const auto& [id, weight] : top_) {
    if (target < weight) return id;
    target -= weight;
  }
  return top_.back().first;
}

int64_t Sampler::SampleNucleus(absl::Span<const float> logits, const TokenSet& seen) {
  const int64_t n = static_cast<int64_t>(logits.size());
  weights_.resize(n);
  block_mass_.resize(Blocks(n));
  block_max_.resize(Blocks(n));
  before_mass_.resize(Blocks(n));
  float* w = weights_.data();
  const float* scores = logits.data();
  if (params_.repetition_penalty != 1.0 && !seen.empty()) {
    penalised_.assign(logits.begin(), logits.end());
    const float penalty = static_cast<float>(params_.repetition_penalty);
    seen.ForEach([&](int64_t id) { penalised_[id] = Penalised(penalised_[id], penalty); });
    scores = penalised_.data();
  }
  const float max = MaxOf(scores, n);
  const float inv_t = static_cast<float>(1.0 / params_.temperature);
  const double total =
      ExpWeights(scores, n, max, inv_t, w, block_mass_.data(), block_max_.data());
  // Non-finite logits (a broken model) leave no distribution to draw from.
  if (!(total > 0) || !std::isfinite(total)) return Greedy(logits, seen);

  int64_t pivot = -1;  // draws are among the tokens ranked before it
  double mass = total;
  const double* mass_per_block = block_mass_.data();
  while (true) {
    const int64_t j = Draw(w, n, mass_per_block, Uniform() * mass, pivot);
    // No weight left to draw: not for finite logits, but a broken row must not index out.
    if (j < 0) return Greedy(logits, seen);
    if (params_.top_p >= 1.0) return j;
    const double before = MassBefore(w, n, j, block_max_.data(), before_mass_.data());
    // In the nucleus: the tokens ranked before j hold less than top_p of the mass.
    if (before < params_.top_p * total) return j;
    pivot = j;
    mass = before;
    mass_per_block = before_mass_.data();
  }
}

}  // namespace recur
