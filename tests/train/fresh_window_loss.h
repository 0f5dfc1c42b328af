#ifndef RECUR_TESTS_TRAIN_FRESH_WINDOW_LOSS_H_
#define RECUR_TESTS_TRAIN_FRESH_WINDOW_LOSS_H_

#include <torch/types.h>

#include "train/evaluation.h"

namespace recur {

// The trainer's validation: mean cross-entropy (nats per token) over fresh windows.
inline double FreshWindowLoss(TransformerLM& model, const torch::Tensor& stream, int64_t rows,
                              int64_t seq_len, const torch::Device& device) {
  EvaluationOptions options;
  options.rows = rows;
  options.seq_len = seq_len;
  options.device = device;
  return Score(model, stream, options).mean_loss();
}

}  // namespace recur

#endif  // RECUR_TESTS_TRAIN_FRESH_WINDOW_LOSS_H_
