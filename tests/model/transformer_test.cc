#include "model/transformer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "model/generation.h"
#include "model/linear_attention.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using testing::RelativeError;
using testing::TestDevice;
using torch::indexing::Slice;

ModelConfig SmallConfig(AttentionKind kind) { return testing::SmallModelConfig(kind, 50); }

// An architecture every form must agree on.
struct FormsVariant {
  std::string name;
  AttentionKind kind;
  int64_t short_conv = 0;
  PositionalEncoding positional_encoding = PositionalEncoding::kSinusoidal;
  StateDecay state_decay = StateDecay::kNone;
};

class TransformerFormsTest : public ::testing::TestWithParam<FormsVariant> {
 protected:
  void SetUp() override {
    torch::manual_seed(5);
    auto config = SmallConfig(GetParam().kind);
    config.short_conv = GetParam().short_conv;
    config.positional_encoding = GetParam().positional_encoding;
    config.state_decay = GetParam().state_decay;
    model_ = TransformerLM(config);
    testing::RandomizeShortConvolutions(model_);
    testing::RandomizeLearnedDecays(model_);
    model_->to(TestDevice());
    model_->eval();
    tokens_ = torch::randint(0, 50, {3, 30},
                             torch::TensorOptions().dtype(torch::kInt64).device(TestDevice()));
  }
  TransformerLM model_{nullptr};
  torch::Tensor tokens_;
  torch::NoGradGuard no_grad_;
};

TEST_P(TransformerFormsTest, PrefillThenStepsMatchForwardAtEveryPosition) {
  const int64_t prompt = 13;
  auto full = model_->Forward(tokens_);  // [3, 30, V]
  auto state = model_->NewState(3, TestDevice());
  auto logits = model_->Prefill(tokens_.index({Slice(), Slice(0, prompt)}), &state);
  EXPECT_LE(RelativeError(logits, full.index({Slice(), prompt - 1})), 1e-5);
  for (int64_t i = prompt; i < 30; ++i) {
    logits = model_->Step(tokens_.index({Slice(), i}), &state);
    EXPECT_LE(RelativeError(logits, full.index({Slice(), i})), 1e-5) << "position " << i;
  }
  EXPECT_EQ(state.positions.to(torch::kCPU).equal(torch::full({3}, 30, torch::kInt64)), true);
}

TEST_P(TransformerFormsTest, TokenByTokenPrefillMatchesForwardAtEveryPosition) {
  auto full = model_->Forward(tokens_);
  auto state = model_->NewState(3, TestDevice());
  for (int64_t i = 0; i < 30; ++i) {
    auto logits = model_->Prefill(tokens_.index({Slice(), Slice(i, i + 1)}), &state);
    EXPECT_LE(RelativeError(logits, full.index({Slice(), i})), 1e-5) << "position " << i;
  }
}

TEST_P(TransformerFormsTest, ContinueInPiecesMatchesForwardAtEveryPosition) {
  auto full = model_->Forward(tokens_);  // [3, 30, V]
  auto state = model_->NewState(3, TestDevice());
  // Pieces of 11, 11 and 8 tokens, none a multiple of the chunk size.
  for (int64_t start = 0; start < 30; start += 11) {
    const int64_t end = std::min<int64_t>(start + 11, 30);
    auto logits = model_->Continue(tokens_.index({Slice(), Slice(start, end)}), &state);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, end - start, 50}));
    EXPECT_LE(RelativeError(logits, full.index({Slice(), Slice(start, end)})), 1e-5)
        << "positions " << start << ".." << end;
  }
  EXPECT_TRUE(state.positions.to(torch::kCPU).equal(torch::full({3}, 30, torch::kInt64)));
}

TEST_P(TransformerFormsTest, PrefillInTwoPiecesEqualsWhole) {
  auto whole_state = model_->NewState(3, TestDevice());
  auto whole = model_->Prefill(tokens_, &whole_state);
  auto split_state = model_->NewState(3, TestDevice());
  model_->Prefill(tokens_.index({Slice(), Slice(0, 17)}), &split_state);
  auto split = model_->Prefill(tokens_.index({Slice(), Slice(17)}), &split_state);
  EXPECT_LE(RelativeError(split, whole), 1e-5);
  // The states agree too, so generation continues identically.
  auto next = tokens_.index({Slice(), 0});
  EXPECT_LE(RelativeError(model_->Step(next, &split_state), model_->Step(next, &whole_state)),
            1e-5);
}

