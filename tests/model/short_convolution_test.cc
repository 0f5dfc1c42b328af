#include "model/short_convolution.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/test_util.h"

namespace recur {
namespace {

using testing::RelativeError;
using testing::TestDevice;
using torch::indexing::Slice;

// The definition, one output at a time in float64: y[b, t, c] = Σ_j w[j, c] · x[b, t − K + 1 + j,
// c], with x = 0 before the start.
torch::Tensor NaiveShortConvolution(const torch::Tensor& x, const torch::Tensor& weight) {
  auto x64 = x.to(torch::kCPU, torch::kFloat64), w64 = weight.to(torch::kCPU, torch::kFloat64);
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2), k = weight.size(0);
  auto y = torch::zeros({b, n, c}, torch::kFloat64);
  auto xa = x64.accessor<double, 3>();
  auto wa = w64.accessor<double, 2>();
  auto ya = y.accessor<double, 3>();
  for (int64_t r = 0; r < b; ++r) {
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t j = 0; j < k; ++j) {
          const int64_t source = t - k + 1 + j;
          if (source >= 0) ya[r][t][ch] += wa[j][ch] * xa[r][source][ch];
        }
      }
    }
  }
  return y;
}

class ShortConvolutionTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    torch::manual_seed(11);
    auto opts = torch::TensorOptions().device(TestDevice());
    x_ = torch::randn({2, 9, 6}, opts);
    weight_ = torch::randn({GetParam(), 6}, opts);
  }
  torch::Tensor x_, weight_;
};

TEST_P(ShortConvolutionTest, MatchesTheDefinition) {
  EXPECT_LE(RelativeError(CausalShortConvolution(x_, weight_), NaiveShortConvolution(x_, weight_)),
            1e-6);
}

TEST_P(ShortConvolutionTest, InPiecesWithATailEqualsWhole) {
  auto whole = CausalShortConvolution(x_, weight_);
  torch::Tensor tail;  // undefined: the first piece starts from zeros
  std::vector<torch::Tensor> pieces;
  // Pieces of 1, 2 and 6 tokens: shorter and longer than the tail.
  for (auto [start, length] : {std::pair<int64_t, int64_t>{0, 1}, {1, 2}, {3, 6}}) {
    pieces.push_back(CausalShortConvolution(x_.narrow(1, start, length), weight_, &tail));
    ASSERT_EQ(tail.sizes(), (std::vector<int64_t>{2, GetParam() - 1, 6}));
  }
  EXPECT_LE(RelativeError(torch::cat(pieces, 1), whole), 1e-6);
  // The tail is the last K − 1 inputs.
  EXPECT_TRUE(tail.equal(x_.narrow(1, 9 - (GetParam() - 1), GetParam() - 1)));
}

TEST_P(ShortConvolutionTest, GradientsMatchTheDefinitionsAutograd) {
  auto x = x_.to(torch::kFloat64).requires_grad_(),
       w = weight_.to(torch::kFloat64).requires_grad_();
  auto probe = torch::randn({2, 9, 6}, x.options().requires_grad(false));
  auto [gx, gw] = [&] {
    auto grads = torch::autograd::grad({(CausalShortConvolution(x, w) * probe).sum()}, {x, w});
    return std::make_pair(grads[0], grads[1]);
  }();
  // The reference: the same sum written with explicit zero padding and one product per tap.
  auto xr = x_.to(torch::kFloat64).requires_grad_(),
       wr = weight_.to(torch::kFloat64).requires_grad_();
  const int64_t k = GetParam();
  auto padded = torch::constant_pad_nd(xr, {0, 0, k - 1, 0});
  torch::Tensor y = torch::zeros_like(probe);
  for (int64_t t = 0; t < 9; ++t) {
    y.index_put_({Slice(), t}, (padded.index({Slice(), Slice(t, t + k)}) * wr.unsqueeze(0)).sum(1));
  }
  auto ref = torch::autograd::grad({(y * probe).sum()}, {xr, wr});
  EXPECT_LE(RelativeError(gx, ref[0]), 1e-12);
  EXPECT_LE(RelativeError(gw, ref[1]), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Widths, ShortConvolutionTest, ::testing::Values(1, 2, 4),
                         [](const auto& info) { return "K" + std::to_string(info.param); });

TEST(ShortConvolutionErrors, MismatchedShapesThrowWithMessage) {
  auto x = torch::randn({1, 4, 6});
  EXPECT_THROW(CausalShortConvolution(x, torch::randn({3, 5})), c10::Error);
  torch::Tensor tail = torch::zeros({1, 1, 6});  // K = 3 needs two rows
  try {
    CausalShortConvolution(x, torch::randn({3, 6}), &tail);
    FAIL() << "expected a throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos);
  }
}

}  // namespace
}  // namespace recur
