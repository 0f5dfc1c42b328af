#include "train/trainer.h"

#include <malloc.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "glog/logging.h"
#include "model/checkpoint.h"
#include "model/model_state.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Bytes the allocator has handed out right now: sampled after each forward pass, when the
// activations kept for backward are all alive, it tracks the peak training memory without the
// fixed cost of the libraries and the data set that resident-set figures include.
int64_t LiveHeapBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

// Every rank's rows of a carried state, in rank order, on every rank (a collective: all ranks
// call it together). Each rank places its rows in zeros and the ranks sum, which is exact.
ModelState GatherRows(const ModelState& local, DataParallel& dp) {
  const int64_t rows = local.batch_size();
  auto place = [&](const torch::Tensor& t) {
    auto shape = t.sizes().vec();
    shape[0] = rows * dp.world_size();
    auto all = torch::zeros(shape, t.options());
    all.narrow(0, dp.rank() * rows, rows).copy_(t);
    return all;
  };
  ModelState all;
  std::vector<torch::Tensor> sums;
  for (const auto& layer : local.linear) {
    all.linear.push_back({place(layer.s), place(layer.z)});
    sums.push_back(all.linear.back().s);
    sums.push_back(all.linear.back().z);
  }
  for (const auto& tail : local.conv) sums.push_back(all.conv.emplace_back(place(tail)));
  dp.AllReduceSum(sums);
  all.positions = place(local.positions);
  std::vector<torch::Tensor> positions{all.positions};  // int64: a collective of its own
  dp.AllReduceSum(positions);
  return all;
}

int64_t PeakResidentBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// Weight decay on matrices only, not on biases, norms, the (tied) embedding or the short
// convolutions (their identity start is not small weights).
std::unique_ptr<torch::optim::AdamW> MakeOptimizer(TransformerLM& model, const TrainOptions& o) {
  std::vector<torch::Tensor> decayed, undecayed;
  for (const auto& p : model->named_parameters()) {
    const bool matrix =
        p.value().dim() == 2 && p.key() != "embedding.weight" && !IsShortConvolutionWeight(p.key());
    (matrix ? decayed : undecayed).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay)));
  groups.emplace_back(undecayed, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(o.lr).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups));
}

// Whether `carried` has the layout of `expected` (a resumed run's carried rows).
bool SameLayout(const ModelState& carried, const ModelState& expected) {
  if (!carried.positions.defined() || carried.linear.size() != expected.linear.size() ||
      carried.conv.size() != expected.conv.size()) {
    return false;
  }
  for (size_t i = 0; i < expected.linear.size(); ++i) {
    if (carried.linear[i].s.sizes() != expected.linear[i].s.sizes() ||
        carried.linear[i].z.sizes() != expected.linear[i].z.sizes()) {
      return false;
    }
  }
  for (size_t i = 0; i < expected.conv.size(); ++i) {
    if (carried.conv[i].sizes() != expected.conv[i].sizes()) return false;
  }
  return true;
}

// Linear warm-up to the full rate, then cosine decay to a tenth of it as `progress` goes 0 → 1.
double LearningRate(const TrainOptions& o, int64_t step, double progress) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / o.warmup;
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * std::clamp(progress, 0.0, 1.0)));
  return o.lr * (0.1 + 0.9 * cosine);
}

// Puts `weights` (in model->parameters() order) into the model for its lifetime, then puts the
// model's own weights back: to validate, test or save other weights than the current ones.
class ScopedWeights {
 public:
  ScopedWeights(TransformerLM& model, const std::vector<torch::Tensor>& weights)
      : params_(model->parameters()) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size() && i < weights.size(); ++i) {
      own_.push_back(params_[i].detach().clone());
      params_[i].copy_(weights[i]);
    }
  }
  ~ScopedWeights() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < own_.size(); ++i) params_[i].copy_(own_[i]);
  }
  ScopedWeights(const ScopedWeights&) = delete;
  ScopedWeights& operator=(const ScopedWeights&) = delete;

 private:
  std::vector<torch::Tensor> params_, own_;
};

