// Token log-probabilities against float64 log_softmax and a full sort: the chosen token's value and
// the top N, in order, ties broken by id.

#include "model/logprobs.h"

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace recur::testing {
namespace {

TEST(LogprobsTest, MatchesAFloat64LogSoftmaxAndAFullSort) {
  torch::manual_seed(5);
  for (int64_t vocab : {7, 257, 10000}) {
    const torch::Tensor logits = (torch::randn({vocab}) * 4).contiguous();
    const auto reference = torch::log_softmax(logits.to(torch::kFloat64), 0);
    const auto order = std::get<1>(reference.sort(/*stable=*/true, 0, /*descending=*/true));
    const absl::Span<const float> row(logits.data_ptr<float>(), vocab);
    for (int top_n : {0, 1, 5, 20}) {
      const int64_t chosen = vocab / 3;
      const StepLogprobs got = ComputeLogprobs(row, chosen, top_n);
      EXPECT_EQ(got.chosen.token, chosen);
      EXPECT_NEAR(got.chosen.logprob, reference[chosen].item<double>(), 1e-9);
      ASSERT_EQ(got.top.size(), static_cast<size_t>(std::min<int64_t>(top_n, vocab)));
      for (size_t i = 0; i < got.top.size(); ++i) {
        EXPECT_EQ(got.top[i].token, order[i].item<int64_t>()) << vocab << " " << i;
        EXPECT_NEAR(got.top[i].logprob, reference[got.top[i].token].item<double>(), 1e-9);
      }
    }
  }
}

TEST(LogprobsTest, TiesGoToTheLowerIdAndTopNIsBounded) {
  const std::vector<float> logits = {1, 3, 3, 2, 3};
  const StepLogprobs got = ComputeLogprobs(logits, 0, 50);
  ASSERT_EQ(got.top.size(), 5u);  // at most the vocabulary (and kMaxTopLogprobs)
  EXPECT_EQ(got.top[0].token, 1);
  EXPECT_EQ(got.top[1].token, 2);
  EXPECT_EQ(got.top[2].token, 4);
  EXPECT_EQ(got.top[3].token, 3);
  double total = 0;
  for (const auto& t : got.top) total += std::exp(t.logprob);
  EXPECT_NEAR(total, 1.0, 1e-12);
}

}  // namespace
}  // namespace recur::testing
