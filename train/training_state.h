#ifndef RECUR_TRAIN_TRAINING_STATE_H_
#define RECUR_TRAIN_TRAINING_STATE_H_

// Everything --resume needs to continue a run exactly: the current weights (as a checkpoint), the
// AdamW moments and step counts, the random generators behind dropout (the CPU's, and the GPU's
// when training there), the best weights so far, and the progress through the data. Stored as a
// directory, published atomically:
//   config.json, tokenizer.json, model.safetensors   the current model (a loadable checkpoint)
//   optimizer.safetensors                            exp_avg.{name}, exp_avg_sq.{name},
//                                                    step.{name} (AdamW's, per parameter),
//                                                    best.{name}, ema.{name} (--ema_decay runs),
//                                                    rng.cpu, rng.cuda (GPU runs),
//                                                    carried.{s,z,conv}.{layer},
//                                                    carried.positions (--carry_context runs;
//                                                    conv with a short convolution)
//   trainer.json                                     step, tokens, losses, elapsed time, options

#include <torch/optim/adamw.h>
#include <torch/types.h>

#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/checkpoint.h"
#include "model/model_state.h"

namespace recur {

struct TrainingProgress {
  int64_t step = 0;    // optimizer steps taken = training windows consumed
  int64_t tokens = 0;  // target tokens trained on
  double elapsed_seconds = 0;
  double recent_loss = 0;  // smoothed training loss
  double best_valid_loss = std::numeric_limits<double>::infinity();
  std::string dataset;
  int64_t train_tokens = 0;  // size of the training split, to catch resuming on other data
};

struct TrainingState {
  TrainingProgress progress;
  std::vector<torch::Tensor> best_params;  // in model->parameters() order; empty if none yet
  std::vector<torch::Tensor> ema_params;   // the weights' moving average, same order; empty if off
  ModelState carried;        // the linear-attention state carried between windows; empty if none
  std::string options_json;  // the options the run was started with
};

absl::Status SaveTrainingState(const std::string& directory, const TransformerLM& model,
                               const Tokenizer& tokenizer, torch::optim::AdamW& optimizer,
                               const TrainingState& state);

// Reads the model configuration of a saved state (to rebuild the model before loading into it).
absl::StatusOr<ModelConfig> ReadTrainingStateConfig(const std::string& directory);

// Loads a saved state into `model` (built from the saved config) and `optimizer` (over
// model->parameters()), and restores the random generators.
absl::StatusOr<TrainingState> LoadTrainingState(const std::string& directory, TransformerLM& model,
                                                torch::optim::AdamW& optimizer);

}  // namespace recur

#endif  // RECUR_TRAIN_TRAINING_STATE_H_