std::vector<torch::Tensor> CloneAll(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> copies;
  for (const auto& t : tensors) copies.push_back(t.detach().clone());
  return copies;
}

// The moving average's decay after `step` updates: small at first (the average of a few steps
// would otherwise be mostly the random start), `decay` once (1 + step) / (10 + step) passes it.
double EmaDecayAt(double decay, int64_t step) {
  return std::min(decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

}  // namespace

std::string TrainOptions::ToJson() const {
  nlohmann::ordered_json j;
  j["batch_size"] = batch_size;
  j["seq_len"] = seq_len;
  j["carry_context"] = carry_context;
  j["lr"] = lr;
  j["warmup"] = warmup;
  j["weight_decay"] = weight_decay;
  j["clip"] = clip;
  j["ema_decay"] = ema_decay;
  j["epochs"] = epochs;
  j["max_steps"] = max_steps;
  j["time_budget"] = time_budget;
  j["eval_every"] = eval_every;
  j["seed"] = seed;
  return j.dump();
}

absl::Status TrainOptions::Validate() const {
  if (batch_size <= 0 || seq_len <= 0) {
    return absl::InvalidArgumentError("batch_size and seq_len must be positive");
  }
  const int world = data_parallel != nullptr ? data_parallel->world_size() : 1;
  if (batch_size % world != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size ", batch_size, " is not divisible by WORLD_SIZE ", world));
  }
  if (data_parallel != nullptr && data_parallel->device() != device) {
    return absl::InvalidArgumentError(absl::StrCat("this rank trains on ", device.str(),
                                                   " but its process group runs on ",
                                                   data_parallel->device().str()));
  }
  if (!(ema_decay >= 0.0 && ema_decay < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ema_decay must be in [0, 1) (0: off), got ", ema_decay));
  }
  if (!(lr > 0)) return absl::InvalidArgumentError("--lr must be positive");
  if (epochs <= 0 && max_steps <= 0) {
    return absl::InvalidArgumentError("--epochs or --max_steps must be positive");
  }
  for (const auto& [name, value] : {std::pair<const char*, double>{"warmup", warmup},
                                    {"weight_decay", weight_decay},
                                    {"clip", clip},
                                    {"epochs", epochs},
                                    {"max_steps", max_steps},
                                    {"time_budget", time_budget},
                                    {"eval_every", eval_every},
                                    {"stop_after_steps", stop_after_steps}}) {
    if (!(value >= 0 && std::isfinite(value))) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be 0 or positive, got ", value));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Create and Resume

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const ModelConfig& config,
                                                         const Corpus& corpus,
                                                         TrainOptions options) {
  RECUR_RETURN_IF_ERROR(config.Validate());
  RECUR_RETURN_IF_ERROR(options.Validate());
  if (config.vocab_size != corpus.tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("config vocab_size ", config.vocab_size,
                                                   " but the data's tokenizer has ",
                                                   corpus.tokenizer->vocab_size()));
  }
  if (corpus.train.numel() / options.batch_size < 2) {
    return absl::InvalidArgumentError(absl::StrCat("training split (", corpus.train.numel(),
                                                   " tokens) is too small for batch_size ",
                                                   options.batch_size));
  }
  if (options.carry_context && config.attention != AttentionKind::kLinear) {
    return absl::InvalidArgumentError(
        "carrying the context between windows needs linear attention (softmax's cache would "
        "grow with the whole training split)");
  }
  torch::manual_seed(options.seed);
  TransformerLM model(config);
  model->to(options.device);
  model->train();
  auto optimizer = MakeOptimizer(model, options);
  std::unique_ptr<Trainer> trainer(
      new Trainer(corpus, std::move(options), std::move(model), std::move(optimizer)));
  if (!trainer->options_.resume.empty()) {
    RECUR_RETURN_IF_ERROR(trainer->Resume());
  }
  TrainingState& state = trainer->state_;
  if (trainer->options_.ema_decay > 0 && state.ema_params.empty()) {
    state.ema_params = CloneAll(trainer->model_->parameters());
  }
  const bool leader = trainer->rank_ == 0;
  if (leader && !trainer->options_.metrics_log.empty()) {
    const int64_t trim_to = trainer->options_.resume.empty() ? -1 : state.progress.step;
    RECUR_ASSIGN_OR_RETURN(trainer->metrics_,
                           MetricsLog::Open(trainer->options_.metrics_log, trim_to));
  }
  // Elapsed time carries over a resume, so time budgets and tokens/s cover the whole run.
  trainer->start_ =
      Clock::now() - std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(state.progress.elapsed_seconds));
  return trainer;
}

Trainer::Trainer(const Corpus& corpus, TrainOptions options, TransformerLM model,
                 std::unique_ptr<torch::optim::AdamW> optimizer)
    : corpus_(corpus),
      options_(std::move(options)),
      model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      batches_(corpus.train, options_.batch_size, options_.seq_len),
      dp_(options_.data_parallel),
      world_(dp_ != nullptr ? dp_->world_size() : 1),
      rank_(dp_ != nullptr ? dp_->rank() : 0),
      rows_per_rank_(options_.batch_size / world_) {
  state_.options_json = options_.ToJson();
  state_.progress.dataset = corpus.name;
  state_.progress.train_tokens = corpus.train.numel();
  total_steps_ =
      options_.max_steps > 0 ? options_.max_steps : options_.epochs * batches_.num_windows();
  eval_every_ = options_.eval_every > 0 ? options_.eval_every : batches_.num_windows();
  evaluation_.rows = options_.batch_size;
  evaluation_.seq_len = options_.seq_len;
  evaluation_.carry_context = options_.carry_context;
  evaluation_.device = options_.device;
  lr_ = options_.lr;
}

absl::Status Trainer::Resume() {
  auto resumed = LoadTrainingState(options_.resume, model_, *optimizer_);
  if (!resumed.ok()) return resumed.status();
  const auto saved = nlohmann::json::parse(resumed->options_json);
  if (resumed->progress.dataset != corpus_.name ||
      resumed->progress.train_tokens != corpus_.train.numel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resume: the state was trained on ", resumed->progress.dataset, " (",
                     resumed->progress.train_tokens, " training tokens), this run reads ",
                     corpus_.name, " (", corpus_.train.numel(), ")"));
  }
  if (saved.value("batch_size", int64_t{0}) != options_.batch_size ||
      saved.value("seq_len", int64_t{0}) != options_.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot resume: the state used batch_size ", saved.value("batch_size", int64_t{0}),
        " and seq_len ", saved.value("seq_len", int64_t{0}), "; this run asks for ",
        options_.batch_size, " and ", options_.seq_len));
  }
  if (saved.value("carry_context", false) != options_.carry_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resume: the state was trained ",
                     saved.value("carry_context", false) ? "with" : "without",
                     " --carry_context; this run asks for the opposite"));
  }
  if (saved.value("ema_decay", 0.0) != options_.ema_decay) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resume: the state used --ema_decay ",
                                                   saved.value("ema_decay", 0.0),
                                                   "; this run asks for ", options_.ema_decay));
  }
  state_.carried = std::move(resumed->carried);
  state_.ema_params = std::move(resumed->ema_params);
  state_.progress = resumed->progress;
  state_.best_params = std::move(resumed->best_params);
  LOG_IF(INFO, rank_ == 0) << "resuming from " << options_.resume << " at step "
                           << state_.progress.step;
  if (!options_.carry_context || state_.progress.step % batches_.num_windows() == 0) {
    return absl::OkStatus();  // the next window starts its rows afresh
  }
  if (!SameLayout(state_.carried, model_->NewState(options_.batch_size, options_.device))) {
    return absl::InvalidArgumentError(
        "cannot resume: the state's carried context is missing or malformed");
  }
  if (world_ > 1) {  // the state file holds every rank's rows; this rank carries its own
    std::vector<int64_t> own(rows_per_rank_);
    for (int64_t i = 0; i < rows_per_rank_; ++i) own[i] = rank_ * rows_per_rank_ + i;
    state_.carried = SelectRows(state_.carried, own);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Run

absl::StatusOr<TrainResult> Trainer::Run() {
  const TrainingProgress& progress = state_.progress;
  LOG_IF(INFO, rank_ == 0) << "training " << model_->ParameterCount() << " parameters on "
                           << corpus_.name << " (vocabulary " << corpus_.tokenizer->vocab_size()
                           << ", " << corpus_.train.numel() << " training tokens, "
                           << batches_.num_windows() << " windows per epoch) for up to "
                           << total_steps_ << " steps"
                           << (options_.time_budget > 0
                                   ? absl::StrCat(" or ", options_.time_budget, " s")
                                   : "")
                           << (world_ > 1 ? absl::StrCat(" on ", world_, " processes") : "");
  const int64_t first_step = progress.step;
  int64_t last_eval_step = -1;
  while (KeepGoing()) {
    if (auto s = Step(); !s.ok()) {
      bar_.Finish();
      return s;
    }
    ShowProgress();
    if (progress.step % eval_every_ == 0) {
      RECUR_RETURN_IF_ERROR(EvaluateAndSave());
      last_eval_step = progress.step;
    }
  }
  if (last_eval_step != progress.step && progress.step > first_step) {
    RECUR_RETURN_IF_ERROR(EvaluateAndSave());
  }
  bar_.Finish();
  if (!options_.evaluate) {
    RECUR_RETURN_IF_ERROR(SaveFinalWeights());
  }
  return Finish();
}

bool Trainer::KeepGoing() {
  const TrainingProgress& progress = state_.progress;
  bool go = progress.step < total_steps_ &&
            (options_.stop_after_steps <= 0 || progress.step < options_.stop_after_steps) &&
            FractionDone() < 1.0;
  if (dp_ != nullptr && options_.time_budget > 0) {
    // On the rank's device: NCCL reduces CUDA tensors only.
    std::vector<torch::Tensor> flag{
        torch::full({1}, go ? 1.0f : 0.0f, torch::TensorOptions().device(options_.device))};
    dp_->AllReduceMean(flag);
    go = flag[0].item<float>() == 1.0f;
  }
  return go;
}

double Trainer::Elapsed() const { return SecondsSince(start_); }

double Trainer::FractionDone() const {
  return std::max(static_cast<double>(state_.progress.step) / total_steps_,
                  options_.time_budget > 0 ? Elapsed() / options_.time_budget : 0.0);
}

int64_t Trainer::Epoch() const { return (state_.progress.step - 1) / batches_.num_windows() + 1; }

void Trainer::ShowProgress() {
  if (rank_ != 0 || !options_.progress) return;
  const TrainingProgress& progress = state_.progress;
  const double elapsed = Elapsed(), done = FractionDone();
  bar_.Update(
      done, done > 0 ? elapsed * (1 - done) / done : -1,
      absl::StrFormat("step %d  loss %.3f  %.0f tok/s  lr %.2e", progress.step,
                      progress.recent_loss, progress.tokens / std::max(elapsed, 1e-9), lr_));
}

// ---------------------------------------------------------------------------------------------
// Step

absl::Status Trainer::Step() {
  TrainingProgress& progress = state_.progress;
  lr_ = LearningRate(options_, progress.step, FractionDone());
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr_);

  const int64_t window = progress.step % batches_.num_windows();
  auto [input, target] = batches_.Window(window);
  if (world_ > 1) {
    torch::manual_seed(DropoutSeed(options_.seed, rank_, progress.step));
    input = input.slice(0, rank_ * rows_per_rank_, (rank_ + 1) * rows_per_rank_);
    target = target.slice(0, rank_ * rows_per_rank_, (rank_ + 1) * rows_per_rank_);
  }
  torch::Tensor logits;
  if (options_.carry_context) {
    // Each epoch starts the rows afresh; within it the state flows on, cut off from the graph.
    if (window == 0) state_.carried = model_->NewState(rows_per_rank_, options_.device);
    logits = model_->Continue(input.to(options_.device), &state_.carried);
  } else {
    logits = model_->Forward(input.to(options_.device));
  }
  auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                   target.to(options_.device).reshape({-1}));
  peak_heap_ = std::max(peak_heap_, LiveHeapBytes());
  optimizer_->zero_grad();
  loss.backward();
  for (auto& layer : state_.carried.linear) {  // truncated backpropagation: the next window's
    layer.s = layer.s.detach();                // gradients stop here
    layer.z = layer.z.detach();
  }
  for (auto& tail : state_.carried.conv) tail = tail.detach();
  if (dp_ != nullptr) {
    std::vector<torch::Tensor> grads;
    for (auto& p : model_->parameters()) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    grads.push_back(loss.detach().reshape({1}));  // report the global mean loss
    dp_->AllReduceMean(grads);
    loss = grads.back();
  }
  if (options_.clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.clip);
  optimizer_->step();
  if (!state_.ema_params.empty()) {
    torch::NoGradGuard no_grad;
    const double decay = EmaDecayAt(options_.ema_decay, progress.step);
    const auto params = model_->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      state_.ema_params[i].mul_(decay).add_(params[i], 1.0 - decay);
    }
  }

  ++progress.step;
  progress.tokens += target.numel() * world_;
  const double loss_value = loss.item<double>();
  if (!std::isfinite(loss_value)) {
    return absl::InternalError(absl::StrCat("training diverged: loss is ", loss_value, " at step ",
                                            progress.step, " (try a lower --lr)"));
  }
  progress.recent_loss =
      progress.step == 1 ? loss_value : 0.95 * progress.recent_loss + 0.05 * loss_value;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// EvaluateAndSave and Finish

