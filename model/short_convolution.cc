#include "model/short_convolution.h"

#include <torch/torch.h>

namespace recur {

torch::Tensor CausalShortConvolution(const torch::Tensor& x, const torch::Tensor& weight,
                                     torch::Tensor* tail) {
  TORCH_CHECK(x.dim() == 3, "CausalShortConvolution expects x [B, N, C], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(2),
              "CausalShortConvolution expects weight [K, ", x.size(2), "], got ", weight.sizes());
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2), k = weight.size(0);
  torch::Tensor past =
      tail != nullptr && tail->defined() ? *tail : torch::zeros({b, k - 1, c}, x.options());
  TORCH_CHECK(past.size(0) == b && past.size(1) == k - 1 && past.size(2) == c,
              "CausalShortConvolution: tail ", past.sizes(), " does not fit x ", x.sizes(),
              " and kernel ", k);
  auto padded = torch::cat({past.to(x.dtype()), x}, 1);  // [B, K−1+N, C]
  // K is a handful of taps: a sum of shifted products beats a conv1d's transposes here, and the
  // same code serves a single decode step.
  auto y = padded.narrow(1, k - 1, n) * weight[k - 1];
  for (int64_t j = 0; j < k - 1; ++j) y = y + padded.narrow(1, j, n) * weight[j];
  if (tail != nullptr) *tail = padded.narrow(1, n, k - 1).contiguous();
  return y;
}

}  // namespace recur
