#include "model/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace recur {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<float> Logits() { return {0.5f, 2.0f, -1.0f, 1.5f, 0.0f, 3.0f, -2.0f, 1.0f}; }

std::vector<int64_t> Draw(const SamplingParams& params, int n) {
  Sampler sampler(params);
  auto logits = Logits();
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(sampler.Sample(logits, {}));
  return out;
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
}

TEST(SamplingTest, TopKNeverEmitsAnExcludedToken) {
  SamplingParams p;
  p.top_k = 3;
  p.temperature = 5.0;  // flatten so excluded tokens would show up if allowed
  Sampler sampler(p);
  EXPECT_THAT(sampler.Candidates(Logits(), {}), ElementsAre(1, 3, 5));
  for (int64_t id : Draw(p, 2000)) EXPECT_TRUE(id == 1 || id == 3 || id == 5) << id;
}

TEST(SamplingTest, TopPNeverEmitsAnExcludedToken) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps the first two (0.8 ≥ 0.75).
  std::vector<float> logits{std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  SamplingParams p;
  p.top_p = 0.75;
  Sampler sampler(p);
  EXPECT_THAT(sampler.Candidates(logits, {}), ElementsAre(1, 3));
  std::map<int64_t, int> counts;
  for (int i = 0; i < 4000; ++i) ++counts[sampler.Sample(logits, {})];
  EXPECT_EQ(counts.size(), 2u);
  // Renormalised 0.5/0.8 = 0.625 for token 1.
  EXPECT_NEAR(counts[1] / 4000.0, 0.625, 0.03);
}

TEST(SamplingTest, FrequenciesFollowTheSoftmax) {
  std::vector<float> logits{0.0f, std::log(2.0f), std::log(3.0f)};  // p = 1/6, 2/6, 3/6
  Sampler sampler(SamplingParams{});
  std::map<int64_t, int> counts;
  const int n = 12000;
  for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits, {})];
  EXPECT_NEAR(counts[0] / double(n), 1.0 / 6, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 2.0 / 6, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 3.0 / 6, 0.02);
}

TEST(SamplingTest, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p;
  p.temperature = 0.0;
  p.repetition_penalty = 4.0;
  Sampler sampler(p);
  // Token 5 (logit 3) seen: 3/4 = 0.75 drops below token 1 (2.0).
  EXPECT_EQ(sampler.Sample(Logits(), std::vector<int64_t>{5}), 1);
  // A negative logit is multiplied, pushing it further down.
  std::vector<float> negative{-1.0f, -1.5f};
  EXPECT_EQ(sampler.Sample(negative, std::vector<int64_t>{0}), 1);
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
