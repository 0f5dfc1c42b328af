#include "model/weight_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/test_util.h"

namespace recur {
namespace {

using ::testing::HasSubstr;

ModelConfig Untied(AttentionKind attention) {
  ModelConfig config = testing::SmallModelConfig(attention, /*vocab_size=*/300);
  config.tie_embeddings = false;
  return config;
}

TEST(WeightFormatTest, NamesRoundTripAndUnknownOnesAreRefused) {
  for (WeightFormat format :
       {WeightFormat::kFloat32, WeightFormat::kBFloat16, WeightFormat::kBFloat16Output}) {
    EXPECT_EQ(*ParseWeightFormat(WeightFormatName(format)), format);
  }
  EXPECT_THAT(ParseWeightFormat("int4").status().message(), HasSubstr("fp32, bf16 or bf16-output"));
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
    SetWeightFormat(bf16, WeightFormat::kBFloat16);
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kBFloat16);
    EXPECT_EQ(WeightFormatOf(fp32), WeightFormat::kFloat32);
    for (const auto& p : bf16->named_parameters()) {
      const bool linear_weight = p.key().find("norm") == std::string::npos &&
                                 p.key().find("embedding") == std::string::npos &&
                                 p.key().find("weight") != std::string::npos;
      EXPECT_EQ(p.value().scalar_type(), linear_weight ? torch::kBFloat16 : torch::kFloat32)
          << p.key();
    }
    auto tokens = torch::randint(0, 300, {3, 20}, torch::kInt64);
    ModelState a = fp32->NewState(3, torch::kCPU), b = bf16->NewState(3, torch::kCPU);
    auto expected = fp32->Prefill(tokens, &a);
    auto got = bf16->Prefill(tokens, &b);
    for (int step = 0; step < 5; ++step) {
      ASSERT_EQ(got.scalar_type(), torch::kFloat32);
      const double spread = expected.std().item<double>();
      EXPECT_LT((got - expected).abs().max().item<double>(), 0.1 * spread)
          << AttentionKindName(attention) << " step " << step;
      auto next = expected.argmax(-1);
      expected = fp32->Step(next, &a);
      got = bf16->Step(next, &b);
    }
    for (const auto& layer : b.linear) EXPECT_EQ(layer.s.scalar_type(), torch::kFloat32);
    for (const auto& cache : b.kv) EXPECT_EQ(cache.k.scalar_type(), torch::kFloat32);
    SetWeightFormat(bf16, WeightFormat::kBFloat16Output);  // only the output layer
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kBFloat16Output);
    EXPECT_EQ(bf16->lm_head->weight.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(bf16->blocks[0]->as<TransformerBlock>()->ff_in->weight.scalar_type(),
              torch::kFloat32);
    SetWeightFormat(bf16, WeightFormat::kFloat32);  // and back
    EXPECT_EQ(WeightFormatOf(bf16), WeightFormat::kFloat32);
  }
}

}  // namespace
}  // namespace recur