absl::Status Trainer::EvaluateAndSave() {
  if (!options_.evaluate) return absl::OkStatus();
  TrainingProgress& progress = state_.progress;
  // What the state file will carry: with several ranks, all their rows (every rank takes part).
  ModelState all_rows;
  if (world_ > 1 && state_.carried.positions.defined() && !options_.state_dir.empty()) {
    all_rows = GatherRows(state_.carried, *dp_);
  }
  const double valid_own = Score(model_, corpus_.valid, evaluation_).mean_loss();
  double valid_ema = std::numeric_limits<double>::quiet_NaN();
  if (!state_.ema_params.empty()) {
    ScopedWeights averaged(model_, state_.ema_params);
    valid_ema = Score(model_, corpus_.valid, evaluation_).mean_loss();
  }
  const bool ema_better = valid_ema < valid_own;  // false when there is no average
  const double valid = ema_better ? valid_ema : valid_own;
  progress.elapsed_seconds = Elapsed();
  if (rank_ != 0) {
    if (valid < progress.best_valid_loss) progress.best_valid_loss = valid;
    return absl::OkStatus();
  }
  bar_.Finish();
  const bool byte_level = corpus_.byte_level;
  LOG(INFO) << absl::StrFormat(
      "step %d epoch %d: train loss %.4f, valid loss %.4f (%s)%s", progress.step, Epoch(),
      progress.recent_loss, valid_own, DescribeLoss(valid_own, byte_level),
      state_.ema_params.empty() ? ""
                                : absl::StrFormat(", averaged weights %.4f (%s)", valid_ema,
                                                  DescribeLoss(valid_ema, byte_level)));
  if (metrics_ != nullptr) {
    nlohmann::ordered_json line;
    line["step"] = progress.step;
    line["epoch"] = Epoch();
    line["epoch_progress"] = static_cast<double>(progress.step) / batches_.num_windows();
    line["train_loss"] = progress.recent_loss;
    MetricsLog::AddLoss(line, "valid", valid_own, byte_level);
    if (!state_.ema_params.empty())
      MetricsLog::AddLoss(line, "valid", valid_ema, byte_level, "_ema");
    line["lr"] = lr_;
    line["tokens_per_second"] = progress.tokens / std::max(progress.elapsed_seconds, 1e-9);
    line["elapsed_seconds"] = progress.elapsed_seconds;
    line["peak_memory_bytes"] = PeakResidentBytes();
    line["peak_heap_bytes"] = peak_heap_;
    metrics_->Write(line);
  }
  if (valid < progress.best_valid_loss) {
    progress.best_valid_loss = valid;
    state_.best_params = CloneAll(ema_better ? state_.ema_params : model_->parameters());
    if (!options_.out.empty()) {
      Provenance provenance;
      provenance.dataset = corpus_.name;
      provenance.steps = progress.step;
      provenance.valid_loss = valid;
      ScopedWeights best(model_, state_.best_params);
      if (auto s = SaveCheckpoint(options_.out, model_, *corpus_.tokenizer, provenance); !s.ok()) {
        return s;
      }
    }
  }
  if (options_.state_dir.empty()) return absl::OkStatus();
  if (all_rows.positions.defined()) std::swap(state_.carried, all_rows);
  auto saved =
      SaveTrainingState(options_.state_dir, model_, *corpus_.tokenizer, *optimizer_, state_);
  if (all_rows.positions.defined()) std::swap(state_.carried, all_rows);
  return saved;
}