// A batch whose rows sit at different positions steps each row as if it ran alone.
TEST_P(TransformerFormsTest, BatchedStepOfRowsAtDifferentPositionsMatchesSolo) {
  std::vector<int64_t> lengths{5, 12, 9};
  std::vector<ModelState> solo;
  std::vector<torch::Tensor> solo_logits;
  for (int64_t r = 0; r < 3; ++r) {
    solo.push_back(model_->NewState(1, TestDevice()));
    model_->Prefill(tokens_.index({Slice(r, r + 1), Slice(0, lengths[r])}), &solo.back());
    solo_logits.push_back(model_->Step(tokens_.index({Slice(r, r + 1), lengths[r]}), &solo.back()));
  }
  // Build the batched state from the three solo prefills.
  ModelState batch = model_->NewState(3, TestDevice());
  for (int64_t r = 0; r < 3; ++r) {
    auto one = model_->NewState(1, TestDevice());
    model_->Prefill(tokens_.index({Slice(r, r + 1), Slice(0, lengths[r])}), &one);
    for (size_t l = 0; l < batch.linear.size(); ++l) {
      batch.linear[l].s[r].copy_(one.linear[l].s[0]);
      batch.linear[l].z[r].copy_(one.linear[l].z[0]);
    }
    for (size_t l = 0; l < batch.conv.size(); ++l) batch.conv[l][r].copy_(one.conv[l][0]);
    for (size_t l = 0; l < batch.kv.size(); ++l) {
      const int64_t cap = std::max(batch.kv[l].capacity(), one.kv[l].capacity());
      auto grow = [cap](torch::Tensor t) {
        return torch::cat(
            {t, torch::zeros({t.size(0), t.size(1), cap - t.size(2), t.size(3)}, t.options())}, 2);
      };
      batch.kv[l].k = grow(batch.kv[l].k);
      batch.kv[l].v = grow(batch.kv[l].v);
      batch.kv[l].k[r].index_put_({Slice(), Slice(0, one.kv[l].capacity())}, one.kv[l].k[0]);
      batch.kv[l].v[r].index_put_({Slice(), Slice(0, one.kv[l].capacity())}, one.kv[l].v[0]);
    }
    batch.positions[r] = lengths[r];
  }
  auto next = torch::stack({tokens_.index({0, lengths[0]}), tokens_.index({1, lengths[1]}),
                            tokens_.index({2, lengths[2]})});
  auto logits = model_->Step(next, &batch);
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_LE(RelativeError(logits.index({Slice(r, r + 1)}), solo_logits[r]), 1e-5) << "row " << r;
  }
}

TEST_P(TransformerFormsTest, ConcatenatedAndSelectedStatesStepLikeTheirRows) {
  // Three rows at different positions join one batch (ConcatStates), step twice, then leave it
  // (SelectRows): every row must match stepping alone, before and after.
  std::vector<int64_t> lengths{5, 12, 9};
  std::vector<ModelState> solo, parts;
  for (int64_t r = 0; r < 3; ++r) {
    solo.push_back(model_->NewState(1, TestDevice()));
    model_->Prefill(tokens_.index({Slice(r, r + 1), Slice(0, lengths[r])}), &solo.back());
    parts.push_back(solo.back().Clone());
  }
  ModelState batch = ConcatStates({&parts[0], &parts[1], &parts[2]});
  EXPECT_EQ(batch.batch_size(), 3);
  for (int step = 0; step < 2; ++step) {
    std::vector<torch::Tensor> next;
    for (int64_t r = 0; r < 3; ++r) next.push_back(tokens_.index({r, lengths[r] + step}));
    auto logits = model_->Step(torch::stack(next), &batch);
    for (int64_t r = 0; r < 3; ++r) {
      auto alone = model_->Step(next[r].view({1}), &solo[r]);
      EXPECT_LE(RelativeError(logits.index({Slice(r, r + 1)}), alone), 1e-5)
          << "row " << r << " step " << step;
    }
  }
  ModelState middle = SelectRows(batch, {1});
  ModelState outer = SelectRows(batch, {2, 0});
  EXPECT_EQ(middle.positions.item<int64_t>(), 14);
  auto next = tokens_.index({Slice(1, 2), 14});
  EXPECT_LE(RelativeError(model_->Step(next, &middle), model_->Step(next, &solo[1])), 1e-5);
  auto pair = torch::stack({tokens_.index({2, 11}), tokens_.index({0, 7})});
  auto logits = model_->Step(pair, &outer);
  EXPECT_LE(
      RelativeError(logits.index({Slice(0, 1)}), model_->Step(pair.index({Slice(0, 1)}), &solo[2])),
      1e-5);
  EXPECT_LE(
      RelativeError(logits.index({Slice(1, 2)}), model_->Step(pair.index({Slice(1, 2)}), &solo[0])),
      1e-5);
  if (GetParam().kind == AttentionKind::kSoftmax) {
    // A row that leaves keeps only the cache it uses.
    EXPECT_EQ(SelectRows(batch, {0}).kv[0].capacity(), 7);
  }
}

