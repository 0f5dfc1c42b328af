#include "train/evaluation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "tests/test_util.h"
#include "tests/train/fresh_window_loss.h"

namespace recur {
namespace {

using torch::indexing::Slice;

ModelConfig SmallConfig(AttentionKind kind) { return testing::SmallModelConfig(kind, 40); }

// The reference: every row scored in one Forward pass over the whole row, in float64.
double WholeRowLoss(TransformerLM& model, const torch::Tensor& stream, int64_t rows,
                    int64_t* count) {
  torch::NoGradGuard no_grad;
  const int64_t width = stream.numel() / rows;
  auto matrix = stream.slice(0, 0, rows * width).view({rows, width});
  auto logits = model->Forward(matrix.index({Slice(), Slice(0, -1)})).to(torch::kFloat64);
  auto log_probs = torch::log_softmax(logits, -1);
  auto picked = log_probs.gather(-1, matrix.index({Slice(), Slice(1)}).unsqueeze(-1));
  *count = picked.numel();
  return -picked.sum().item<double>();
}

class EvaluationTest : public ::testing::TestWithParam<AttentionKind> {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    model_ = TransformerLM(SmallConfig(GetParam()));
    model_->eval();
    stream_ = torch::randint(0, 40, {203},
                             torch::kInt64);  // 3 rows of 67, 2 left over: 66 targets per row
  }
  TransformerLM model_{nullptr};
  torch::Tensor stream_;
};

TEST_P(EvaluationTest, CarriedContextEqualsScoringEachWholeRowAtOnce) {
  EvaluationOptions options;
  options.rows = 3;
  options.seq_len = 10;  // 7 windows, the last one short
  options.carry_context = true;
  const auto carried = Score(model_, stream_, options);
  int64_t count = 0;
  const double reference = WholeRowLoss(model_, stream_, 3, &count);
  EXPECT_EQ(carried.tokens, count);
  EXPECT_NEAR(carried.loss_sum, reference, 1e-4 * reference);
}

TEST_P(EvaluationTest, FreshWindowsEqualCarriedContextWhenOneWindowHoldsTheRow) {
  EvaluationOptions options;
  options.rows = 3;
  options.seq_len = 66;  // the whole row's targets
  const auto fresh = Score(model_, stream_, options);
  options.carry_context = true;
  const auto carried = Score(model_, stream_, options);
  EXPECT_EQ(fresh.tokens, carried.tokens);
  EXPECT_NEAR(fresh.loss_sum, carried.loss_sum, 1e-4 * fresh.loss_sum);
}

TEST_P(EvaluationTest, FreshWindowsForgetTheContextBeforeEachWindow) {
  EvaluationOptions options;
  options.rows = 3;
  options.seq_len = 10;
  const auto fresh = Score(model_, stream_, options);
  // The same as scoring each window on its own from an empty context.
  double expected = 0;
  for (int64_t start = 0; start < 66; start += 10) {
    const int64_t end = std::min<int64_t>(start + 10, 66);
    auto rows = stream_.slice(0, 0, 201).view({3, 67});
    torch::NoGradGuard no_grad;
    auto logits = model_->Forward(rows.index({Slice(), Slice(start, end)}));
    expected += torch::nn::functional::cross_entropy(
                    logits.reshape({-1, 40}),
                    rows.index({Slice(), Slice(start + 1, end + 1)}).reshape({-1}),
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
  }
  EXPECT_EQ(fresh.tokens, 3 * 66);
  EXPECT_NEAR(fresh.loss_sum, expected, 1e-4 * expected);
  EXPECT_NEAR(FreshWindowLoss(model_, stream_, 3, 10, torch::kCPU), expected / (3 * 66), 1e-5);
}

TEST_P(EvaluationTest, SlidingWindowsScoreEachTokenOnceWithAtLeastSeqLenMinusStrideContext) {
  EvaluationOptions options;
  options.rows = 3;
  options.seq_len = 10;
  options.stride = 4;
  options.bucket_starts = {0, 6};
  const auto sliding = Score(model_, stream_, options);
  // The reference, one target at a time: target t (predicting column t + 1) is scored by the
  // window starting at the multiple of the stride that leaves it 6..9 tokens of context (or by
  // the first window, for t < 10).
  torch::NoGradGuard no_grad;
  auto rows = stream_.slice(0, 0, 201).view({3, 67});
  double expected = 0;
  for (int64_t t = 0; t < 66; ++t) {
    const int64_t start = t < 10 ? 0 : ((t - 10) / 4 + 1) * 4;
    ASSERT_TRUE(t < 10 || (t - start >= 6 && t - start < 10)) << t;
    auto logits = model_->Forward(rows.index({Slice(), Slice(start, t + 1)})).select(1, -1);
    expected += torch::nn::functional::cross_entropy(
                    logits, rows.index({Slice(), t + 1}),
                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
  }
  EXPECT_EQ(sliding.tokens, 3 * 66);
  EXPECT_NEAR(sliding.loss_sum, expected, 1e-4 * expected);
  // Only the first window's first 6 targets have less than 6 tokens of context.
  EXPECT_EQ(sliding.buckets[0].tokens, 3 * 6);
  // A stride of the full window is fresh windows.
  options.stride = 10;
  EXPECT_NEAR(Score(model_, stream_, options).loss_sum,
              FreshWindowLoss(model_, stream_, 3, 10, torch::kCPU) * 3 * 66, 1e-6 * expected);
}

TEST_P(EvaluationTest, BucketsPartitionTheTokensByContextLength) {
  EvaluationOptions options;
  options.rows = 3;
  options.seq_len = 10;
  options.carry_context = true;
  options.bucket_starts = {0, 4, 25};
  const auto carried = Score(model_, stream_, options);
  ASSERT_EQ(carried.buckets.size(), 3u);
  // Each row has 66 targets, with contexts 0..65 tokens.
  EXPECT_EQ(carried.buckets[0].tokens, 3 * 4);
  EXPECT_EQ(carried.buckets[1].tokens, 3 * 21);
  EXPECT_EQ(carried.buckets[2].tokens, 3 * 41);
  EXPECT_EQ(carried.buckets[2].end, -1);
  double sum = 0;
  for (const auto& b : carried.buckets) sum += b.loss_sum;
  EXPECT_NEAR(sum, carried.loss_sum, 1e-9 * carried.loss_sum);
  // Fresh windows of 10: a target's context is its column in the window, 0..9.
  options.carry_context = false;
  const auto fresh = Score(model_, stream_, options);
  EXPECT_EQ(fresh.buckets[0].tokens, 3 * 4 * 7);
  EXPECT_EQ(fresh.buckets[1].tokens, 3 * 66 - 3 * 4 * 7);
  EXPECT_EQ(fresh.buckets[2].tokens, 0);
}

INSTANTIATE_TEST_SUITE_P(BothKinds, EvaluationTest,
                         ::testing::Values(AttentionKind::kLinear, AttentionKind::kSoftmax),
                         [](const auto& info) {
                           return std::string(AttentionKindName(info.param));
                         });

}  // namespace
}  // namespace recur
