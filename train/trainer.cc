#include "train/trainer.h"

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "model/checkpoint.h"
#include "model/model_state.h"
#include "nlohmann/json.hpp"
#include "train/batcher.h"
#include "train/evaluation.h"
#include "train/progress_bar.h"
#include "train/training_state.h"

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

// A resumed run's metrics log keeps only the lines up to the saved step, so it reads as if the
// run had never stopped: a line logged after the last save (or torn by a kill, or the summary of an
// invocation ended by --stop_after_steps) would otherwise appear twice or out of place.
absl::Status TrimMetricsLog(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();  // nothing logged yet
  std::string kept, line;
  while (std::getline(in, line)) {
    // Keeps the evaluation lines up to `step`; drops torn or foreign lines and any summary.
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const auto final_it = j.find("final"), step_it = j.find("step");
    const bool summary = final_it != j.end() && !(final_it->is_boolean() && !final_it->get<bool>());
    if (summary || step_it == j.end() || !step_it->is_number_integer()) continue;
    if (step_it->get<int64_t>() <= step) kept += line + "\n";
  }
  in.close();
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << kept;
    if (!out.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot replace ", path, ": ", ec.message()));
  return absl::OkStatus();
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

absl::StatusOr<TrainResult> Train(const ModelConfig& config, const Corpus& corpus,
                                  const TrainOptions& options) {
  if (auto s = config.Validate(); !s.ok()) return s;
  if (config.vocab_size != corpus.tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("config vocab_size ", config.vocab_size,
                                                   " but the data's tokenizer has ",
                                                   corpus.tokenizer->vocab_size()));
  }
  if (options.batch_size <= 0 || options.seq_len <= 0) {
    return absl::InvalidArgumentError("batch_size and seq_len must be positive");
  }
  if (corpus.train.numel() / options.batch_size < 2) {
    return absl::InvalidArgumentError(absl::StrCat("training split (", corpus.train.numel(),
                                                   " tokens) is too small for batch_size ",
                                                   options.batch_size));
  }
  DataParallel* dp = options.data_parallel;
  const int world = dp != nullptr ? dp->world_size() : 1;
  const int rank = dp != nullptr ? dp->rank() : 0;
  if (options.batch_size % world != 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", options.batch_size,
                                                   " is not divisible by WORLD_SIZE ", world));
  }
  const bool leader = rank == 0;  // the one rank that writes files and shows progress
  if (dp != nullptr && dp->device() != options.device) {
    return absl::InvalidArgumentError(absl::StrCat("this rank trains on ", options.device.str(),
                                                   " but its process group runs on ", dp->device().str()));
  }
  if (options.carry_context && config.attention != AttentionKind::kLinear) {
    return absl::InvalidArgumentError(
        "carrying the context between windows needs linear attention (softmax's cache would grow "
        "with the whole training split)");
  }
  if (!(options.ema_decay >= 0.0 && options.ema_decay < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("ema_decay must be in [0, 1) (0: off), got ", options.ema_decay));
  }
  if (!(options.lr > 0)) return absl::InvalidArgumentError("--lr must be positive");
  if (options.epochs <= 0 && options.max_steps <= 0) {
    return absl::InvalidArgumentError("--epochs or --max_steps must be positive");
  }
  for (const auto& [name, value] : {std::pair<const char*, double>{"warmup", options.warmup},
                                    {"weight_decay", options.weight_decay},
                                    {"clip", options.clip},
                                    {"epochs", options.epochs},
                                    {"max_steps", options.max_steps},
                                    {"time_budget", options.time_budget},
                                    {"eval_every", options.eval_every},
                                    {"stop_after_steps", options.stop_after_steps}}) {
    if (!(value >= 0 && std::isfinite(value))) {
      return absl::InvalidArgumentError(absl::StrCat(name, " must be 0 or positive, got ", value));
    }
  }

  torch::manual_seed(options.seed);
  TransformerLM model(config);
  model->to(options.device);
  model->train();

  // Weight decay on matrices only, not on biases, norms, the (tied) embedding or the short
  // convolutions (their identity start is not small weights).
  std::vector<torch::Tensor> decayed, undecayed;
  for (const auto& p : model->named_parameters()) {
    const bool matrix = p.value().dim() == 2 && p.key() != "embedding.weight" &&
                        !IsShortConvolutionWeight(p.key());
    (matrix ? decayed : undecayed).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay)));
  groups.emplace_back(undecayed, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(options.lr).weight_decay(0.0)));
  torch::optim::AdamW optimizer(std::move(groups));

  TrainingState state;
  state.options_json = options.ToJson();
  state.progress.dataset = corpus.name;
  state.progress.train_tokens = corpus.train.numel();
  if (!options.resume.empty()) {
    auto resumed = LoadTrainingState(options.resume, model, optimizer);
    if (!resumed.ok()) return resumed.status();
    const auto saved = nlohmann::json::parse(resumed->options_json);
    if (resumed->progress.dataset != corpus.name || resumed->progress.train_tokens != corpus.train.numel()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resume: the state was trained on ", resumed->progress.dataset, " (",
          resumed->progress.train_tokens, " training tokens), this run reads ", corpus.name, " (",
          corpus.train.numel(), ")"));
    }
    if (saved.value("batch_size", int64_t{0}) != options.batch_size ||
        saved.value("seq_len", int64_t{0}) != options.seq_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resume: the state used batch_size ", saved.value("batch_size", int64_t{0}),
          " and seq_len ", saved.value("seq_len", int64_t{0}), "; this run asks for ",
          options.batch_size, " and ", options.seq_len));
    }
    if (saved.value("carry_context", false) != options.carry_context) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resume: the state was trained ", saved.value("carry_context", false) ? "with" : "without",
          " --carry_context; this run asks for the opposite"));
    }
    if (saved.value("ema_decay", 0.0) != options.ema_decay) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot resume: the state used --ema_decay ", saved.value("ema_decay", 0.0),
          "; this run asks for ", options.ema_decay));
    }
    state.carried = std::move(resumed->carried);
    state.ema_params = std::move(resumed->ema_params);
    state.progress = resumed->progress;
    state.best_params = std::move(resumed->best_params);
    LOG_IF(INFO, leader) << "resuming from " << options.resume << " at step " << state.progress.step;
  }
  TrainingProgress& progress = state.progress;
  if (options.ema_decay > 0 && state.ema_params.empty()) state.ema_params = CloneAll(model->parameters());

  StreamBatcher batches(corpus.train, options.batch_size, options.seq_len);
  const int64_t rows_per_rank = options.batch_size / world;
  if (options.carry_context && progress.step % batches.num_windows() != 0) {
    const auto expected = model->NewState(options.batch_size, options.device);
    bool fits = state.carried.positions.defined() && state.carried.linear.size() == expected.linear.size();
    for (size_t i = 0; fits && i < expected.linear.size(); ++i) {
      fits = state.carried.linear[i].s.sizes() == expected.linear[i].s.sizes() &&
             state.carried.linear[i].z.sizes() == expected.linear[i].z.sizes();
    }
    fits = fits && state.carried.conv.size() == expected.conv.size();
    for (size_t i = 0; fits && i < expected.conv.size(); ++i) {
      fits = state.carried.conv[i].sizes() == expected.conv[i].sizes();
    }
    if (!fits) return absl::InvalidArgumentError("cannot resume: the state's carried context is missing or malformed");
    if (world > 1) {  // the state file holds every rank's rows; this rank carries its own
      std::vector<int64_t> own(rows_per_rank);
      for (int64_t i = 0; i < rows_per_rank; ++i) own[i] = rank * rows_per_rank + i;
      state.carried = SelectRows(state.carried, own);
    }
  }
  const int64_t total_steps =
      options.max_steps > 0 ? options.max_steps : options.epochs * batches.num_windows();
  const int64_t eval_every = options.eval_every > 0 ? options.eval_every : batches.num_windows();

  std::ofstream metrics;
  if (leader && !options.metrics_log.empty()) {
    if (!options.resume.empty()) {
      if (auto s = TrimMetricsLog(options.metrics_log, progress.step); !s.ok()) return s;
    }
    const auto parent = std::filesystem::path(options.metrics_log).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    metrics.open(options.metrics_log, std::ios::app);
    if (!metrics) return absl::UnavailableError(absl::StrCat("cannot open ", options.metrics_log));
  }
  LOG_IF(INFO, leader) << "training " << model->ParameterCount() << " parameters on " << corpus.name
                       << " (vocabulary " << corpus.tokenizer->vocab_size() << ", " << corpus.train.numel()
                       << " training tokens, " << batches.num_windows()
                       << " windows per epoch) for up to " << total_steps << " steps"
                       << (options.time_budget > 0 ? absl::StrCat(" or ", options.time_budget, " s") : "")
                       << (world > 1 ? absl::StrCat(" on ", world, " processes") : "");

  ProgressBar bar;
  // Elapsed time carries over a resume, so time budgets and tokens/s cover the whole run.
  const auto start = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(progress.elapsed_seconds));
  auto fraction_done = [&]() {
    return std::max(static_cast<double>(progress.step) / total_steps,
                    options.time_budget > 0 ? SecondsSince(start) / options.time_budget : 0.0);
  };
  // Whether every rank agrees to go on: ranks must stop at the same step or the collectives hang.
  auto keep_going = [&]() {
    bool go = progress.step < total_steps &&
              (options.stop_after_steps <= 0 || progress.step < options.stop_after_steps) &&
              fraction_done() < 1.0;
    if (dp != nullptr && options.time_budget > 0) {
      // On the rank's device: NCCL reduces CUDA tensors only.
      std::vector<torch::Tensor> flag{
          torch::full({1}, go ? 1.0f : 0.0f, torch::TensorOptions().device(options.device))};
      dp->AllReduceMean(flag);
      go = flag[0].item<float>() == 1.0f;
    }
    return go;
  };

  int64_t peak_heap = 0;  // the largest LiveHeapBytes() seen after a forward pass

  EvaluationOptions evaluation;
  evaluation.rows = options.batch_size;
  evaluation.seq_len = options.seq_len;
  evaluation.carry_context = options.carry_context;
  evaluation.device = options.device;

  // Validates, logs, keeps the model if it is the best so far, and saves the resumable state.
  auto evaluate = [&](double lr) -> absl::Status {
    if (!options.evaluate) return absl::OkStatus();
    // What the state file will carry: with several ranks, all their rows (every rank takes part).
    ModelState all_rows;
    if (world > 1 && state.carried.positions.defined() && !options.state_dir.empty()) {
      all_rows = GatherRows(state.carried, *dp);
    }
    const double valid_own = Score(model, corpus.valid, evaluation).mean_loss();
    double valid_ema = std::numeric_limits<double>::quiet_NaN();
    if (!state.ema_params.empty()) {
      ScopedWeights averaged(model, state.ema_params);
      valid_ema = Score(model, corpus.valid, evaluation).mean_loss();
    }
    const bool ema_better = valid_ema < valid_own;  // false when there is no average
    const double valid = ema_better ? valid_ema : valid_own;
    progress.elapsed_seconds = SecondsSince(start);
    const int64_t epoch = (progress.step - 1) / batches.num_windows() + 1;
    if (!leader) {
      if (valid < progress.best_valid_loss) progress.best_valid_loss = valid;
      return absl::OkStatus();
    }
    bar.Finish();
    LOG(INFO) << absl::StrFormat("step %d epoch %d: train loss %.4f, valid loss %.4f (%s)%s", progress.step,
                                 epoch, progress.recent_loss, valid_own,
                                 DescribeLoss(valid_own, corpus.byte_level),
                                 state.ema_params.empty()
                                     ? ""
                                     : absl::StrFormat(", averaged weights %.4f (%s)", valid_ema,
                                                       DescribeLoss(valid_ema, corpus.byte_level)));
    if (metrics.is_open()) {
      nlohmann::ordered_json line;
      line["step"] = progress.step;
      line["epoch"] = epoch;
      line["epoch_progress"] = static_cast<double>(progress.step) / batches.num_windows();
      line["train_loss"] = progress.recent_loss;
      line["valid_loss"] = valid_own;
      line[corpus.byte_level ? "valid_bpc" : "valid_ppl"] =
          corpus.byte_level ? valid_own / std::log(2.0) : std::exp(valid_own);
      if (!state.ema_params.empty()) {
        line["valid_loss_ema"] = valid_ema;
        line[corpus.byte_level ? "valid_bpc_ema" : "valid_ppl_ema"] =
            corpus.byte_level ? valid_ema / std::log(2.0) : std::exp(valid_ema);
      }
      line["lr"] = lr;
      line["tokens_per_second"] = progress.tokens / std::max(progress.elapsed_seconds, 1e-9);
      line["elapsed_seconds"] = progress.elapsed_seconds;
      line["peak_memory_bytes"] = PeakResidentBytes();
      line["peak_heap_bytes"] = peak_heap;
      metrics << line.dump() << "\n" << std::flush;
    }
    if (valid < progress.best_valid_loss) {
      progress.best_valid_loss = valid;
      state.best_params = CloneAll(ema_better ? state.ema_params : model->parameters());
      if (!options.out.empty()) {
        Provenance provenance;
        provenance.dataset = corpus.name;
        provenance.steps = progress.step;
        provenance.valid_loss = valid;
        ScopedWeights best(model, state.best_params);
        if (auto s = SaveCheckpoint(options.out, model, *corpus.tokenizer, provenance); !s.ok()) return s;
      }
    }
    if (!options.state_dir.empty()) {
      if (all_rows.positions.defined()) std::swap(state.carried, all_rows);
      auto saved = SaveTrainingState(options.state_dir, model, *corpus.tokenizer, optimizer, state);
      if (all_rows.positions.defined()) std::swap(state.carried, all_rows);
      return saved;
    }
    return absl::OkStatus();
  };

  const int64_t first_step = progress.step;
  int64_t last_eval_step = -1;
  double lr = options.lr;
  while (keep_going()) {
    lr = LearningRate(options, progress.step, fraction_done());
    for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);

    const int64_t window = progress.step % batches.num_windows();
    auto [input, target] = batches.Window(window);
    if (world > 1) {
      torch::manual_seed(DropoutSeed(options.seed, rank, progress.step));
      input = input.slice(0, rank * rows_per_rank, (rank + 1) * rows_per_rank);
      target = target.slice(0, rank * rows_per_rank, (rank + 1) * rows_per_rank);
    }
    torch::Tensor logits;
    if (options.carry_context) {
      // Each epoch starts the rows afresh; within it the state flows on, cut off from the graph.
      if (window == 0) state.carried = model->NewState(rows_per_rank, options.device);
      logits = model->Continue(input.to(options.device), &state.carried);
    } else {
      logits = model->Forward(input.to(options.device));
    }
    auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                      target.to(options.device).reshape({-1}));
    peak_heap = std::max(peak_heap, LiveHeapBytes());
    optimizer.zero_grad();
    loss.backward();
    for (auto& layer : state.carried.linear) {  // truncated backpropagation: the next window's
      layer.s = layer.s.detach();               // gradients stop here
      layer.z = layer.z.detach();
    }
    for (auto& tail : state.carried.conv) tail = tail.detach();
    if (dp != nullptr) {
      std::vector<torch::Tensor> grads;
      for (auto& p : model->parameters()) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        grads.push_back(p.grad());
      }
      grads.push_back(loss.detach().reshape({1}));  // report the global mean loss
      dp->AllReduceMean(grads);
      loss = grads.back();
    }
    if (options.clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), options.clip);
    optimizer.step();
    if (!state.ema_params.empty()) {
      torch::NoGradGuard no_grad;
      const double decay = EmaDecayAt(options.ema_decay, progress.step);
      const auto params = model->parameters();
      for (size_t i = 0; i < params.size(); ++i) state.ema_params[i].mul_(decay).add_(params[i], 1.0 - decay);
    }

    ++progress.step;
    progress.tokens += target.numel() * world;
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value)) {
      bar.Finish();
      return absl::InternalError(absl::StrCat("training diverged: loss is ", loss_value,
                                              " at step ", progress.step, " (try a lower --lr)"));
    }
    progress.recent_loss =
        progress.step == 1 ? loss_value : 0.95 * progress.recent_loss + 0.05 * loss_value;
    if (leader && options.progress) {
      const double elapsed = SecondsSince(start), done = fraction_done();
      bar.Update(done, done > 0 ? elapsed * (1 - done) / done : -1,
                 absl::StrFormat("step %d  loss %.3f  %.0f tok/s  lr %.2e", progress.step,
                                 progress.recent_loss, progress.tokens / std::max(elapsed, 1e-9), lr));
    }
    if (progress.step % eval_every == 0) {
      if (auto s = evaluate(lr); !s.ok()) return s;
      last_eval_step = progress.step;
    }
  }
  if (last_eval_step != progress.step && progress.step > first_step) {
    if (auto s = evaluate(lr); !s.ok()) return s;
  }
  bar.Finish();

  TrainResult result;
  result.steps = progress.step;
  result.seconds = SecondsSince(start);
  result.tokens_per_second = progress.tokens / std::max(result.seconds, 1e-9);
  result.best_valid_loss = progress.best_valid_loss;
  {
    // Test the best model; the final weights come back after (the caller may keep using them).
    ScopedWeights best(model, state.best_params);
    result.test_loss = options.evaluate ? Score(model, corpus.test, evaluation).mean_loss()
                                        : std::numeric_limits<double>::quiet_NaN();
  }
  result.final_params = model->named_parameters();
  result.ema_params = state.ema_params;
  if (metrics.is_open()) {
    // The summary line a sweep collects.
    nlohmann::ordered_json line;
    line["final"] = true;
    line["steps"] = result.steps;
    if (options.evaluate) {
      line["best_valid_loss"] = result.best_valid_loss;
      line["test_loss"] = result.test_loss;
      line[corpus.byte_level ? "test_bpc" : "test_ppl"] =
          corpus.byte_level ? result.test_loss / std::log(2.0) : std::exp(result.test_loss);
      line[corpus.byte_level ? "best_valid_bpc" : "best_valid_ppl"] =
          corpus.byte_level ? result.best_valid_loss / std::log(2.0) : std::exp(result.best_valid_loss);
    }
    line["byte_level"] = corpus.byte_level;
    line["tokens_per_second"] = result.tokens_per_second;
    line["elapsed_seconds"] = result.seconds;
    line["peak_memory_bytes"] = PeakResidentBytes();
    line["peak_heap_bytes"] = peak_heap;
    line["parameters"] = model->ParameterCount();
    metrics << line.dump() << "\n" << std::flush;
  }
  return result;
}

}  // namespace recur
