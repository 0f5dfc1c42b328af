#include "model/weight_format.h"

#include <torch/torch.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "model/linear_layer.h"

namespace recur {

absl::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kBFloat16:
      return "bf16";
    case WeightFormat::kBFloat16Output:
      return "bf16-output";
    case WeightFormat::kInt8:
      return "int8";
    case WeightFormat::kFloat32:
      break;
  }
  return "fp32";
}

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name,
                                               const torch::Device& device) {
  for (WeightFormat format : {WeightFormat::kFloat32, WeightFormat::kBFloat16,
                              WeightFormat::kBFloat16Output, WeightFormat::kInt8}) {
    if (name == WeightFormatName(format)) return format;
  }
  if (name == "auto") return ChooseWeightFormat(device);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight format '", name, "' (auto, fp32, bf16, bf16-output or int8)"));
}

WeightFormat ChooseWeightFormat(const torch::Device& device) {
  return device.is_cpu() && CpuHasNativeBFloat16() ? WeightFormat::kBFloat16Output
                                                   : WeightFormat::kFloat32;
}

namespace {

// The untied output layer; null when the embedding is tied.
const LinearLayerImpl* OutputLayer(const TransformerLM& model) {
  return model->lm_head.is_empty() ? nullptr : model->lm_head.get();
}

// Every linear layer of the model, the output layer among them when untied.
std::vector<LinearLayerImpl*> LinearLayers(const TransformerLM& model) {
  std::vector<LinearLayerImpl*> layers;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<LinearLayer>()) layers.push_back(linear);
  }
  return layers;
}

}  // namespace

absl::Status SetWeightFormat(TransformerLM& model, WeightFormat format) {
  const WeightFormat current = WeightFormatOf(model);
  if (current == format) return absl::OkStatus();
  if (current == WeightFormat::kInt8) {
    return absl::FailedPreconditionError("a model in int8 cannot change its weight format");
  }
  torch::NoGradGuard no_grad;
  const LinearLayerImpl* output = OutputLayer(model);
  for (LinearLayerImpl* layer : LinearLayers(model)) {
    if (format == WeightFormat::kInt8) {
      RECUR_RETURN_IF_ERROR(layer->QuantizeInt8());
      continue;
    }
    const bool bf16 = format == WeightFormat::kBFloat16 ||
                      (format == WeightFormat::kBFloat16Output && layer == output);
    layer->weight.set_data(layer->weight.data().to(bf16 ? torch::kBFloat16 : torch::kFloat32));
  }
  return absl::OkStatus();
}

WeightFormat WeightFormatOf(const TransformerLM& model) {
  const LinearLayerImpl* output = OutputLayer(model);
  bool output_bf16 = false;
  for (const LinearLayerImpl* layer : LinearLayers(model)) {
    if (layer->is_int8()) return WeightFormat::kInt8;
    const bool bf16 = layer->weight.scalar_type() == torch::kBFloat16;
    if (layer == output) {
      output_bf16 = bf16;
    } else if (bf16) {
      return WeightFormat::kBFloat16;
    }
  }
  return output_bf16 ? WeightFormat::kBFloat16Output : WeightFormat::kFloat32;
}

bool CpuHasNativeBFloat16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    return line.find(" avx512_bf16") != std::string::npos ||
           line.find(" amx_bf16") != std::string::npos;
  }
  return false;
}

}  // namespace recur
