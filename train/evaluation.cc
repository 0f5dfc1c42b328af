#include "train/evaluation.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "absl/strings/str_format.h"
#include "train/batcher.h"

namespace recur {

Evaluation Score(TransformerLM& model, const torch::Tensor& stream, const EvaluationOptions& options) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();

  Evaluation result;
  const auto& starts = options.bucket_starts;
  TORCH_CHECK(!starts.empty() && starts[0] == 0 && std::is_sorted(starts.begin(), starts.end()),
              "bucket starts must ascend from 0");
  for (size_t i = 0; i < starts.size(); ++i) {
    result.buckets.push_back({starts[i], i + 1 < starts.size() ? starts[i + 1] : -1, 0, 0.0});
  }

  // Rows must be long enough to hold at least one target.
  const int64_t rows = std::max<int64_t>(1, std::min(options.rows, stream.numel() / 2));
  StreamBatcher batches(stream, rows, options.seq_len);
  ModelState state;
  if (options.carry_context) state = model->NewState(rows, options.device);
  for (int64_t i = 0; i < batches.num_windows(); ++i) {
    auto [input, target] = batches.Window(i);
    input = input.to(options.device);
    auto logits = options.carry_context ? model->Continue(input, &state) : model->Forward(input);
    // [B, L] nats per token, summed over the rows: [L], one entry per context length.
    auto losses = torch::nn::functional::cross_entropy(
                      logits.reshape({-1, logits.size(-1)}), target.to(options.device).reshape({-1}),
                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                      .view({target.size(0), target.size(1)})
                      .to(torch::kFloat64)
                      .sum(0)
                      .cpu();
    const int64_t first = options.carry_context ? i * options.seq_len : 0;  // context of column 0
    const int64_t width = target.size(1);
    for (auto& bucket : result.buckets) {
      const int64_t begin = std::clamp<int64_t>(bucket.begin - first, 0, width);
      const int64_t end = bucket.end < 0 ? width : std::clamp<int64_t>(bucket.end - first, 0, width);
      if (begin >= end) continue;
      bucket.loss_sum += losses.slice(0, begin, end).sum().item<double>();
      bucket.tokens += (end - begin) * rows;
    }
    result.loss_sum += losses.sum().item<double>();
    result.tokens += target.numel();
  }
  model->train(was_training);
  return result;
}

double Evaluate(TransformerLM& model, const torch::Tensor& stream, int64_t batch_size,
                int64_t seq_len, const torch::Device& device) {
  EvaluationOptions options;
  options.rows = batch_size;
  options.seq_len = seq_len;
  options.device = device;
  return Score(model, stream, options).mean_loss();
}

std::string DescribeLoss(double nats, bool byte_level) {
  return byte_level ? absl::StrFormat("bpc %.3f", nats / std::log(2.0))
                    : absl::StrFormat("ppl %.1f", std::exp(nats));
}

}  // namespace recur
