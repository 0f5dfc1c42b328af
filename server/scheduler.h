#ifndef RECUR_SERVER_SCHEDULER_H_
#define RECUR_SERVER_SCHEDULER_H_

// The engine's scheduling policy, as a pure function: given the admitted requests' phases and
// unfed prompt lengths, which prompt slices one engine iteration feeds (and with whom), and whether
// it runs a decode step. No model, no threads: tested on its own (tests/server/scheduler_test.cc).
//
// The policy: prompt tokens first, up to `prefill_chunk` per iteration over all requests, then one
// decode step for every request that was already decoding. The oldest prompt's next slice runs
// together with every other prompt whose unfed length is the same (a burst of similar requests
// starts in one batched Prefill). While streams are decoding, one such slice runs per iteration,
// so a long prompt delays them by one slice, never by its length; with nobody decoding, slices
// run until the budget is spent.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace recur {

// A request's lifecycle in the engine, one phase at a time.
enum class RequestPhase {
  kQueued,      // accepted, waiting for a slot
  kPrefilling,  // has a slot; prompt tokens remain to be fed
  kDecoding,    // prompt fed; a row of the batched decode step
  kFinished,    // done (any reason); its slot goes back at the end of the iteration
};

// What the policy sees of one admitted request.
struct SchedulingView {
  RequestPhase phase = RequestPhase::kPrefilling;
  int64_t unfed_tokens = 0;  // prompt tokens not yet in the state (≥ 1 while prefilling)
};

// `tokens` prompt tokens of each request in `requests` (indices into the views), fed in one
// batched Prefill.
struct PrefillGroup {
  std::vector<size_t> requests;
  int64_t tokens = 0;

  bool operator==(const PrefillGroup& other) const {
    return requests == other.requests && tokens == other.tokens;
  }
};

struct IterationPlan {
  std::vector<PrefillGroup> prefill;  // run in order; a request whose prompt ends starts decoding
  bool decode = false;                // then one decode step for the requests already decoding
};

// The plan for one iteration over `requests`, oldest first.
IterationPlan PlanIteration(absl::Span<const SchedulingView> requests, int64_t prefill_chunk);

}  // namespace recur

#endif  // RECUR_SERVER_SCHEDULER_H_
