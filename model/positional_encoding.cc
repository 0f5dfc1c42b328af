#include "model/positional_encoding.h"

#include <torch/torch.h>

#include <cmath>

namespace recur {

torch::Tensor SinusoidalEncoding(const torch::Tensor& positions, int64_t d_model) {
  auto options = torch::TensorOptions().dtype(torch::kFloat64).device(positions.device());
  auto i = torch::arange(0, d_model, 2, options);
  auto inv_freq = torch::exp(i * (-std::log(10000.0) / static_cast<double>(d_model)));
  auto angles = positions.to(torch::kFloat64).unsqueeze(-1) * inv_freq;  // [..., D/2]
  // Interleave sin and cos: [..., D/2, 2] → [..., D].
  auto pe = torch::stack({torch::sin(angles), torch::cos(angles)}, -1).flatten(-2);
  return pe.to(torch::kFloat32);
}

}  // namespace recur
