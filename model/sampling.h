#ifndef RECUR_MODEL_SAMPLING_H_
#define RECUR_MODEL_SAMPLING_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace recur {

struct SamplingParams {
  // 0 means greedy (argmax); otherwise logits are divided by it.
  double temperature = 1.0;
  // Keep only the k most likely tokens; 0 keeps all.
  int64_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches top_p; 1 keeps all.
  double top_p = 1.0;
  // > 1 discourages tokens already in the history (CTRL: positive logits divided, negative
  // multiplied); 1 is off.
  double repetition_penalty = 1.0;
  uint64_t seed = 0;

  // INVALID_ARGUMENT naming the field, or OK.
  absl::Status Validate() const;
};

// Picks next tokens from logits. Runs on the host in double precision with its own generator, so
// the same seed gives the same tokens whatever device or batch the logits came from.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits: one row of vocabulary scores. history: the tokens so far (for the repetition penalty).
  int64_t Sample(absl::Span<const float> logits, absl::Span<const int64_t> history);

  // The tokens Sample may return for these logits (those that survive top-k and top-p), sorted.
  // Exposed for tests and diagnostics.
  std::vector<int64_t> Candidates(absl::Span<const float> logits,
                                  absl::Span<const int64_t> history) const;

 private:
  // Candidate ids with their unnormalised probabilities, most likely first.
  std::vector<std::pair<int64_t, double>> Filter(absl::Span<const float> logits,
                                                 absl::Span<const int64_t> history) const;

  SamplingParams params_;
  std::mt19937_64 generator_;
};

}  // namespace recur

#endif  // RECUR_MODEL_SAMPLING_H_
