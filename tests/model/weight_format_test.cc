#include "model/weight_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/linear_layer.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using ::testing::HasSubstr;

ModelConfig Untied(AttentionKind attention) {
  ModelConfig config = testing::SmallModelConfig(attention, /*vocab_size=*/300);
  config.tie_embeddings = false;
  return config;
}

// Prefills 3 rows of 20 tokens into both models, then steps 5 times (feeding the reference's
// greedy tokens to both): `other`'s logits stay within a tenth of their spread of `reference`'s,
// come back float32, and its recurrent state (S, z or the key/value cache) stays float32.
void ExpectCloseLogitsAndFloat32State(TransformerLM& reference, TransformerLM& other) {
  const std::string kind(AttentionKindName(reference->config().attention));
  auto tokens = torch::randint(0, 300, {3, 20}, torch::kInt64);
  ModelState a = reference->NewState(3, torch::kCPU), b = other->NewState(3, torch::kCPU);
  auto expected = reference->Prefill(tokens, &a);
  auto got = other->Prefill(tokens, &b);
  for (int step = 0; step < 5; ++step) {
    ASSERT_EQ(got.scalar_type(), torch::kFloat32);
    const double spread = expected.std().item<double>();
    EXPECT_LT((got - expected).abs().max().item<double>(), 0.1 * spread)
        << kind << " step " << step;
    auto next = expected.argmax(-1);
    expected = reference->Step(next, &a);
    got = other->Step(next, &b);
  }
  for (const auto& layer : b.linear) EXPECT_EQ(layer.s.scalar_type(), torch::kFloat32);
  for (const auto& cache : b.kv) EXPECT_EQ(cache.k.scalar_type(), torch::kFloat32);
}

TEST(WeightFormatTest, NamesRoundTripAndUnknownOnesAreRefused) {
  for (WeightFormat format : {WeightFormat::kFloat32, WeightFormat::kBFloat16,
                              WeightFormat::kBFloat16Output, WeightFormat::kInt8}) {
    EXPECT_EQ(*ParseWeightFormat(WeightFormatName(format), torch::kCPU), format);
  }
  EXPECT_THAT(ParseWeightFormat("int4", torch::kCPU).status().message(),
              HasSubstr("auto, fp32, bf16, bf16-output or int8"));
}

// auto: bfloat16 for the output layer where the CPU multiplies it natively, float32 where it would
// be emulated, and float32 on a GPU (not measured there yet).
TEST(WeightFormatTest, AutoFollowsTheDevice) {
  const WeightFormat cpu =
      CpuHasNativeBFloat16() ? WeightFormat::kBFloat16Output : WeightFormat::kFloat32;
  EXPECT_EQ(ChooseWeightFormat(torch::kCPU), cpu);
  EXPECT_EQ(*ParseWeightFormat("auto", torch::kCPU), cpu);
  EXPECT_EQ(*ParseWeightFormat("auto", torch::Device(torch::kCUDA, 0)), WeightFormat::kFloat32);
}

// The model's layer is LibTorch's in float32: the same parameters, drawn from the same random
// stream, and the same product.
TEST(LinearLayerTest, Float32IsTorchLinear) {
  torch::manual_seed(11);
  torch::nn::Linear reference(torch::nn::LinearOptions(24, 40));
  torch::manual_seed(11);
  LinearLayer layer(24, 40);
  EXPECT_TRUE(torch::equal(layer->weight, reference->weight));
  EXPECT_TRUE(torch::equal(layer->bias, reference->bias));
  EXPECT_EQ(layer->named_parameters().keys(), reference->named_parameters().keys());
  auto x = torch::randn({2, 3, 24});
  auto expected = (x.to(torch::kDouble).matmul(layer->weight.to(torch::kDouble).t()) +
                   layer->bias.to(torch::kDouble));
  EXPECT_TRUE(torch::allclose(layer(x).to(torch::kDouble), expected, 1e-5, 1e-6));
  LinearLayer unbiased(24, 40, /*bias=*/false);
  EXPECT_FALSE(unbiased->bias.defined());
  EXPECT_FALSE(unbiased->named_parameters().contains("bias"));
}

