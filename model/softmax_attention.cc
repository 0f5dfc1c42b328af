#include "model/softmax_attention.h"

#include <torch/torch.h>

#include <cmath>

namespace recur {

using torch::indexing::Slice;

KeyValueCache KeyValueCache::Empty(int64_t batch, int64_t heads, int64_t d,
                                   const torch::Device& device, torch::ScalarType dtype) {
  auto options = torch::TensorOptions().dtype(dtype).device(device);
  return {torch::zeros({batch, heads, 0, d}, options), torch::zeros({batch, heads, 0, d}, options)};
}

torch::Tensor CausalSoftmaxAttention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v) {
  const int64_t n = q.size(-2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = torch::matmul(q, k.transpose(-1, -2)) * scale;
  auto causal = torch::ones({n, n}, q.options().dtype(torch::kBool)).tril();
  scores = scores.masked_fill(causal.logical_not(), -std::numeric_limits<float>::infinity());
  return torch::matmul(torch::softmax(scores, -1), v);
}

torch::Tensor CachedSoftmaxAttention(const torch::Tensor& q, const torch::Tensor& k,
                                     const torch::Tensor& v, const torch::Tensor& positions,
                                     KeyValueCache* cache) {
  TORCH_CHECK(cache != nullptr, "CachedSoftmaxAttention needs a cache");
  const int64_t b = q.size(0), n = q.size(2);
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(q.device());
  auto pos = positions.to(long_opts);
  auto new_pos = pos.unsqueeze(1) + torch::arange(n, long_opts).unsqueeze(0);  // [B, N]
  const int64_t needed = new_pos.max().item<int64_t>() + 1;

  if (needed > cache->capacity()) {
    const int64_t capacity = std::max(needed, 2 * cache->capacity());
    const int64_t extra = capacity - cache->capacity();
    auto grow = [extra](const torch::Tensor& t) {
      auto zeros = torch::zeros({t.size(0), t.size(1), extra, t.size(3)}, t.options());
      return torch::cat({t, zeros}, 2);
    };
    cache->k = grow(cache->k);
    cache->v = grow(cache->v);
  }
  // Scatter row b's N new entries to positions new_pos[b]. With the advanced indices split by a
  // slice, the indexed dims come first: the values are laid out [B, N, H, d].
  auto rows = torch::arange(b, long_opts).unsqueeze(1);
  cache->k.index_put_({rows, Slice(), new_pos, Slice()}, k.transpose(1, 2).to(cache->k.dtype()));
  cache->v.index_put_({rows, Slice(), new_pos, Slice()}, v.transpose(1, 2).to(cache->v.dtype()));

  // Attend only to filled positions at or before each query's own.
  const int64_t t = needed;
  auto keys = cache->k.index({Slice(), Slice(), Slice(0, t)});
  auto values = cache->v.index({Slice(), Slice(), Slice(0, t)});
  auto key_pos = torch::arange(t, long_opts).view({1, 1, t});
  auto visible = (key_pos <= new_pos.unsqueeze(-1)).unsqueeze(1);  // [B, 1, N, T]
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto scores = torch::matmul(q, keys.transpose(-1, -2).to(q.dtype())) * scale;
  scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<float>::infinity());
  return torch::matmul(torch::softmax(scores, -1), values.to(q.dtype()));
}

}  // namespace recur