TEST_P(TransformerFormsTest, ForwardIsCausal) {
  auto a = model_->Forward(tokens_);
  auto changed = tokens_.clone();
  changed.index_put_({Slice(), 20}, (tokens_.index({Slice(), 20}) + 1) % 50);
  auto b = model_->Forward(changed);
  EXPECT_LE(RelativeError(b.index({Slice(), Slice(0, 20)}), a.index({Slice(), Slice(0, 20)})),
            1e-6);
  EXPECT_GT((b.index({Slice(), 20}) - a.index({Slice(), 20})).abs().max().item<double>(), 1e-4);
}

TEST_P(TransformerFormsTest, GenerateGreedyMatchesForwardArgmax) {
  std::vector<int64_t> prompt{1, 2, 3, 4, 5};
  GenerationOptions options;
  options.max_tokens = 12;
  options.sampling.temperature = 0.0;
  auto generated = Generate(model_, prompt, options);
  ASSERT_EQ(generated.size(), 12u);
  // Re-derive each greedy choice from the parallel form.
  std::vector<int64_t> text = prompt;
  for (int64_t token : generated) {
    auto input = torch::tensor(text, torch::kInt64).view({1, -1}).to(TestDevice());
    const int64_t expected = model_->Forward(input).index({0, -1}).argmax().item<int64_t>();
    EXPECT_EQ(token, expected);
    text.push_back(token);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, TransformerFormsTest,
    ::testing::Values(FormsVariant{"linear", AttentionKind::kLinear},
                      FormsVariant{"softmax", AttentionKind::kSoftmax},
                      FormsVariant{"linear_conv4_no_positions", AttentionKind::kLinear, 4,
                                   PositionalEncoding::kNone},
                      FormsVariant{"softmax_conv3", AttentionKind::kSoftmax, 3},
                      FormsVariant{"linear_multiscale_decay", AttentionKind::kLinear, 4,
                                   PositionalEncoding::kNone, StateDecay::kMultiscale},
                      FormsVariant{"linear_learned_decay", AttentionKind::kLinear, 4,
                                   PositionalEncoding::kNone, StateDecay::kLearned}),
    [](const auto& info) { return info.param.name; });

// A learned decay starts as the multiscale one, is a saved parameter of each layer, and trains.
TEST(LearnedDecayTest, StartsAsMultiScaleAndTrains) {
  auto config = SmallConfig(AttentionKind::kLinear);
  config.state_decay = StateDecay::kLearned;
  TransformerLM model(config);
  auto named = model->named_parameters();
  for (int64_t layer = 0; layer < config.num_layers; ++layer) {
    const std::string name = "blocks." + std::to_string(layer) + ".attention.decay_logit";
    ASSERT_TRUE(named.contains(name)) << name;
    EXPECT_LE(
        RelativeError(torch::sigmoid(named[name]), MultiScaleDecay(config.num_heads, torch::kCPU)),
        1e-6);
  }
  auto tokens = torch::randint(0, 50, {2, 40}, torch::kInt64);
  auto logits = model->Forward(tokens.index({Slice(), Slice(0, 39)}));
  auto loss = torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), tokens.index({Slice(), Slice(1, 40)}).reshape({-1}));
  loss.backward();
  auto grad = named["blocks.0.attention.decay_logit"].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().min().item<double>(), 0.0);  // every head's rate gets a gradient

  // Nothing that is not a parameter: a multiscale model has the same parameters as a plain one.
  config.state_decay = StateDecay::kMultiscale;
  auto plain = config;
  plain.state_decay = StateDecay::kNone;
  EXPECT_EQ(TransformerLM(config)->ParameterCount(), TransformerLM(plain)->ParameterCount());
  EXPECT_EQ(model->ParameterCount(),
            TransformerLM(plain)->ParameterCount() + config.num_layers * config.num_heads);
}

