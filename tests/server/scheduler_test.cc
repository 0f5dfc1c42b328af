// The engine's scheduling policy on its own: no model, no threads.

#include "server/scheduler.h"

#include "gtest/gtest.h"

namespace recur::testing {
namespace {

constexpr RequestPhase kPrefilling = RequestPhase::kPrefilling;
constexpr RequestPhase kDecoding = RequestPhase::kDecoding;

TEST(SchedulerTest, NothingToDoPlansNothing) {
  const IterationPlan plan = PlanIteration({}, 256);
  EXPECT_TRUE(plan.prefill.empty());
  EXPECT_FALSE(plan.decode);
}

TEST(SchedulerTest, DecodesWhenAnyRequestIsDecodingAndIgnoresFinishedOnes) {
  const IterationPlan plan = PlanIteration(
      {{RequestPhase::kFinished, 0}, {kDecoding, 0}, {RequestPhase::kQueued, 9}}, 256);
  EXPECT_TRUE(plan.prefill.empty());
  EXPECT_TRUE(plan.decode);
}

TEST(SchedulerTest, WithNobodyDecodingSlicesRunUntilTheBudgetIsSpent) {
  // 100 tokens of the first prompt, then 50 of the second, then 106 of the third: 256 in all.
  const IterationPlan plan =
      PlanIteration({{kPrefilling, 100}, {kPrefilling, 50}, {kPrefilling, 1000}}, 256);
  ASSERT_EQ(plan.prefill.size(), 3u);
  EXPECT_EQ(plan.prefill[0], (PrefillGroup{{0}, 100}));
  EXPECT_EQ(plan.prefill[1], (PrefillGroup{{1}, 50}));
  EXPECT_EQ(plan.prefill[2], (PrefillGroup{{2}, 106}));
  EXPECT_FALSE(plan.decode);
}

TEST(SchedulerTest, WhileStreamsDecodeOneSliceRunsPerIteration) {
  // A long prompt delays the decoding stream by one slice, never by its length.
  const IterationPlan plan =
      PlanIteration({{kDecoding, 0}, {kPrefilling, 2000}, {kPrefilling, 7}}, 16);
  ASSERT_EQ(plan.prefill.size(), 1u);
  EXPECT_EQ(plan.prefill[0], (PrefillGroup{{1}, 16}));
  EXPECT_TRUE(plan.decode);
}

TEST(SchedulerTest, PromptsOfTheSameRemainingLengthShareOneBatchedPrefill) {
  const IterationPlan plan = PlanIteration(
      {{kPrefilling, 12}, {kPrefilling, 30}, {kPrefilling, 12}, {kPrefilling, 12}}, 256);
  ASSERT_GE(plan.prefill.size(), 2u);
  EXPECT_EQ(plan.prefill[0], (PrefillGroup{{0, 2, 3}, 12}));
  EXPECT_EQ(plan.prefill[1], (PrefillGroup{{1}, 30}));
}

TEST(SchedulerTest, AGroupNeverExceedsTheBudget) {
  // Four prompts of 100 with a budget of 256: two fit together, then 56 of the third.
  const IterationPlan plan = PlanIteration(
      {{kPrefilling, 100}, {kPrefilling, 100}, {kPrefilling, 100}, {kPrefilling, 100}}, 256);
  ASSERT_EQ(plan.prefill.size(), 2u);
  EXPECT_EQ(plan.prefill[0], (PrefillGroup{{0, 1}, 100}));
  EXPECT_EQ(plan.prefill[1], (PrefillGroup{{2}, 56}));
}

TEST(SchedulerTest, TheBudgetCutsTheOldestPromptIntoSlices) {
  // The whole of both prompts fits in 64; in 16, only a slice of the oldest.
  const IterationPlan plan = PlanIteration({{kPrefilling, 40}, {kPrefilling, 24}}, 64);
  ASSERT_EQ(plan.prefill.size(), 2u);
  EXPECT_EQ(plan.prefill[0], (PrefillGroup{{0}, 40}));
  EXPECT_EQ(plan.prefill[1], (PrefillGroup{{1}, 24}));
  const IterationPlan split = PlanIteration({{kPrefilling, 40}, {kPrefilling, 24}}, 16);
  ASSERT_EQ(split.prefill.size(), 1u);
  EXPECT_EQ(split.prefill[0], (PrefillGroup{{0}, 16}));
}

TEST(SchedulerTest, EveryPlannedTokenIsAPromptTokenAndNoneIsFedTwice) {
  // Random mixes: the plan feeds at most the budget, at most each prompt's unfed tokens, and the
  // oldest prompt always gets its slice.
  uint64_t x = 12345;
  auto next = [&x](int64_t n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(n));
  };
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<SchedulingView> views;
    const int64_t n = 1 + next(8);
    for (int64_t i = 0; i < n; ++i) {
      const bool decoding = next(3) == 0;
      views.push_back({decoding ? kDecoding : kPrefilling, decoding ? 0 : 1 + next(40)});
    }
    const int64_t budget = 1 + next(100);
    const IterationPlan plan = PlanIteration(views, budget);
    std::vector<int64_t> fed(views.size(), 0);
    int64_t total = 0;
    for (const auto& group : plan.prefill) {
      ASSERT_FALSE(group.requests.empty());
      for (size_t i : group.requests) {
        fed[i] += group.tokens;
        total += group.tokens;
      }
    }
    EXPECT_LE(total, budget);
    for (size_t i = 0; i < views.size(); ++i) EXPECT_LE(fed[i], views[i].unfed_tokens);
    for (size_t i = 0; i < views.size(); ++i) {
      if (views[i].phase == kPrefilling) {
        EXPECT_EQ(fed[i], std::min(budget, views[i].unfed_tokens)) << "the oldest prompt";
        break;
      }
    }
    if (plan.decode) EXPECT_LE(plan.prefill.size(), 1u);
  }
}

}  // namespace
}  // namespace recur::testing
