#include "model/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <tuple>

namespace recur {
namespace {

using ::testing::HasSubstr;

std::vector<float> Logits() { return {0.5f, 2.0f, -1.0f, 1.5f, 0.0f, 3.0f, -2.0f, 1.0f}; }

// Random logits with the spread of a trained model's (a few tokens far ahead of the rest).
std::vector<float> RandomLogits(int64_t vocab, uint64_t seed, double spread = 3.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0.0, spread);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = static_cast<float>(normal(gen));
  return logits;
}

TokenSet Seen(int64_t vocab, std::initializer_list<int64_t> ids) {
  TokenSet seen(vocab);
  for (int64_t id : ids) seen.Insert(id);
  return seen;
}

std::vector<int64_t> Draw(const SamplingParams& params, int n,
                          const std::vector<float>& logits = Logits()) {
  Sampler sampler(params);
  const TokenSet none(static_cast<int64_t>(logits.size()));
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.Sample(logits, none));
  return out;
}

// The uniform draws a sampler seeded with `seed` makes, as Sampler documents them.
class Uniforms {
 public:
  explicit Uniforms(uint64_t seed) : generator_(seed) {}
  double Next() { return static_cast<double>(generator_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 generator_;
};

// float64 references, written from the definitions with full sorts.

// Penalised scores in float64.
std::vector<double> Scores(const std::vector<float>& logits, const TokenSet& seen, double penalty) {
  std::vector<double> scores(logits.begin(), logits.end());
  seen.ForEach([&](int64_t id) {
    double& s = scores[id];
    s = s > 0 ? s / penalty : s * penalty;
  });
  return scores;
}

// Token ids by rank: the higher score first, ties to the lower id.
std::vector<int64_t> Ranked(const std::vector<double>& scores) {
  std::vector<int64_t> ids(scores.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return ids;
}

// The top-k stream: the k best in rank order, softmax, the top-p prefix, a draw in rank order
// (what recur's sampler did before the vectorised one, for every mode).
int64_t ReferenceTopK(const std::vector<double>& scores, const SamplingParams& p, Uniforms& u) {
  std::vector<int64_t> ids = Ranked(scores);
  ids.resize(std::min<size_t>(ids.size(), p.top_k));
  std::vector<double> w;
  for (int64_t id : ids) w.push_back(std::exp((scores[id] - scores[ids[0]]) / p.temperature));
  double total = 0;
  for (double x : w) total += x;
  size_t n = 0;
  for (double cumulative = 0; n < w.size();) {
    cumulative += w[n++] / total;
    if (cumulative >= p.top_p) break;
  }
  if (n == 1) return ids[0];
  total = 0;
  for (size_t i = 0; i < n; ++i) total += w[i];
  double target = u.Next() * total;
  for (size_t i = 0; i < n; ++i) {
    if (target < w[i]) return ids[i];
    target -= w[i];
  }
  return ids[n - 1];
}

// The nucleus (top_k 0) stream: inverse CDF in id order, rejection for top_p.
int64_t ReferenceNucleus(const std::vector<double>& scores, const SamplingParams& p, Uniforms& u) {
  const double max = *std::max_element(scores.begin(), scores.end());
  std::vector<double> w;
  for (double s : scores) w.push_back(std::exp((s - max) / p.temperature));
  const std::vector<int64_t> ranked = Ranked(w);
  std::vector<size_t> rank(w.size());
  for (size_t r = 0; r < ranked.size(); ++r) rank[ranked[r]] = r;
  double total = 0;
  for (double x : w) total += x;
  size_t allowed = w.size();  // draws among the first `allowed` ranks
  double mass = total;
  while (true) {
    double target = u.Next() * mass;
    int64_t j = -1;
    for (size_t i = 0; i < w.size(); ++i) {
      if (rank[i] >= allowed) continue;
      j = static_cast<int64_t>(i);
      if (target < w[i]) break;
      target -= w[i];
    }
    if (p.top_p >= 1.0) return j;
    double before = 0;
    for (size_t r = 0; r < rank[j]; ++r) before += w[ranked[r]];
    if (before < p.top_p * total) return j;
    allowed = rank[j];
    mass = before;
  }
}

// The nucleus in float64: the shortest rank prefix whose probability reaches top_p.
std::vector<int64_t> Nucleus(const std::vector<float>& logits, double temperature, double top_p) {
  std::vector<double> scores(logits.begin(), logits.end());
  const std::vector<int64_t> ranked = Ranked(scores);
  double total = 0;
  for (double s : scores) total += std::exp((s - scores[ranked[0]]) / temperature);
  std::vector<int64_t> nucleus;
  double cumulative = 0;
  for (int64_t id : ranked) {
    nucleus.push_back(id);
    cumulative += std::exp((scores[id] - scores[ranked[0]]) / temperature) / total;
    if (cumulative >= top_p) break;
  }
  std::sort(nucleus.begin(), nucleus.end());
  return nucleus;
}

TEST(SamplingTest, SameSeedSameTokens) {
  SamplingParams p;
  p.seed = 1234;
  p.temperature = 1.3;
  EXPECT_EQ(Draw(p, 200), Draw(p, 200));
  SamplingParams q = p;
  q.seed = 1235;
  EXPECT_NE(Draw(p, 200), Draw(q, 200));
}

TEST(SamplingTest, GreedyIsArgmax) {
  SamplingParams p;
  p.temperature = 0.0;
  for (int64_t id : Draw(p, 10)) EXPECT_EQ(id, 5);
  // Ties go to the lower id.
  for (int64_t id : Draw(p, 3, {1.0f, 4.0f, 2.0f, 4.0f})) EXPECT_EQ(id, 1);
}

// Greedy and top-k keep the stream recur has always produced: the same tokens as the float64
// reference, draw for draw, at a real vocabulary with a repetition penalty.
TEST(SamplingTest, GreedyAndTopKMatchTheReferenceDrawForDraw) {
  const int64_t vocab = 10'000;
  // {top_k, top_p, temperature, repetition penalty}: penalties above 1 (chunks skipped), below 1
  // (every token scanned) and off.
  for (const auto& [top_k, top_p, temperature, penalty] :
       std::vector<std::tuple<int64_t, double, double, double>>{{1, 1.0, 1.0, 1.3},
                                                                {40, 1.0, 1.0, 1.0},
                                                                {40, 0.9, 0.7, 1.3},
                                                                {40, 0.9, 0.7, 0.8},
                                                                {1000, 0.5, 1.5, 1.3},
                                                                {1, 1.0, 0.0, 1.3},
                                                                {0, 1.0, 0.0, 1.0},
                                                                {0, 1.0, 0.0, 0.8}}) {
    SamplingParams p;
    p.top_k = top_k;
    p.top_p = top_p;
    p.temperature = temperature;
    p.repetition_penalty = penalty;
    p.seed = 99;
    Sampler sampler(p);
    Uniforms u(p.seed);
    TokenSet seen(vocab);
    for (int step = 0; step < 300; ++step) {
      const std::vector<float> logits = RandomLogits(vocab, step);
      const std::vector<double> scores = Scores(logits, seen, p.repetition_penalty);
      const int64_t expected = temperature == 0 ? Ranked(scores)[0] : ReferenceTopK(scores, p, u);
      const int64_t token = sampler.Sample(logits, seen);
      ASSERT_EQ(token, expected) << "top_k " << top_k << " step " << step;
      seen.Insert(token);
    }
  }
}

// Without top-k the draw is the documented one (inverse CDF in id order, rejection for top-p):
// the float32 sampler gives the float64 reference's tokens, draw for draw.
TEST(SamplingTest, NucleusMatchesTheReferenceDrawForDraw) {
  for (const int64_t vocab : {3, 257, 10'000, 33'278}) {
    for (const double top_p : {1.0, 0.95, 0.5}) {
      SamplingParams p;
      p.top_p = top_p;
      p.temperature = 0.8;
      p.repetition_penalty = 1.2;
      p.seed = static_cast<uint64_t>(vocab) + 7;
      Sampler sampler(p);
      Uniforms u(p.seed);
      TokenSet seen(vocab);
      for (int step = 0; step < 100; ++step) {
        const std::vector<float> logits = RandomLogits(vocab, 1000 + step);
        const int64_t expected = ReferenceNucleus(Scores(logits, seen, p.repetition_penalty), p, u);
        const int64_t token = sampler.Sample(logits, seen);
        ASSERT_EQ(token, expected) << "vocab " << vocab << " top_p " << top_p << " step " << step;
        seen.Insert(token);
      }
    }
  }
}

TEST(SamplingTest, TopKNeverEmitsAnExcludedToken) {
  SamplingParams p;
  p.top_k = 3;
  p.temperature = 5.0;  // flatten so excluded tokens would show up if allowed
  for (int64_t id : Draw(p, 2000)) EXPECT_TRUE(id == 1 || id == 3 || id == 5) << id;
}

TEST(SamplingTest, TopPNeverEmitsAnExcludedToken) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two (0.8 ≥ 0.75).
  std::vector<float> logits{std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  SamplingParams p;
  p.top_p = 0.75;
  std::map<int64_t, int> counts;
  for (int64_t id : Draw(p, 4000, logits)) ++counts[id];
  EXPECT_EQ(counts.size(), 2u);
  // Renormalised 0.5/0.8 = 0.625 for token 1.
  EXPECT_NEAR(counts[1] / 4000.0, 0.625, 0.03);
}

// At a real vocabulary and flat logits (the nucleus thousands of tokens wide), every token drawn
// is in the float64 nucleus, and the draws cover it.
TEST(SamplingTest, WideNucleusStaysInsideTheReferenceNucleus) {
  const std::vector<float> logits = RandomLogits(10'000, 5, /*spread=*/0.5);
  SamplingParams p;
  p.top_p = 0.9;
  const std::vector<int64_t> nucleus = Nucleus(logits, p.temperature, p.top_p);
  ASSERT_GT(nucleus.size(), 5000u);
  std::set<int64_t> drawn;
  for (int64_t id : Draw(p, 3000, logits)) {
    ASSERT_TRUE(std::binary_search(nucleus.begin(), nucleus.end(), id)) << id;
    drawn.insert(id);
  }
  EXPECT_GT(drawn.size(), 2000u);
}

// Frequencies follow the renormalised nucleus: within four standard errors for every token.
TEST(SamplingTest, FrequenciesFollowTheNucleusSoftmax) {
  const std::vector<float> logits = Logits();
  for (const double top_p : {1.0, 0.8}) {
    SamplingParams p;
    p.top_p = top_p;
    p.temperature = 1.5;
    const std::vector<int64_t> nucleus = Nucleus(logits, p.temperature, top_p);
    double total = 0;
    for (int64_t id : nucleus) total += std::exp(logits[id] / p.temperature);
    const int n = 40'000;
    std::map<int64_t, int> counts;
    for (int64_t id : Draw(p, n, logits)) ++counts[id];
    for (int64_t id = 0; id < static_cast<int64_t>(logits.size()); ++id) {
      const bool inside = std::binary_search(nucleus.begin(), nucleus.end(), id);
      const double expected = inside ? std::exp(logits[id] / p.temperature) / total : 0.0;
      const double error = std::sqrt(expected * (1 - expected) / n);
      EXPECT_NEAR(counts[id] / double(n), expected, 4 * error + 1e-9)
          << "token " << id << " top_p " << top_p;
    }
  }
}

TEST(SamplingTest, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p;
  p.temperature = 0.0;
  p.repetition_penalty = 4.0;
  Sampler sampler(p);
  // Token 5 (logit 3) seen: 3/4 = 0.75 drops below token 1 (2.0).
  EXPECT_EQ(sampler.Sample(Logits(), Seen(8, {5})), 1);
  // A negative logit is multiplied, pushing it further down.
  std::vector<float> negative{-1.0f, -1.5f};
  EXPECT_EQ(sampler.Sample(negative, Seen(2, {0})), 1);
  // Sampling modes apply it too: seen, token 1's logit 40 becomes 4e-5, far below token 0's 20.
  SamplingParams q;
  q.repetition_penalty = 1e6;
  for (const double top_p : {1.0, 0.9}) {
    q.top_p = top_p;
    for (int64_t id : Draw(q, 200, {20.0f, 40.0f})) EXPECT_EQ(id, 1);
    Sampler penalised(q);
    for (int i = 0; i < 200; ++i) EXPECT_EQ(penalised.Sample({20.0f, 40.0f}, Seen(2, {1})), 0);
  }
}

// A broken model's logits (NaN, infinities) give some token of the vocabulary, not a crash.
TEST(SamplingTest, NonFiniteLogitsStillGiveAToken) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const std::vector<float>& logits :
       {std::vector<float>{nan, nan, nan}, std::vector<float>{0.0f, inf, 1.0f},
        std::vector<float>{-inf, -inf, -inf}}) {
    for (const double top_p : {1.0, 0.5}) {
      for (const int64_t top_k : {0, 2}) {
        SamplingParams p;
        p.top_p = top_p;
        p.top_k = top_k;
        for (int64_t id : Draw(p, 5, logits)) EXPECT_TRUE(id >= 0 && id < 3) << id;
      }
    }
  }
}

TEST(SamplingTest, ValidateNamesTheField) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_THAT(p.Validate().message(), HasSubstr("temperature"));
  p = {};
  p.top_p = 0.0;
  EXPECT_THAT(p.Validate().message(), HasSubstr("top_p"));
  p.top_p = 1.5;
  EXPECT_THAT(p.Validate().message(), HasSubstr("top_p"));
  p = {};
  p.top_k = -2;
  EXPECT_THAT(p.Validate().message(), HasSubstr("top_k"));
  p = {};
  p.repetition_penalty = 0.0;
  EXPECT_THAT(p.Validate().message(), HasSubstr("repetition_penalty"));
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
}

}  // namespace
}  // namespace recur
