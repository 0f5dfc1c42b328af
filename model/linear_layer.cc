#include "model/linear_layer.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace recur {

namespace {

// Selects a quantised engine for the int8 kernels: oneDNN (fast on x86) where this LibTorch has
// it, else QNNPACK. Debian's LibTorch has no FBGEMM.
bool SelectQuantizedEngine() {
  const auto& engines = at::globalContext().supportedQEngines();
  for (at::QEngine wanted : {at::QEngine::ONEDNN, at::QEngine::QNNPACK}) {
    for (at::QEngine engine : engines) {
      if (engine != wanted) continue;
      if (at::globalContext().qEngine() != engine) at::globalContext().setQEngine(engine);
      return true;
    }
  }
  return false;
}

// Calls a quantized:: operator through the dispatcher (LibTorch's C++ API does not wrap them).
c10::IValue CallQuantizedOp(const char* name, std::vector<c10::IValue> stack) {
  const auto op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
  op.callBoxed(&stack);
  return std::move(stack.front());
}

}  // namespace

LinearLayerImpl::LinearLayerImpl(int64_t in, int64_t out, bool bias)
    : in_features(in), out_features(out), has_bias(bias) {
  reset();
}

void LinearLayerImpl::reset() {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  bias = has_bias ? register_parameter("bias", torch::empty({out_features}))
                  : register_parameter("bias", {}, /*requires_grad=*/false);
  packed_int8_ = c10::IValue();
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor LinearLayerImpl::forward(const torch::Tensor& x) {
  if (is_int8()) {
    // The kernel wants [rows, in]; the bias is inside the packed weights.
    auto rows = x.reshape({-1, in_features}).contiguous();
    auto y = CallQuantizedOp("quantized::linear_dynamic", {rows, packed_int8_, false}).toTensor();
    auto shape = x.sizes().vec();
    shape.back() = out_features;
    return y.view(shape);
  }
  if (weight.scalar_type() == x.scalar_type()) return torch::linear(x, weight, bias);
  torch::Tensor y = torch::linear(x.to(weight.scalar_type()), weight).to(x.scalar_type());
  return bias.defined() ? y + bias : y;
}

absl::Status LinearLayerImpl::QuantizeInt8() {
  if (is_int8()) return absl::OkStatus();
  if (weight.scalar_type() != torch::kFloat32 || !weight.device().is_cpu()) {
    return absl::FailedPreconditionError("int8 weights need a float32 model on the CPU");
  }
  if (!SelectQuantizedEngine()) {
    return absl::FailedPreconditionError(
        "this LibTorch has no quantised engine (oneDNN or QNNPACK) for int8 weights");
  }
  torch::NoGradGuard no_grad;
  // Symmetric per-row scales; a row of zeros keeps scale 1 (any scale represents it exactly).
  auto amax = weight.abs().amax(1);
  auto scales = torch::where(amax > 0, amax / 127.0, torch::ones_like(amax)).to(torch::kDouble);
  auto zero_points = torch::zeros({out_features}, torch::kLong);
  auto quantized = at::quantize_per_channel(weight, scales, zero_points, 0, torch::kQInt8);
  c10::IValue bias_value = bias.defined() ? c10::IValue(bias) : c10::IValue();
  packed_int8_ = CallQuantizedOp("quantized::linear_prepack", {quantized, bias_value});
  // W stays registered as "weight", now the quantised tensor the packed weights were made from.
  weight = quantized;
  parameters_["weight"] = quantized;
  return absl::OkStatus();
}

}  // namespace recur
