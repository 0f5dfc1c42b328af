#ifndef RECUR_TRAIN_TRAINER_H_
#define RECUR_TRAIN_TRAINER_H_

// The training loop as a Trainer with named phases: Create (check the options, build the model
// and the optimizer, Resume a saved run), Step (one optimizer step), EvaluateAndSave (validate,
// log, keep the best checkpoint, save the resumable state) and Run, which strings them together
// until the schedule ends and then tests the best model.

#include <torch/optim/adamw.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/transformer.h"
#include "train/batcher.h"
#include "train/corpus.h"
#include "train/data_parallel.h"
#include "train/evaluation.h"
#include "train/metrics_log.h"
#include "train/progress_bar.h"
#include "train/training_state.h"

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
  int64_t max_steps = 0;   // 0: as many as `epochs` take
  double time_budget = 0;  // seconds; 0: no limit
  int64_t eval_every = 0;  // steps between validations; 0: once per epoch and at the end
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;
  std::string out;  // checkpoint directory (the best by validation); empty: none
  // Resumable state (training_state.h), written at each evaluation and at the end; empty: none.
  // recur-train puts it at "<out>.state".
  std::string state_dir;
  std::string resume;            // a state directory to continue from; empty: start afresh
  int64_t stop_after_steps = 0;  // end this invocation at this step (the schedule still follows
                                 // max_steps/epochs), e.g. to train in pieces with --resume
  std::string metrics_log;       // JSON lines; empty: none
  bool progress = true;
  // false: no validation or test passes (throughput and memory measurements); `out` then
  // receives the final weights, as there is no validation to choose the best.
  bool evaluate = true;
  DataParallel* data_parallel = nullptr;  // null: one process

  // INVALID_ARGUMENT naming the option (as recur-train's flag) that is out of range, or OK.
  // Checks of the options against a model or data set are Trainer::Create's.
  absl::Status Validate() const;
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

class Trainer {
 public:
  // Checks `options` and their fit to `config` and `corpus`, builds the model (seeded) and AdamW,
  // and continues options.resume when set (its configuration must equal `config`). `corpus` must
  // outlive the trainer.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const ModelConfig& config,
                                                         const Corpus& corpus,
                                                         TrainOptions options);

  // Trains until the schedule (max_steps or epochs), the time budget or stop_after_steps ends the
  // run, validating every eval_every steps and at the end, then tests the best model. Without
  // options.evaluate, --out receives the final weights instead of the best.
  absl::StatusOr<TrainResult> Run();

  // One optimizer step on the next window: the learning rate of the schedule, forward (carrying
  // the context when asked), backward, the data-parallel average, clipping, AdamW and the moving
  // average. INTERNAL when the loss is not finite.
  absl::Status Step();

 private:
  Trainer(const Corpus& corpus, TrainOptions options, TransformerLM model,
          std::unique_ptr<torch::optim::AdamW> optimizer);

  // Restores weights, optimizer, generators, progress and carried rows from options.resume.
  absl::Status Resume();
  // Validates (the averaged weights too), logs, keeps the best checkpoint, saves the state.
  absl::Status EvaluateAndSave();
  // The test loss of the best weights, and the summary line of the metrics log.
  TrainResult Finish();
  // Whether every rank agrees to go on: ranks must stop at the same step or the collectives hang.
  bool KeepGoing();
  double FractionDone() const;
  double Elapsed() const;
  int64_t Epoch() const;
  void ShowProgress();
  // Writes the final weights to --out when there was no validation to choose the best ones.
  absl::Status SaveFinalWeights();

  const Corpus& corpus_;
  const TrainOptions options_;
  TransformerLM model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  TrainingState state_;
  StreamBatcher batches_;
  EvaluationOptions evaluation_;
  std::unique_ptr<MetricsLog> metrics_;  // the leader's, when options.metrics_log is set
  ProgressBar bar_;
  DataParallel* const dp_;
  const int world_;
  const int rank_;
  const int64_t rows_per_rank_;
  int64_t total_steps_ = 0;
  int64_t eval_every_ = 0;
  // Elapsed time carries over a resume, so time budgets and tokens/s cover the whole run.
  std::chrono::steady_clock::time_point start_;
  double lr_ = 0;
  int64_t peak_heap_ = 0;  // the largest live heap seen after a forward pass
};

// Trainer::Create, then Run: trains a new model of `config` on `corpus` (or continues
// options.resume), keeping the best checkpoint by validation loss.
absl::StatusOr<TrainResult> Train(const ModelConfig& config, const Corpus& corpus,
                                  const TrainOptions& options);

}  // namespace recur

#endif  // RECUR_TRAIN_TRAINER_H_
