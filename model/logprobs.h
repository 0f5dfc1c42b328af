#ifndef RECUR_MODEL_LOGPROBS_H_
#define RECUR_MODEL_LOGPROBS_H_

// Log-probabilities of generated tokens, as APIs report them: the chosen token's and the N most
// likely alternatives', under the model's own distribution, log softmax(logits), computed before
// temperature, the repetition penalty and top-k/top-p (so they describe the model, not the
// sampler's settings, as OpenAI's do). One pass for the log-sum-exp in double precision and a
// bounded selection of the top N: O(V) per row, no sort of the vocabulary.

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace recur {

// At most this many alternatives per token (OpenAI's limit).
inline constexpr int kMaxTopLogprobs = 20;

struct TokenLogprob {
  int64_t token = -1;
  double logprob = 0;
};

struct StepLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // the top_n most likely, descending (ties: the lower id first)
};

// `logits` is one row over the vocabulary; `chosen` in it; 0 <= top_n <= kMaxTopLogprobs.
StepLogprobs ComputeLogprobs(absl::Span<const float> logits, int64_t chosen, int top_n);

}  // namespace recur

#endif  // RECUR_MODEL_LOGPROBS_H_