TEST(TransformerStateTest, LinearStateBytesStayConstant) {
  torch::NoGradGuard no_grad;
  auto config = SmallConfig(AttentionKind::kLinear);
  config.short_conv = 4;  // its inputs are state too, and constant as well
  TransformerLM model(config);
  auto state = model->NewState(1, torch::kCPU);
  EXPECT_EQ(state.Bytes(), config.StateBytesPerSequence());
  model->Prefill(torch::randint(0, 50, {1, 40}, torch::kInt64), &state);
  for (int i = 0; i < 100; ++i) model->Step(torch::tensor({i % 50}, torch::kInt64), &state);
  EXPECT_EQ(state.Bytes(), config.StateBytesPerSequence());
}

TEST(TransformerStateTest, SoftmaxCacheGrowsWithContext) {
  torch::NoGradGuard no_grad;
  TransformerLM model(SmallConfig(AttentionKind::kSoftmax));
  auto state = model->NewState(1, torch::kCPU);
  model->Prefill(torch::randint(0, 50, {1, 10}, torch::kInt64), &state);
  const int64_t before = state.Bytes();
  for (int i = 0; i < 100; ++i) model->Step(torch::tensor({i % 50}, torch::kInt64), &state);
  EXPECT_GT(state.Bytes(), before);
}

TEST(TransformerStateTest, ShortConvolutionStartsAsTheIdentity) {
  // A fresh model with the convolution computes what the same model without it does: training
  // starts from the plain architecture. (The convolution's start draws no random numbers, so the
  // same seed gives both the same other weights.)
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(0, 50, {2, 20}, torch::kInt64);
  auto config = SmallConfig(AttentionKind::kLinear);
  torch::manual_seed(3);
  TransformerLM plain(config);
  config.short_conv = 4;
  torch::manual_seed(3);
  TransformerLM convolved(config);
  EXPECT_EQ(convolved->ParameterCount(), plain->ParameterCount() + 2 * 4 * 3 * 32);
  EXPECT_LE(RelativeError(convolved->Forward(tokens), plain->Forward(tokens)), 1e-6);
}

TEST(TransformerStateTest, CloneIsIndependent) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  TransformerLM model(SmallConfig(AttentionKind::kLinear));
  auto state = model->NewState(1, torch::kCPU);
  model->Prefill(torch::randint(0, 50, {1, 10}, torch::kInt64), &state);
  auto fork = state.Clone();
  auto a = model->Step(torch::tensor({7}, torch::kInt64), &state);
  model->Step(torch::tensor({3}, torch::kInt64), &fork);  // diverge the fork
  auto fork2 = state.Clone();
  auto b = model->Step(torch::tensor({9}, torch::kInt64), &state);
  auto c = model->Step(torch::tensor({9}, torch::kInt64), &fork2);
  EXPECT_TRUE(torch::equal(b, c));
  EXPECT_FALSE(torch::equal(a, b));
}

TEST(TransformerStateTest, UntiedOutputHasItsOwnHead) {
  auto config = SmallConfig(AttentionKind::kLinear);
  config.tie_embeddings = false;
  TransformerLM untied(config);
  EXPECT_TRUE(untied->named_parameters().contains("lm_head.weight"));
  TransformerLM tied(SmallConfig(AttentionKind::kLinear));
  EXPECT_FALSE(tied->named_parameters().contains("lm_head.weight"));
  EXPECT_EQ(untied->ParameterCount() - tied->ParameterCount(), 50 * 32);
}

// The config's closed-form count (which the checkpoint loader checks against the weights file
// before it builds anything) is the count of the module's own parameters, for every choice.
TEST(TransformerStateTest, TheConfigCountsTheModulesParameters) {
  for (AttentionKind kind : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    for (bool tied : {true, false}) {
      for (int64_t short_conv : {0, 3}) {
        for (StateDecay decay :
             {StateDecay::kNone, StateDecay::kMultiscale, StateDecay::kLearned}) {
          if (kind == AttentionKind::kSoftmax && decay != StateDecay::kNone) continue;
          auto config = SmallConfig(kind);
          config.num_layers = 3;
          config.d_ff = 40;
          config.tie_embeddings = tied;
          config.short_conv = short_conv;
          config.state_decay = decay;
          EXPECT_EQ(config.ParameterCount(), TransformerLM(config)->ParameterCount())
              << config.ToJson();
        }
      }
    }
  }
}

TEST(TransformerStateTest, InvalidConfigThrowsWithMessage) {
  auto config = SmallConfig(AttentionKind::kLinear);
  config.num_heads = 5;
  try {
    TransformerLM model(config);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("divisible by num_heads"), std::string::npos) << e.what();
  }
}

