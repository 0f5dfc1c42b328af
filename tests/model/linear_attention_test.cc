#include "model/linear_attention.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/test_util.h"

namespace recur {
namespace {

using testing::RelativeError;
using testing::TestDevice;
using torch::indexing::Slice;

constexpr double kEps = 1e-6;

struct Shape {
  int64_t batch, heads, length, dim, chunk;
};

std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << "B" << s.batch << "_H" << s.heads << "_N" << s.length << "_d" << s.dim << "_C"
            << s.chunk;
}

class LinearAttentionFormsTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    const Shape s = GetParam();
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(TestDevice());
    q_ = torch::randn({s.batch, s.heads, s.length, s.dim}, opts);
    k_ = torch::randn({s.batch, s.heads, s.length, s.dim}, opts);
    v_ = torch::randn({s.batch, s.heads, s.length, s.dim}, opts);
  }
  // The float64 naive form: the reference every float32 form is held to.
  torch::Tensor Reference() const {
    return LinearAttentionNaive(q_.to(torch::kFloat64), k_.to(torch::kFloat64),
                                v_.to(torch::kFloat64), kEps);
  }
  torch::Tensor q_, k_, v_;
};

TEST_P(LinearAttentionFormsTest, NaiveFloat32MatchesFloat64) {
  EXPECT_LE(RelativeError(LinearAttentionNaive(q_, k_, v_, kEps), Reference()), 1e-5);
}

TEST_P(LinearAttentionFormsTest, ChunkwiseMatchesNaive) {
  auto y = LinearAttentionChunkwise(q_, k_, v_, GetParam().chunk, kEps);
  ASSERT_EQ(y.sizes(), q_.sizes());
  EXPECT_LE(RelativeError(y, Reference()), 1e-5);
}

TEST_P(LinearAttentionFormsTest, RecurrentMatchesNaive) {
  const Shape s = GetParam();
  auto state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < s.length; ++i) {
    outputs.push_back(
        LinearAttentionStep(q_.select(2, i), k_.select(2, i), v_.select(2, i), kEps, &state));
  }
  EXPECT_LE(RelativeError(torch::stack(outputs, 2), Reference()), 1e-5);
}

TEST_P(LinearAttentionFormsTest, ChunkwiseStateEqualsRecurrentState) {
  const Shape s = GetParam();
  auto chunk_state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  LinearAttentionChunkwise(q_, k_, v_, s.chunk, kEps, &chunk_state);
  auto step_state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  for (int64_t i = 0; i < s.length; ++i) {
    LinearAttentionStep(q_.select(2, i), k_.select(2, i), v_.select(2, i), kEps, &step_state);
  }
  // Independent reference for the sums: S = Σ φ(k) vᵀ, z = Σ φ(k) in float64.
  auto fk = EluFeatureMap(k_.to(torch::kFloat64));
  auto s_ref = torch::matmul(fk.transpose(-1, -2), v_.to(torch::kFloat64));
  auto z_ref = fk.sum(2);
  EXPECT_LE(RelativeError(chunk_state.s, s_ref), 1e-5);
  EXPECT_LE(RelativeError(chunk_state.z, z_ref), 1e-5);
  EXPECT_LE(RelativeError(step_state.s, s_ref), 1e-5);
  EXPECT_LE(RelativeError(step_state.z, z_ref), 1e-5);
}

