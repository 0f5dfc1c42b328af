#include "server/decode_batch.h"

#include <torch/torch.h>

#include <map>
#include <tuple>

#include "gtest/gtest.h"
#include "model/transformer.h"
#include "tests/test_util.h"

namespace recur {
namespace {

// Each attention kind, without and with a short convolution (its tail is replaced, not updated
// in place, by every step).
class DecodeBatchTest : public ::testing::TestWithParam<std::tuple<AttentionKind, int64_t>> {
 protected:
  DecodeBatchTest() {
    config_ = testing::SmallModelConfig(std::get<0>(GetParam()), /*vocab_size=*/30);
    config_.short_conv = std::get<1>(GetParam());
    torch::manual_seed(2);
    model_ = TransformerLM(config_);
    model_->eval();
    testing::RandomizeShortConvolutions(model_);
  }

  // A session's state after a prompt of `length` tokens.
  ModelState Prefilled(int64_t length) {
    ModelState state = model_->NewState(1, torch::kCPU);
    model_->Prefill(torch::randint(0, config_.vocab_size, {1, length}, torch::kInt64), &state);
    return state;
  }

  ModelConfig config_;
  TransformerLM model_{nullptr};
};

using LinearDecodeBatchTest = DecodeBatchTest;

// Sessions join and leave a batch between steps (the engine's churn); every session's logits and
// final state are those of stepping it alone.
TEST_P(DecodeBatchTest, RowsJoiningAndLeavingStepAsIfAlone) {
  torch::NoGradGuard no_grad;
  const int sessions = 7;
  std::vector<ModelState> alone, in_batch;
  for (int i = 0; i < sessions; ++i) {
    alone.push_back(Prefilled(3 + i));
    in_batch.push_back(alone.back().Clone());
  }
  // Which sessions are in the batch at each step: joins at steps 0, 1 and 3, leaves at 2 and 4.
  const std::vector<std::vector<int>> plan = {{0, 1, 2},          {0, 1, 2, 3, 4}, {1, 2, 3, 4},
                                              {1, 2, 3, 4, 5, 6}, {1, 3, 6},       {1, 3, 6}};
  DecodeBatch batch(/*max_rows=*/8);
  std::vector<int> members;  // session at each row
  for (size_t step = 0; step < plan.size(); ++step) {
    std::vector<int64_t> leaving;
    std::vector<ModelState*> into;
    for (size_t row = 0; row < members.size(); ++row) {
      if (std::find(plan[step].begin(), plan[step].end(), members[row]) == plan[step].end()) {
        leaving.push_back(static_cast<int64_t>(row));
        into.push_back(&in_batch[members[row]]);
      }
    }
    std::vector<int> staying;
    for (int64_t was : batch.Leave(leaving, into)) staying.push_back(members[was]);
    members = staying;
    std::vector<const ModelState*> joining;
    for (int s : plan[step]) {
      if (std::find(members.begin(), members.end(), s) == members.end()) {
        joining.push_back(&in_batch[s]);
        members.push_back(s);
      }
    }
    batch.Join(joining);
    ASSERT_EQ(batch.size(), static_cast<int64_t>(members.size()));

    std::vector<int64_t> tokens;
    for (int s : members) tokens.push_back((s * 7 + step) % config_.vocab_size);
    auto logits = model_->Step(torch::tensor(tokens, torch::kInt64), &batch.Rows());
    batch.Commit();
    for (size_t row = 0; row < members.size(); ++row) {
      auto expected =
          model_->Step(torch::tensor({tokens[row]}, torch::kInt64), &alone[members[row]]);
      EXPECT_TRUE(torch::allclose(logits[row], expected[0], 1e-4, 1e-5))
          << "step " << step << " session " << members[row];
    }
  }
  std::vector<int64_t> all(members.size());
  std::vector<ModelState*> into;
  for (size_t row = 0; row < members.size(); ++row) {
    all[row] = static_cast<int64_t>(row);
    into.push_back(&in_batch[members[row]]);
  }
  batch.Leave(all, into);
  EXPECT_TRUE(batch.empty());
  // Every session, stepped once more on its own, agrees with its twin that never batched.
  for (int s = 0; s < sessions; ++s) {
    auto token = torch::tensor({int64_t{5}}, torch::kInt64);
    auto a = model_->Step(token, &alone[s]);
    auto b = model_->Step(token, &in_batch[s]);
    EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5)) << "session " << s;
    EXPECT_EQ(in_batch[s].positions.item<int64_t>(), alone[s].positions.item<int64_t>());
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, DecodeBatchTest,
                         ::testing::Combine(::testing::Values(AttentionKind::kLinear,
                                                              AttentionKind::kSoftmax),
                                            ::testing::Values(int64_t{0}, int64_t{4})));

// Linear attention: steps, joins below the capacity and leaves reuse the same buffers.
TEST_P(LinearDecodeBatchTest, StateStaysInItsBuffers) {
  torch::NoGradGuard no_grad;
  std::vector<ModelState> states;
  for (int i = 0; i < 6; ++i) states.push_back(Prefilled(2));
  DecodeBatch batch(/*max_rows=*/8);
  batch.Join({&states[0], &states[1]});
  const void* buffer = batch.Rows().linear[0].s.data_ptr();
  for (int step = 0; step < 3; ++step) {
    model_->Step(torch::tensor({int64_t{1}, int64_t{2}}, torch::kInt64), &batch.Rows());
    batch.Commit();
    EXPECT_EQ(batch.Rows().linear[0].s.data_ptr(), buffer);
  }
  batch.Join({&states[2], &states[3], &states[4]});
  EXPECT_EQ(batch.Rows().linear[0].s.data_ptr(), buffer);
  ModelState out;
  batch.Leave({0}, {&out});
  EXPECT_EQ(batch.Rows().linear[0].s.data_ptr(), buffer);
  EXPECT_EQ(batch.size(), 4);
}

// The in-place batch is linear attention's (softmax rebuilds its batch on every join and leave).
INSTANTIATE_TEST_SUITE_P(Linear, LinearDecodeBatchTest,
                         ::testing::Combine(::testing::Values(AttentionKind::kLinear),
                                            ::testing::Values(int64_t{0}, int64_t{4})));

}  // namespace
}  // namespace recur