absl::Status Trainer::SaveFinalWeights() {
  if (rank_ != 0 || options_.out.empty() || state_.progress.step == 0) return absl::OkStatus();
  Provenance provenance;  // no validation loss: nothing was validated
  provenance.dataset = corpus_.name;
  provenance.steps = state_.progress.step;
  return SaveCheckpoint(options_.out, model_, *corpus_.tokenizer, provenance);
}

TrainResult Trainer::Finish() {
  const TrainingProgress& progress = state_.progress;
  TrainResult result;
  result.steps = progress.step;
  result.seconds = Elapsed();
  result.tokens_per_second = progress.tokens / std::max(result.seconds, 1e-9);
  result.best_valid_loss = progress.best_valid_loss;
  {
    // Test the best model; the final weights come back after (the caller may keep using them).
    ScopedWeights best(model_, state_.best_params);
    result.test_loss = options_.evaluate ? Score(model_, corpus_.test, evaluation_).mean_loss()
                                         : std::numeric_limits<double>::quiet_NaN();
  }
  result.final_params = model_->named_parameters();
  result.ema_params = state_.ema_params;
  if (metrics_ != nullptr) {
    // The summary line a sweep collects.
    nlohmann::ordered_json line;
    line["final"] = true;
    line["steps"] = result.steps;
    if (options_.evaluate) {
      MetricsLog::AddLoss(line, "best_valid", result.best_valid_loss, corpus_.byte_level);
      MetricsLog::AddLoss(line, "test", result.test_loss, corpus_.byte_level);
    }
    line["byte_level"] = corpus_.byte_level;
    line["tokens_per_second"] = result.tokens_per_second;
    line["elapsed_seconds"] = result.seconds;
    line["peak_memory_bytes"] = PeakResidentBytes();
    line["peak_heap_bytes"] = peak_heap_;
    line["parameters"] = model_->ParameterCount();
    metrics_->Write(line);
  }
  return result;
}

absl::StatusOr<TrainResult> Train(const ModelConfig& config, const Corpus& corpus,
                                  const TrainOptions& options) {
  RECUR_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, corpus, options));
  return trainer->Run();
}

}  // namespace recur
