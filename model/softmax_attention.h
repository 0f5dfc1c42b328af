#ifndef RECUR_MODEL_SOFTMAX_ATTENTION_H_
#define RECUR_MODEL_SOFTMAX_ATTENTION_H_

// Causal softmax attention, the baseline the paper compares against: y = softmax(QKᵀ/√d + mask) V.
// Shapes: q, k, v [B, H, N, d].

#include <torch/types.h>

namespace recur {

// A key/value cache with room for `capacity` positions per row; row b holds `length[b]` of them.
// It grows (doubling) as tokens are appended, so its bytes follow the longest row.
struct KeyValueCache {
  torch::Tensor k;  // [B, H, capacity, d]
  torch::Tensor v;  // [B, H, capacity, d]

  static KeyValueCache Empty(int64_t batch, int64_t heads, int64_t d, const torch::Device& device,
                             torch::ScalarType dtype = torch::kFloat32);
  int64_t capacity() const { return k.size(2); }
};

// The parallel (training) form with a causal mask.
torch::Tensor CausalSoftmaxAttention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v);

// Appends new keys and values at positions `positions[b] .. positions[b] + N - 1` of each row and
// attends from the new queries to every cached key at or before their own position. Covers prefill
// (N > 1) and decode steps (N = 1); rows may sit at different positions. positions: [B] int64.
torch::Tensor CachedSoftmaxAttention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& positions,
                                     KeyValueCache* cache);

}  // namespace recur

#endif  // RECUR_MODEL_SOFTMAX_ATTENTION_H_
