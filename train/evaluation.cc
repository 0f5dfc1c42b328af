#include "train/evaluation.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace recur {

Evaluation Score(TransformerLM& model, const torch::Tensor& stream,
                 const EvaluationOptions& options) {
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
  const int64_t width = stream.numel() / rows;  // tokens per row; width - 1 targets
  const auto matrix = stream.slice(0, 0, rows * width).view({rows, width});
  const int64_t seq_len = options.seq_len;
  const int64_t stride =
      options.carry_context || options.stride <= 0 ? seq_len : std::min(options.stride, seq_len);
  ModelState state;
  if (options.carry_context) state = model->NewState(rows, options.device);
  for (int64_t k = 0;; ++k) {
    const int64_t start = k * stride;
    const int64_t scored_from = k == 0 ? 0 : seq_len - stride;  // window columns already scored
    if (start + scored_from >= width - 1) break;
    const int64_t length = std::min(seq_len, width - 1 - start);
    auto input = matrix.slice(1, start, start + length).to(options.device);
    auto target = matrix.slice(1, start + 1 + scored_from, start + 1 + length).to(options.device);
    auto logits = options.carry_context ? model->Continue(input, &state) : model->Forward(input);
    logits = logits.slice(1, scored_from, length);
    const int64_t columns = length - scored_from;
    // Nats per target summed over the rows: [columns], one entry per context length.
    auto losses = torch::nn::functional::cross_entropy(
                      logits.reshape({-1, logits.size(-1)}), target.reshape({-1}),
                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                      .view({rows, columns})
                      .to(torch::kFloat64)
                      .sum(0)
                      .cpu();
    // The context of the first scored target: its column in the window, or in the row.
    const int64_t first = scored_from + (options.carry_context ? start : 0);
    for (auto& bucket : result.buckets) {
      const int64_t begin = std::clamp<int64_t>(bucket.begin - first, 0, columns);
      const int64_t end =
          bucket.end < 0 ? columns : std::clamp<int64_t>(bucket.end - first, 0, columns);
      if (begin >= end) continue;
      bucket.loss_sum += losses.slice(0, begin, end).sum().item<double>();
      bucket.tokens += (end - begin) * rows;
    }
    result.loss_sum += losses.sum().item<double>();
    result.tokens += rows * columns;
  }
  model->train(was_training);
  return result;
}

double LossFigure(double nats_per_token, bool byte_level) {
  return byte_level ? nats_per_token / std::log(2.0) : std::exp(nats_per_token);
}

const char* LossFigureName(bool byte_level) { return byte_level ? "bpc" : "ppl"; }

std::string DescribeLoss(double nats, bool byte_level) {
  const double figure = LossFigure(nats, byte_level);
  return byte_level ? absl::StrFormat("bpc %.3f", figure) : absl::StrFormat("ppl %.1f", figure);
}

}  // namespace recur