TEST(TransformerTrainingTest, LearnsARepeatingSequence) {
  torch::manual_seed(1);
  auto config = SmallConfig(AttentionKind::kLinear);
  TransformerLM model(config);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(3e-3));
  // Period-5 sequence: a model that uses attention can predict it perfectly.
  auto tokens = (torch::arange(65, torch::kInt64) % 5).view({1, 65}).repeat({4, 1});
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 60; ++step) {
    auto logits = model->Forward(tokens.index({Slice(), Slice(0, 64)}));
    auto loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, 50}), tokens.index({Slice(), Slice(1, 65)}).reshape({-1}));
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (step == 0) first_loss = loss.item<double>();
    last_loss = loss.item<double>();
  }
  EXPECT_GT(first_loss, 3.0);
  EXPECT_LT(last_loss, 0.1);
}

// A fresh model knows nothing, so its first cross-entropy should be about ln V, the loss of the
// uniform guess, plus half the variance of its random logits (about 1 with a tied embedding):
// larger starting logits cost early steps undoing them. Tied embeddings once started far above
// it (13.5 nats against ln 257 = 5.55 at D = 256), the read token's own logit being about √D.
TEST(TransformerInitTest, AFreshModelsFirstLossIsAboutLnV) {
  struct Case {
    int64_t vocab, d_model;
    bool tied;
    AttentionKind kind;
  };
  for (const Case& c : {Case{257, 256, true, AttentionKind::kLinear},
                        Case{10000, 256, true, AttentionKind::kLinear},
                        Case{10000, 128, true, AttentionKind::kSoftmax},
                        Case{10000, 256, false, AttentionKind::kLinear}}) {
    ModelConfig config;
    config.vocab_size = c.vocab;
    config.d_model = c.d_model;
    config.num_heads = 4;
    config.d_ff = 4 * c.d_model;
    config.tie_embeddings = c.tied;
    config.attention = c.kind;
    torch::manual_seed(3);
    TransformerLM model(config);
    model->eval();
    torch::NoGradGuard no_grad;
    const auto tokens = torch::randint(0, c.vocab, {4, 129}, torch::kInt64);
    const auto logits = model->Forward(tokens.slice(1, 0, 128));
    const double loss = torch::nn::functional::cross_entropy(logits.reshape({-1, c.vocab}),
                                                             tokens.slice(1, 1).reshape({-1}))
                            .item<double>();
    const double uniform = std::log(static_cast<double>(c.vocab));
    EXPECT_NEAR(loss, uniform + (c.tied ? 0.5 : 0.0), 0.2)
        << "V " << c.vocab << ", D " << c.d_model << (c.tied ? ", tied" : ", untied");
  }
}

TEST(EmbeddingDropoutTest, DropsWholeRowsAndScalesTheRest) {
  torch::manual_seed(11);
  auto weight = torch::randn({2000, 8});
  auto dropped = EmbeddingDropout(weight, 0.25);
  auto zero_rows = (dropped == 0).all(1);
  auto kept_rows = dropped.isclose(weight / 0.75).all(1);
  // Every row is either wholly dropped or wholly kept and scaled up.
  EXPECT_TRUE(zero_rows.logical_xor(kept_rows).all().item<bool>());
  const double fraction = zero_rows.to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(fraction, 0.25, 0.03);  // 2,000 draws: 3 standard deviations is 0.029
  EXPECT_TRUE(EmbeddingDropout(weight, 0.0).equal(weight));
}

TEST(EmbeddingDropoutTest, ActsOnlyWhenTrainingAndOnlyOnTheInputSide) {
  ModelConfig c = SmallConfig(AttentionKind::kLinear);
  torch::manual_seed(4);
  TransformerLM plain(c);
  c.embedding_dropout = 0.5;
  TransformerLM dropping(c);
  {
    torch::NoGradGuard no_grad;
    auto from = plain->parameters();
    auto to = dropping->parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  }
  auto tokens = torch::randint(0, 50, {2, 12}, torch::kInt64);
  plain->eval();
  dropping->eval();
  EXPECT_TRUE(plain->Forward(tokens).equal(dropping->Forward(tokens)));
  // Training (no other dropout in SmallConfig): the input embeddings change, so do the logits.
  plain->train();
  dropping->train();
  EXPECT_FALSE(plain->Forward(tokens).allclose(dropping->Forward(tokens)));
}

}  // namespace
}  // namespace recur