TEST_P(LinearAttentionFormsTest, ChunkwiseContinuesFromState) {
  const Shape s = GetParam();
  const int64_t split = s.length / 3 + 1;
  auto state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  auto first = LinearAttentionChunkwise(
      q_.index({Slice(), Slice(), Slice(0, split)}), k_.index({Slice(), Slice(), Slice(0, split)}),
      v_.index({Slice(), Slice(), Slice(0, split)}), s.chunk, kEps, &state);
  auto second = LinearAttentionChunkwise(
      q_.index({Slice(), Slice(), Slice(split)}), k_.index({Slice(), Slice(), Slice(split)}),
      v_.index({Slice(), Slice(), Slice(split)}), s.chunk, kEps, &state);
  EXPECT_LE(RelativeError(torch::cat({first, second}, 2), Reference()), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearAttentionFormsTest,
                         ::testing::Values(Shape{1, 1, 1, 4, 1}, Shape{1, 1, 37, 8, 1},
                                           Shape{2, 3, 50, 16, 7}, Shape{3, 2, 64, 16, 16},
                                           Shape{2, 4, 100, 32, 64}, Shape{1, 8, 96, 8, 32},
                                           Shape{2, 2, 45, 16, 45}, Shape{2, 1, 30, 8, 128}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

// The decayed forms (S ← γ S + φ(k) vᵀ). Decays from fast to none, so that the terms a wrong
// exponent would misweigh are large.
class DecayedLinearAttentionTest : public LinearAttentionFormsTest {
 protected:
  void SetUp() override {
    LinearAttentionFormsTest::SetUp();
    decay_ = torch::linspace(0.5, 1.0, GetParam().heads, q_.options());
  }
  // An independent reference: the recurrence written out token by token, in float64.
  std::pair<torch::Tensor, LinearAttentionState> Recurrence() const {
    const Shape s = GetParam();
    auto fq = EluFeatureMap(q_.to(torch::kFloat64)), fk = EluFeatureMap(k_.to(torch::kFloat64));
    auto v = v_.to(torch::kFloat64);
    auto gamma = decay_.to(torch::kFloat64);
    auto state_s = torch::zeros({s.batch, s.heads, s.dim, s.dim}, fq.options());
    auto state_z = torch::zeros({s.batch, s.heads, s.dim}, fq.options());
    auto y = torch::empty_like(v);
    for (int64_t i = 0; i < s.length; ++i) {
      for (int64_t h = 0; h < s.heads; ++h) {
        const double g = gamma[h].item<double>();
        for (int64_t b = 0; b < s.batch; ++b) {
          auto fk_i = fk[b][h][i], fq_i = fq[b][h][i];
          state_s[b][h] = g * state_s[b][h] + torch::outer(fk_i, v[b][h][i]);
          state_z[b][h] = g * state_z[b][h] + fk_i;
          y[b][h][i] =
              torch::mv(state_s[b][h].t(), fq_i) / (torch::dot(state_z[b][h], fq_i) + kEps);
        }
      }
    }
    return {y, LinearAttentionState{state_s, state_z}};
  }
  torch::Tensor decay_;
};

TEST_P(DecayedLinearAttentionTest, NaiveMatchesRecurrence) {
  auto reference = Recurrence().first;
  auto naive = LinearAttentionNaive(q_.to(torch::kFloat64), k_.to(torch::kFloat64),
                                    v_.to(torch::kFloat64), kEps, decay_);
  EXPECT_LE(RelativeError(naive, reference), 1e-10);
}

TEST_P(DecayedLinearAttentionTest, ChunkwiseMatchesRecurrence) {
  const Shape s = GetParam();
  auto [reference, reference_state] = Recurrence();
  auto state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  auto y = LinearAttentionChunkwise(q_, k_, v_, s.chunk, kEps, &state, decay_);
  ASSERT_EQ(y.sizes(), q_.sizes());
  EXPECT_LE(RelativeError(y, reference), 1e-5);
  EXPECT_LE(RelativeError(state.s, reference_state.s), 1e-5);
  EXPECT_LE(RelativeError(state.z, reference_state.z), 1e-5);
}

TEST_P(DecayedLinearAttentionTest, StepMatchesRecurrence) {
  const Shape s = GetParam();
  auto [reference, reference_state] = Recurrence();
  auto state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < s.length; ++i) {
    outputs.push_back(LinearAttentionStep(q_.select(2, i), k_.select(2, i), v_.select(2, i), kEps,
                                          &state, decay_));
  }
  EXPECT_LE(RelativeError(torch::stack(outputs, 2), reference), 1e-5);
  EXPECT_LE(RelativeError(state.s, reference_state.s), 1e-5);
  EXPECT_LE(RelativeError(state.z, reference_state.z), 1e-5);
}

TEST_P(DecayedLinearAttentionTest, ChunkwiseContinuesFromState) {
  const Shape s = GetParam();
  const int64_t split = s.length / 3 + 1;
  auto state = LinearAttentionState::Zeros(s.batch, s.heads, s.dim, s.dim, q_.device());
  auto part = [&](Slice range) {
    return LinearAttentionChunkwise(
        q_.index({Slice(), Slice(), range}), k_.index({Slice(), Slice(), range}),
        v_.index({Slice(), Slice(), range}), s.chunk, kEps, &state, decay_);
  };
  auto first = part(Slice(0, split));
  auto second = part(Slice(split));
  EXPECT_LE(RelativeError(torch::cat({first, second}, 2), Recurrence().first), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecayedLinearAttentionTest,
                         ::testing::Values(Shape{1, 1, 1, 4, 1}, Shape{1, 2, 37, 8, 1},
                                           Shape{2, 3, 50, 8, 7}, Shape{1, 4, 64, 8, 16},
                                           Shape{2, 4, 100, 8, 64}, Shape{1, 2, 30, 4, 128}),
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

// Gradients with respect to q, k, v and the decay itself (a learned decay trains through the
// chunkwise form), against autograd of the naive form, in float64.
TEST(DecayedLinearAttentionGradientTest, ChunkwiseGradientsMatchNaive) {
  torch::manual_seed(13);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(TestDevice());
  auto decay = torch::tensor({0.7, 0.9, 0.97}, opts).requires_grad_();
  for (int64_t chunk : {1, 5, 16, 40}) {
    auto q = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto k = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto v = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto upstream = torch::randn({2, 3, 33, 8}, opts);
    auto naive_grads = torch::autograd::grad(
        {(LinearAttentionNaive(q, k, v, kEps, decay) * upstream).sum()}, {q, k, v, decay});
    auto chunk_grads = torch::autograd::grad(
        {(LinearAttentionChunkwise(q, k, v, chunk, kEps, nullptr, decay) * upstream).sum()},
        {q, k, v, decay});
    for (int i = 0; i < 4; ++i) {
      EXPECT_LE(RelativeError(chunk_grads[i], naive_grads[i]), 1e-10)
          << "chunk " << chunk << " input " << i;
    }
    EXPECT_GT(naive_grads[3].abs().min().item<double>(), 1e-6);  // the decay does matter
  }
}

// The naive form's gradient with respect to the decay, against central finite differences.
TEST(DecayedLinearAttentionGradientTest, DecayGradientMatchesFiniteDifferences) {
  torch::manual_seed(17);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto q = torch::randn({1, 2, 12, 4}, opts), k = torch::randn({1, 2, 12, 4}, opts);
  auto v = torch::randn({1, 2, 12, 4}, opts), upstream = torch::randn({1, 2, 12, 4}, opts);
  auto decay = torch::tensor({0.8, 0.95}, opts).requires_grad_();
  auto loss = [&](const torch::Tensor& g) {
    return (LinearAttentionNaive(q, k, v, kEps, g) * upstream).sum();
  };
  auto grad = torch::autograd::grad({loss(decay)}, {decay})[0];
  const double h = 1e-6;
  for (int64_t i = 0; i < 2; ++i) {
    auto up = decay.detach().clone(), down = decay.detach().clone();
    up[i] += h;
    down[i] -= h;
    const double numeric = (loss(up) - loss(down)).item<double>() / (2 * h);
    EXPECT_NEAR(grad[i].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
        << "head " << i;
  }
}

TEST(DecayedLinearAttentionGradientTest, MultiScaleDecayFollowsRetNet) {
  auto decay = MultiScaleDecay(4, torch::kCPU);
  ASSERT_EQ(decay.numel(), 4);
  for (int64_t h = 0; h < 4; ++h) {
    EXPECT_FLOAT_EQ(decay[h].item<float>(), 1.0f - std::pow(2.0f, -5.0f - h));
  }
}

// Gradients of the chunkwise form against autograd of the naive form, in float64.
TEST(LinearAttentionGradientTest, ChunkwiseGradientsMatchNaive) {
  torch::manual_seed(11);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(TestDevice());
  for (int64_t chunk : {1, 5, 16, 40}) {
    auto q = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto k = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto v = torch::randn({2, 3, 33, 8}, opts).requires_grad_();
    auto upstream = torch::randn({2, 3, 33, 8}, opts);

    auto naive_grads =
        torch::autograd::grad({(LinearAttentionNaive(q, k, v, kEps) * upstream).sum()}, {q, k, v});
    auto chunk_grads = torch::autograd::grad(
        {(LinearAttentionChunkwise(q, k, v, chunk, kEps) * upstream).sum()}, {q, k, v});
    for (int i = 0; i < 3; ++i) {
      EXPECT_LE(RelativeError(chunk_grads[i], naive_grads[i]), 1e-10)
          << "chunk " << chunk << " input " << i;
    }
  }
}

// Gradients also flow through an initial state (the trainer may carry state across windows).
TEST(LinearAttentionGradientTest, GradientsFlowThroughState) {
  torch::manual_seed(12);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(TestDevice());
  auto q = torch::randn({1, 2, 20, 4}, opts).requires_grad_();
  auto k = torch::randn({1, 2, 20, 4}, opts).requires_grad_();
  auto v = torch::randn({1, 2, 20, 4}, opts).requires_grad_();
  auto whole = LinearAttentionChunkwise(q, k, v, 6, kEps);
  auto state = LinearAttentionState::Zeros(1, 2, 4, 4, q.device());
  auto a = LinearAttentionChunkwise(q.index({Slice(), Slice(), Slice(0, 9)}),
                                    k.index({Slice(), Slice(), Slice(0, 9)}),
                                    v.index({Slice(), Slice(), Slice(0, 9)}), 6, kEps, &state);
  auto b = LinearAttentionChunkwise(q.index({Slice(), Slice(), Slice(9)}),
                                    k.index({Slice(), Slice(), Slice(9)}),
                                    v.index({Slice(), Slice(), Slice(9)}), 6, kEps, &state);
  auto g_whole = torch::autograd::grad({whole.sum()}, {k});
  auto g_split = torch::autograd::grad({torch::cat({a, b}, 2).sum()}, {k});
  EXPECT_LE(RelativeError(g_split[0], g_whole[0]), 1e-10);
}

TEST(LinearAttentionStateTest, StateStaysFloat32ForLowPrecisionInputs) {
  auto opts = torch::TensorOptions().dtype(torch::kBFloat16).device(TestDevice());
  auto q = torch::randn({1, 2, 10, 4}, opts);
  auto state = LinearAttentionState::Zeros(1, 2, 4, 4, q.device());
  auto y = LinearAttentionChunkwise(q, q, q, 4, kEps, &state);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(state.s.scalar_type(), torch::kFloat32);
  EXPECT_EQ(state.z.scalar_type(), torch::kFloat32);
  auto y_step = LinearAttentionStep(q.select(2, 0), q.select(2, 0), q.select(2, 0), kEps, &state);
  EXPECT_EQ(y_step.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(state.s.scalar_type(), torch::kFloat32);
}

TEST(LinearAttentionStateTest, FeatureMapIsEluPlusOne) {
  auto x = torch::tensor({-3.0, -0.5, 0.0, 0.5, 2.0}, torch::kFloat64);
  auto expected = torch::tensor({std::exp(-3.0), std::exp(-0.5), 1.0, 1.5, 3.0}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(EluFeatureMap(x), expected));
}

}  // namespace
}  // namespace recur
