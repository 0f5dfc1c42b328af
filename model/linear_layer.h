#ifndef RECUR_MODEL_LINEAR_LAYER_H_
#define RECUR_MODEL_LINEAR_LAYER_H_

// The model's linear layer, y = x Wᵀ + b with W [out, in] and b [out] (or none), stored in the
// format a served model chose (model/weight_format.h):
//   float32  — torch::linear, exactly torch::nn::Linear (same parameter names, same initial draws);
//   bfloat16 — x is rounded to bfloat16 for the product, y comes back float32, b added in float32;
//   int8     — W quantised per output row (symmetric, scale = max|W_row| / 127) and prepacked for
//              LibTorch's dynamic quantised linear (oneDNN, else QNNPACK): x is quantised per call
//              to uint8 with its own range, the product accumulates in int32, y is float32.
// Training uses float32 only; bfloat16 and int8 are for serving and evaluation.

#include <ATen/core/ivalue.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "absl/status/status.h"

namespace recur {

class LinearLayerImpl : public torch::nn::Cloneable<LinearLayerImpl> {
 public:
  LinearLayerImpl(int64_t in_features, int64_t out_features, bool bias = true);

  // Registers W and b and draws them as torch::nn::Linear does (Kaiming-uniform), so a model's
  // random stream is the same as with LibTorch's layer.
  void reset() override;

  // x: [..., in] float32 → [..., out] float32.
  torch::Tensor forward(const torch::Tensor& x);

  // Replaces W by its int8 quantisation, prepacked (see above); W stays a parameter, now a
  // per-channel quantised tensor (so parameter counts hold). FAILED_PRECONDITION when this
  // LibTorch has no quantised engine, or W is not a float32 tensor on the CPU.
  absl::Status QuantizeInt8();
  bool is_int8() const { return !packed_int8_.isNone(); }

  int64_t in_features;
  int64_t out_features;
  bool has_bias;
  torch::Tensor weight;  // [out, in]: float32, bfloat16 or (after QuantizeInt8) qint8
  torch::Tensor bias;    // [out] float32; undefined without a bias

 private:
  c10::IValue packed_int8_;  // LinearPackedParamsBase after QuantizeInt8; None before
};
TORCH_MODULE(LinearLayer);

}  // namespace recur

#endif  // RECUR_MODEL_LINEAR_LAYER_H_
