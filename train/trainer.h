#ifndef RECUR_TRAIN_TRAINER_H_
#define RECUR_TRAIN_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/transformer.h"
#include "train/corpus.h"
#include "train/data_parallel.h"

namespace recur {

struct TrainOptions {
  int64_t batch_size = 16;
  int64_t seq_len = 128;
  // Linear attention only: each row's recurrent state is carried from one window to the next
  // (detached, so gradients stop at the window), as recurrent language models are trained, and
  // validation and test carry it through each row too. Off: every window starts afresh.
  bool carry_context = false;
  double lr = 1e-3;
  int64_t warmup = 100;  // steps of linear warm-up, then cosine decay to lr / 10
  double weight_decay = 0.01;
  double clip = 1.0;  // gradient norm clip; 0 turns it off
  // > 0: also keep an exponential moving average of the weights (Polyak averaging), updated after
  // every step with this decay (e.g. 0.999; a smaller one in the first steps), and validate it
  // beside the weights themselves: whichever scores better becomes the best model.
  double ema_decay = 0;
  int64_t epochs = 1;
  int64_t max_steps = 0;      // 0: as many as `epochs` take
  double time_budget = 0;     // seconds; 0: no limit
  int64_t eval_every = 0;     // steps between validations; 0: once per epoch and at the end
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
  std::string out;            // checkpoint directory (the best by validation); empty: none
  // Resumable state (training_state.h), written at each evaluation and at the end; empty: none.
  // recur-train puts it at "<out>.state".
  std::string state_dir;
  std::string resume;         // a state directory to continue from; empty: start afresh
  int64_t stop_after_steps = 0;  // end this invocation at this step (the schedule still follows
                                 // max_steps/epochs), e.g. to train in pieces with --resume
  std::string metrics_log;    // JSON lines; empty: none
  bool progress = true;
  // false: no validation or test passes and no checkpoint (throughput and memory measurements).
  bool evaluate = true;
  DataParallel* data_parallel = nullptr;  // null: one process

  std::string ToJson() const;
};

struct TrainResult {
  int64_t steps = 0;
  double best_valid_loss = 0;  // nats per token
  double test_loss = 0;        // of the best model
  double tokens_per_second = 0;
  double seconds = 0;
  // The weights after the last step (not the best ones), for tests and callers that go on.
  torch::OrderedDict<std::string, torch::Tensor> final_params;
  std::vector<torch::Tensor> ema_params;  // their moving average (--ema_decay), parameters() order
};

// Trains a new model of `config` on `corpus` (or continues options.resume, whose configuration
// must equal `config`), keeping the best checkpoint by validation loss.
absl::StatusOr<TrainResult> Train(const ModelConfig& config, const Corpus& corpus,
                                  const TrainOptions& options);

}  // namespace recur

#endif  // RECUR_TRAIN_TRAINER_H_
