#include "train/trainer.h"

#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <cmath>
#include <fstream>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "model/checkpoint.h"
#include "nlohmann/json.hpp"
#include "train/batcher.h"
#include "train/progress_bar.h"

namespace recur {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
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

}  // namespace

std::string DescribeLoss(double nats, bool byte_level) {
  return byte_level ? absl::StrFormat("bpc %.3f", nats / std::log(2.0))
                    : absl::StrFormat("ppl %.1f", std::exp(nats));
}

double Evaluate(TransformerLM& model, const torch::Tensor& stream, int64_t batch_size,
                int64_t seq_len, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  // Rows must be long enough to hold at least one target.
  batch_size = std::max<int64_t>(1, std::min(batch_size, stream.numel() / 2));
  StreamBatcher batches(stream, batch_size, seq_len);
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < batches.num_windows(); ++i) {
    auto [input, target] = batches.Window(i);
    auto logits = model->Forward(input.to(device));
    auto loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), target.to(device).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    total += loss.item<double>();
    count += target.numel();
  }
  model->train(was_training);
  return total / std::max<int64_t>(count, 1);
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

  torch::manual_seed(options.seed);
  TransformerLM model(config);
  model->to(options.device);
  model->train();

  // Weight decay on matrices only, not on biases, norms or the (tied) embedding.
  std::vector<torch::Tensor> decayed, undecayed;
  for (const auto& p : model->named_parameters()) {
    (p.value().dim() == 2 && p.key() != "embedding.weight" ? decayed : undecayed).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay)));
  groups.emplace_back(undecayed, std::make_unique<torch::optim::AdamWOptions>(
                                     torch::optim::AdamWOptions(options.lr).weight_decay(0.0)));
  torch::optim::AdamW optimizer(std::move(groups));

  StreamBatcher batches(corpus.train, options.batch_size, options.seq_len);
  const int64_t total_steps =
      options.max_steps > 0 ? options.max_steps : options.epochs * batches.num_windows();
  const int64_t eval_every = options.eval_every > 0 ? options.eval_every : batches.num_windows();

  std::ofstream metrics;
  if (!options.metrics_log.empty()) {
    const auto parent = std::filesystem::path(options.metrics_log).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    metrics.open(options.metrics_log, std::ios::app);
    if (!metrics) return absl::UnavailableError(absl::StrCat("cannot open ", options.metrics_log));
  }
  LOG(INFO) << "training " << model->ParameterCount() << " parameters on " << corpus.name << " ("
            << corpus.train.numel() << " tokens, " << batches.num_windows()
            << " windows per epoch) for up to " << total_steps << " steps"
            << (options.time_budget > 0 ? absl::StrCat(" or ", options.time_budget, " s") : "");

  TrainResult result;
  result.best_valid_loss = std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best_params;
  ProgressBar bar;
  const auto start = Clock::now();
  int64_t tokens = 0, step = 0;
  double recent_loss = 0;

  // Validates, logs, and keeps the model if it is the best so far.
  auto evaluate = [&](int64_t epoch, double lr) -> absl::Status {
    const double valid = Evaluate(model, corpus.valid, options.batch_size, options.seq_len, options.device);
    const double elapsed = SecondsSince(start);
    bar.Finish();
    LOG(INFO) << absl::StrFormat("step %d epoch %d: train loss %.4f, valid loss %.4f (%s)", step, epoch,
                                 recent_loss, valid, DescribeLoss(valid, corpus.byte_level));
    if (metrics.is_open()) {
      nlohmann::ordered_json line;
      line["step"] = step;
      line["epoch"] = epoch;
      line["train_loss"] = recent_loss;
      line["valid_loss"] = valid;
      line[corpus.byte_level ? "valid_bpc" : "valid_ppl"] =
          corpus.byte_level ? valid / std::log(2.0) : std::exp(valid);
      line["lr"] = lr;
      line["tokens_per_second"] = tokens / std::max(elapsed, 1e-9);
      line["elapsed_seconds"] = elapsed;
      line["peak_memory_bytes"] = PeakResidentBytes();
      metrics << line.dump() << "\n" << std::flush;
    }
    if (valid < result.best_valid_loss) {
      result.best_valid_loss = valid;
      best_params.clear();
      for (const auto& p : model->parameters()) best_params.push_back(p.detach().clone());
      if (!options.out.empty()) {
        Provenance provenance;
        provenance.dataset = corpus.name;
        provenance.steps = step;
        provenance.valid_loss = valid;
        if (auto s = SaveCheckpoint(options.out, model, *corpus.tokenizer, provenance); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  };

  bool stop = false;
  int64_t last_eval_step = -1;
  double lr = options.lr;
  for (int64_t epoch = 1; !stop; ++epoch) {
    for (int64_t w = 0; w < batches.num_windows(); ++w) {
      const double progress = std::max(static_cast<double>(step) / total_steps,
                                       options.time_budget > 0 ? SecondsSince(start) / options.time_budget : 0.0);
      if (step >= total_steps || progress >= 1.0) {
        stop = true;
        break;
      }
      lr = LearningRate(options, step, progress);
      for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);

      auto [input, target] = batches.Window(w);
      auto logits = model->Forward(input.to(options.device));
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                        target.to(options.device).reshape({-1}));
      optimizer.zero_grad();
      loss.backward();
      if (options.clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), options.clip);
      optimizer.step();

      ++step;
      tokens += target.numel();
      const double loss_value = loss.item<double>();
      if (!std::isfinite(loss_value)) {
        bar.Finish();
        return absl::InternalError(absl::StrCat("training diverged: loss is ", loss_value,
                                                " at step ", step, " (try a lower --lr)"));
      }
      recent_loss = step == 1 ? loss_value : 0.95 * recent_loss + 0.05 * loss_value;
      if (options.progress) {
        const double elapsed = SecondsSince(start);
        const double done = std::max(static_cast<double>(step) / total_steps,
                                     options.time_budget > 0 ? elapsed / options.time_budget : 0.0);
        bar.Update(done, done > 0 ? elapsed * (1 - done) / done : -1,
                   absl::StrFormat("step %d  loss %.3f  %.0f tok/s  lr %.2e", step, recent_loss,
                                   tokens / std::max(elapsed, 1e-9), lr));
      }
      if (step % eval_every == 0) {
        if (auto s = evaluate(epoch, lr); !s.ok()) return s;
        last_eval_step = step;
      }
    }
    if (options.max_steps <= 0 && epoch >= options.epochs) stop = true;
    if (stop && last_eval_step != step) {
      if (auto s = evaluate(epoch, lr); !s.ok()) return s;
      last_eval_step = step;
    }
  }
  bar.Finish();

  result.steps = step;
  result.seconds = SecondsSince(start);
  result.tokens_per_second = tokens / std::max(result.seconds, 1e-9);
  {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (size_t i = 0; i < params.size() && i < best_params.size(); ++i) params[i].copy_(best_params[i]);
  }
  result.test_loss = Evaluate(model, corpus.test, options.batch_size, options.seq_len, options.device);
  return result;
}

}  // namespace recur
