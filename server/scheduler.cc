#include "server/scheduler.h"

#include <algorithm>

namespace recur {

IterationPlan PlanIteration(absl::Span<const SchedulingView> requests, int64_t prefill_chunk) {
  IterationPlan plan;
  plan.decode = std::any_of(requests.begin(), requests.end(), [](const SchedulingView& r) {
    return r.phase == RequestPhase::kDecoding;
  });
  std::vector<int64_t> unfed(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].phase == RequestPhase::kPrefilling) unfed[i] = requests[i].unfed_tokens;
  }
  int64_t budget = prefill_chunk;
  while (budget > 0) {
    PrefillGroup group;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (unfed[i] <= 0) continue;
      if (group.requests.empty()) {
        group.tokens = std::min(budget, unfed[i]);
        group.requests.push_back(i);
      } else if (unfed[i] == group.tokens &&
                 static_cast<int64_t>(group.requests.size() + 1) * group.tokens <= budget) {
        group.requests.push_back(i);
      }
    }
    if (group.requests.empty()) break;
    for (size_t i : group.requests) unfed[i] -= group.tokens;
    budget -= group.tokens * static_cast<int64_t>(group.requests.size());
    plan.prefill.push_back(std::move(group));
    if (plan.decode) break;
  }
  return plan;
}

}  // namespace recur