// int8 against a float64 reference of the same arithmetic: W rounded per row to 127 steps of
// max|W_row|, x rounded per call to 255 steps of its range [min(x, 0), max(x, 0)], the products
// summed exactly, then the bias. oneDNN's kernel matches it to float32 rounding (1.8e-7 of the
// logits' spread here); the bound leaves room for other vector paths' rounding and is still 100
// times closer than float32's own product is.
TEST(LinearLayerTest, Int8MatchesAQuantisedFloat64Reference) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(12);
  LinearLayer layer(64, 48);
  auto x = torch::randn({5, 64});
  const auto exact = layer(x).to(torch::kDouble);
  auto w = layer->weight.to(torch::kDouble);
  auto w_scale = w.abs().amax(1, /*keepdim=*/true) / 127.0;
  auto w_q = (w / w_scale).round().clamp(-127, 127) * w_scale;
  auto xd = x.to(torch::kDouble);
  const double lo = std::min(0.0, xd.min().item<double>());
  const double hi = std::max(0.0, xd.max().item<double>());
  const double x_scale = (hi - lo) / 255.0;
  const double zero = std::round(-lo / x_scale);
  auto x_q = ((xd / x_scale).round() + zero).clamp(0, 255).sub(zero) * x_scale;
  auto reference = x_q.matmul(w_q.t()) + layer->bias.to(torch::kDouble);

  ASSERT_TRUE(layer->QuantizeInt8().ok());
  EXPECT_TRUE(layer->is_int8());
  EXPECT_TRUE(layer->weight.is_quantized());
  const auto got = layer(x);
  ASSERT_EQ(got.scalar_type(), torch::kFloat32);
  ASSERT_EQ(got.sizes(), exact.sizes());
  const double spread = exact.std().item<double>();
  const double error = (got.to(torch::kDouble) - reference).abs().max().item<double>();
  EXPECT_LT(error, 1e-4 * spread);
  EXPECT_GT((exact - reference).abs().max().item<double>(), 1e-2 * spread);  // not fp32
  EXPECT_LT((got.to(torch::kDouble) - exact).abs().max().item<double>(), 0.05 * spread);
  EXPECT_EQ(layer(x.view({5, 1, 64})).sizes(), (std::vector<int64_t>{5, 1, 48}));
}

// bf16 changes only the linear layers' weights; the logits stay close to float32's (relative to
// their spread) and the recurrent state stays float32, for prefill and for steps.
TEST(WeightFormatTest, Bf16LinearLayersKeepLogitsCloseAndStateFloat32) {
  torch::NoGradGuard no_grad;
  for (AttentionKind attention : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    torch::manual_seed(5);
    TransformerLM fp32(Untied(attention));
    fp32->eval();
    TransformerLM bf16(Untied(attention));
    bf16->eval();
    auto source = fp32->named_parameters();
    for (auto& p : bf16->named_parameters()) p.value().copy_(source[p.key()]);
    ASSERT_TRUE(SetWeightFormat(bf16, WeightFormat::kBFloat16).ok());
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kBFloat16);
    EXPECT_EQ(WeightFormatOf(fp32), WeightFormat::kFloat32);
    for (const auto& p : bf16->named_parameters()) {
      const bool linear_weight = p.key().find("norm") == std::string::npos &&
                                 p.key().find("embedding") == std::string::npos &&
                                 p.key().find("weight") != std::string::npos;
      EXPECT_EQ(p.value().scalar_type(), linear_weight ? torch::kBFloat16 : torch::kFloat32)
          << p.key();
    }
    ExpectCloseLogitsAndFloat32State(fp32, bf16);
    ASSERT_TRUE(SetWeightFormat(bf16, WeightFormat::kBFloat16Output).ok());  // only the output
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kBFloat16Output);
    EXPECT_EQ(bf16->lm_head->weight.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(bf16->blocks[0]->as<TransformerBlock>()->ff_in->weight.scalar_type(),
              torch::kFloat32);
    ASSERT_TRUE(SetWeightFormat(bf16, WeightFormat::kFloat32).ok());  // and back
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kFloat32);
  }
}

// int8 quantises every linear layer (the output layer too) and nothing else: the logits stay
// close to float32's, the state float32, the parameter count the same; and the float32 weights are
// gone, so the format cannot change again.
TEST(WeightFormatTest, Int8LinearLayersKeepLogitsCloseAndStateFloat32) {
  torch::NoGradGuard no_grad;
  for (AttentionKind attention : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    torch::manual_seed(6);
    TransformerLM fp32(Untied(attention));
    fp32->eval();
    TransformerLM int8(Untied(attention));
    int8->eval();
    auto source = fp32->named_parameters();
    for (auto& p : int8->named_parameters()) p.value().copy_(source[p.key()]);
    ASSERT_TRUE(SetWeightFormat(int8, WeightFormat::kInt8).ok());
    EXPECT_EQ(WeightFormatOf(int8), WeightFormat::kInt8);
    EXPECT_EQ(int8->ParameterCount(), fp32->ParameterCount());
    EXPECT_TRUE(int8->lm_head->is_int8());
    EXPECT_TRUE(int8->blocks[1]->as<TransformerBlock>()->attention->qkv->is_int8());
    EXPECT_EQ(int8->embedding->weight.scalar_type(), torch::kFloat32);
    ExpectCloseLogitsAndFloat32State(fp32, int8);
    EXPECT_EQ(SetWeightFormat(int8, WeightFormat::kFloat32).code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace recur
