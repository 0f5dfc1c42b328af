#ifndef RECUR_MODEL_SHORT_CONVOLUTION_H_
#define RECUR_MODEL_SHORT_CONVOLUTION_H_

// A causal depthwise convolution over a few tokens (as in H3, Mamba and "Based"): each channel of
// the output at position t mixes that channel at positions t−K+1 … t with its own K weights.
// Beside linear attention it gives every query and key the exact recent past, which the running
// sums S and z blur, and it tells positions apart without a positional encoding.
//
// Its recurrent state is the last K−1 inputs of each row: constant size, like S and z.

#include <torch/types.h>

namespace recur {

// x: [B, N, C]; weight: [K, C], row K−1 multiplying the current position.
//   y_t = Σ_{j<K} weight_j ⊙ x_{t−K+1+j}
// Inputs before the first are taken from `tail` ([B, K−1, C]) when it is non-null and defined, and
// are zero otherwise; a non-null `tail` is left holding the last K−1 inputs (earlier ones if N is
// shorter), ready for the next call. Differentiable in x and weight.
torch::Tensor CausalShortConvolution(const torch::Tensor& x, const torch::Tensor& weight,
                                     torch::Tensor* tail = nullptr);

}  // namespace recur

#endif  // RECUR_MODEL_SHORT_CONVOLUTION_H_
