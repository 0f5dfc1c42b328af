#ifndef RECUR_TRAIN_BATCHER_H_
#define RECUR_TRAIN_BATCHER_H_

#include <torch/types.h>

#include <utility>

namespace recur {

// Contiguous-stream batching with truncated windows, as in PyTorch's word_language_model: the
// stream is cut into `batch_size` equal rows, and window i holds columns [i·L, i·L + L) of every
// row as input and the same shifted by one as target. The last window may be shorter.
class StreamBatcher {
 public:
  StreamBatcher(const torch::Tensor& stream, int64_t batch_size, int64_t seq_len);

  int64_t num_windows() const { return num_windows_; }
  int64_t tokens_per_window() const { return rows_.size(0) * seq_len_; }
  // {input [B, L'], target [B, L']}, L' ≤ L.
  std::pair<torch::Tensor, torch::Tensor> Window(int64_t index) const;

 private:
  torch::Tensor rows_;  // [B, T/B]
  int64_t seq_len_;
  int64_t num_windows_;
};

}  // namespace recur

#endif  // RECUR_TRAIN_BATCHER_H_
