#ifndef RECUR_MODEL_POSITIONAL_ENCODING_H_
#define RECUR_MODEL_POSITIONAL_ENCODING_H_

#include <torch/types.h>

namespace recur {

// The sinusoidal encoding of Vaswani et al. at arbitrary positions (no table, so no length cap):
// PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(p / 10000^(2i/D)).
// positions: int64 of any shape; returns float32 of that shape + [d_model]. Angles are formed in
// float64 so that positions in the millions keep their precision.
torch::Tensor SinusoidalEncoding(const torch::Tensor& positions, int64_t d_model);

}  // namespace recur

#endif  // RECUR_MODEL_POSITIONAL_ENCODING_H_
