#ifndef RECUR_MODEL_SAMPLING_H_
#define RECUR_MODEL_SAMPLING_H_

// Picking the next token from a row of logits.
//
// Every mode scans the vocabulary a small constant number of times, never sorts it:
//   temperature 0   argmax of the penalised logits (ties: the lower id).
//   top_k > 0       the k best by a one-pass heap, then softmax, top-p and the draw over those k
//                   in float64, in rank order (the stream recur has always produced for top-k).
//   otherwise       w_i = exp((l_i − max) / T) in float32 (a vectorised pass, exact to a few
//                   ulp and bitwise the same on every x86-64 vector width), a draw by inverse CDF
//                   in id order, and for top_p < 1 rejection (FlashInfer's sorting-free top-p):
//                   a drawn token j is accepted when the tokens ranked before it hold less than
//                   top_p of the mass; otherwise the next draw is among those tokens only. The
//                   accepted token follows the renormalised nucleus distribution exactly, and a
//                   draw lands in the nucleus with probability ≥ top_p, so about one round is
//                   needed. Each round takes one uniform from the generator.
// "Ranked before" is the total order: larger weight first, ties broken by the lower id; the
// nucleus is the shortest prefix of that order whose mass reaches top_p.

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/token_set.h"

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

// One request's sampler: its parameters, its generator and scratch space for one row, so that
// sampling allocates nothing after the first call. Runs on the host; the same seed and logits
// give the same tokens whatever device or batch the logits came from.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits: one row of vocabulary scores. seen: the tokens the repetition penalty applies to
  // (ignored when the penalty is 1; otherwise its vocabulary is the row's).
  int64_t Sample(absl::Span<const float> logits, const TokenSet& seen);

 private:
  int64_t Greedy(absl::Span<const float> logits, const TokenSet& seen);
  // Fills chunk_max_ with the maximum of every 16 logits; returns the number of chunks.
  int64_t Chunks(absl::Span<const float> logits);
  int64_t SampleTopK(absl::Span<const float> logits, const TokenSet& seen);
  int64_t SampleNucleus(absl::Span<const float> logits, const TokenSet& seen);
  // A uniform double in [0, 1) from 53 random bits: the same on every platform, unlike
  // std::uniform_real_distribution.
  double Uniform();

  SamplingParams params_;
  std::mt19937_64 generator_;
  // Scratch, sized to the vocabulary on first use.
  std::vector<float> weights_;
  std::vector<float> penalised_;  // the row with the repetition penalty applied
  std::vector<double> block_mass_, before_mass_;
  std::vector<float> block_max_;
  std::vector<float> chunk_max_;
  std::vector<std::pair<int64_t, double>> top_;
};

}  // namespace recur

#endif  // RECUR_MODEL_SAMPLING_H_
