#include "train/batcher.h"

#include <torch/torch.h>

namespace recur {

StreamBatcher::StreamBatcher(const torch::Tensor& stream, int64_t batch_size, int64_t seq_len)
    : seq_len_(seq_len) {
  TORCH_CHECK(batch_size > 0 && seq_len > 0, "batch_size and seq_len must be positive");
  const int64_t columns = stream.numel() / batch_size;
  TORCH_CHECK(columns >= 2, "a stream of ", stream.numel(), " tokens is too short for ", batch_size,
              " rows");
  rows_ = stream.slice(0, 0, columns * batch_size).view({batch_size, columns});
  num_windows_ = (columns - 1 + seq_len - 1) / seq_len;
}

std::pair<torch::Tensor, torch::Tensor> StreamBatcher::Window(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < num_windows_, "window ", index, " out of range");
  const int64_t start = index * seq_len_;
  const int64_t length = std::min(seq_len_, rows_.size(1) - 1 - start);
  return {rows_.slice(1, start, start + length), rows_.slice(1, start + 1, start + 1 + length)};
}

}  // namespace recur
