#include "model/softmax_attention.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "tests/test_util.h"

namespace recur {
namespace {

using testing::RelativeError;
using testing::TestDevice;
using torch::indexing::Slice;

// softmax(QKᵀ/√d + causal mask) V written out row by row in float64: the independent reference.
torch::Tensor LoopReference(const torch::Tensor& q, const torch::Tensor& k,
                            const torch::Tensor& v) {
  auto q64 = q.to(torch::kCPU, torch::kFloat64), k64 = k.to(torch::kCPU, torch::kFloat64),
       v64 = v.to(torch::kCPU, torch::kFloat64);
  auto out = torch::zeros_like(v64);
  const int64_t n = q.size(2);
  for (int64_t i = 0; i < n; ++i) {
    auto qi = q64.index({Slice(), Slice(), Slice(i, i + 1)});
    auto keys = k64.index({Slice(), Slice(), Slice(0, i + 1)});
    auto scores = torch::matmul(qi, keys.transpose(-1, -2)) / std::sqrt(double(q.size(3)));
    out.index_put_(
        {Slice(), Slice(), Slice(i, i + 1)},
        torch::matmul(torch::softmax(scores, -1), v64.index({Slice(), Slice(), Slice(0, i + 1)})));
  }
  return out;
}

class SoftmaxAttentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(TestDevice());
    q_ = torch::randn({2, 3, 29, 8}, opts);
    k_ = torch::randn({2, 3, 29, 8}, opts);
    v_ = torch::randn({2, 3, 29, 8}, opts);
  }
  torch::Tensor Positions(int64_t p) const {
    return torch::full({2}, p, torch::TensorOptions().dtype(torch::kInt64).device(q_.device()));
  }
  torch::Tensor q_, k_, v_;
};

TEST_F(SoftmaxAttentionTest, ParallelMatchesLoopReference) {
  EXPECT_LE(RelativeError(CausalSoftmaxAttention(q_, k_, v_), LoopReference(q_, k_, v_)), 1e-5);
}

TEST_F(SoftmaxAttentionTest, CacheStepsMatchParallel) {
  auto cache = KeyValueCache::Empty(2, 3, 8, q_.device());
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < q_.size(2); ++i) {
    auto slice = Slice(i, i + 1);
    outputs.push_back(CachedSoftmaxAttention(
        q_.index({Slice(), Slice(), slice}), k_.index({Slice(), Slice(), slice}),
        v_.index({Slice(), Slice(), slice}), Positions(i), &cache));
  }
  EXPECT_LE(RelativeError(torch::cat(outputs, 2), CausalSoftmaxAttention(q_, k_, v_)), 1e-5);
  EXPECT_GE(cache.capacity(), q_.size(2));
}

TEST_F(SoftmaxAttentionTest, PrefillInPiecesThenStepsMatchParallel) {
  auto cache = KeyValueCache::Empty(2, 3, 8, q_.device());
  auto first = CachedSoftmaxAttention(
      q_.index({Slice(), Slice(), Slice(0, 11)}), k_.index({Slice(), Slice(), Slice(0, 11)}),
      v_.index({Slice(), Slice(), Slice(0, 11)}), Positions(0), &cache);
  auto second = CachedSoftmaxAttention(
      q_.index({Slice(), Slice(), Slice(11, 20)}), k_.index({Slice(), Slice(), Slice(11, 20)}),
      v_.index({Slice(), Slice(), Slice(11, 20)}), Positions(11), &cache);
  std::vector<torch::Tensor> parts{first, second};
  for (int64_t i = 20; i < 29; ++i) {
    auto slice = Slice(i, i + 1);
    parts.push_back(CachedSoftmaxAttention(
        q_.index({Slice(), Slice(), slice}), k_.index({Slice(), Slice(), slice}),
        v_.index({Slice(), Slice(), slice}), Positions(i), &cache));
  }
  EXPECT_LE(RelativeError(torch::cat(parts, 2), CausalSoftmaxAttention(q_, k_, v_)), 1e-5);
}

// Rows of one batch may sit at different positions; each must see only its own history.
TEST_F(SoftmaxAttentionTest, RowsAtDifferentPositions) {
  auto cache = KeyValueCache::Empty(2, 3, 8, q_.device());
  // Row 0 takes 10 tokens, row 1 takes 4 (its other 6 are padding written past its position).
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(q_.device());
  CachedSoftmaxAttention(
      q_.index({Slice(), Slice(), Slice(0, 10)}), k_.index({Slice(), Slice(), Slice(0, 10)}),
      v_.index({Slice(), Slice(), Slice(0, 10)}), torch::zeros({2}, long_opts), &cache);
  auto positions = torch::tensor({10, 4}, long_opts);
  auto pick = [&](const torch::Tensor& t) {
    return torch::stack({t[0].index({Slice(), Slice(10, 11)}), t[1].index({Slice(), Slice(4, 5)})});
  };
  auto y = CachedSoftmaxAttention(pick(q_), pick(k_), pick(v_), positions, &cache);
  // Reference: row 0 over tokens 0..10, row 1 over tokens 0..4.
  auto ref0 = CausalSoftmaxAttention(q_.index({Slice(0, 1), Slice(), Slice(0, 11)}),
                                     k_.index({Slice(0, 1), Slice(), Slice(0, 11)}),
                                     v_.index({Slice(0, 1), Slice(), Slice(0, 11)}))
                  .index({Slice(), Slice(), Slice(10, 11)});
  auto ref1 = CausalSoftmaxAttention(q_.index({Slice(1, 2), Slice(), Slice(0, 5)}),
                                     k_.index({Slice(1, 2), Slice(), Slice(0, 5)}),
                                     v_.index({Slice(1, 2), Slice(), Slice(0, 5)}))
                  .index({Slice(), Slice(), Slice(4, 5)});
  EXPECT_LE(RelativeError(y, torch::cat({ref0, ref1}, 0)), 1e-5);
}

}  // namespace
}  // namespace recur
