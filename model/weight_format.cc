#include "model/weight_format.h"

#include <torch/torch.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace recur {

absl::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kBFloat16:
      return "bf16";
    case WeightFormat::kBFloat16Output:
      return "bf16-output";
    case WeightFormat::kFloat32:
      break;
  }
  return "fp32";
}

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name) {
  if (name == "fp32") return WeightFormat::kFloat32;
  if (name == "bf16") return WeightFormat::kBFloat16;
  if (name == "bf16-output") return WeightFormat::kBFloat16Output;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight format '", name, "' (fp32, bf16 or bf16-output)"));
}

void SetWeightFormat(TransformerLM& model, WeightFormat format) {
  torch::NoGradGuard no_grad;
  auto convert = [](torch::nn::LinearImpl& linear, torch::ScalarType dtype) {
    linear.weight.set_data(linear.weight.data().to(dtype));
  };
  const torch::ScalarType layers =
      format == WeightFormat::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) convert(*linear, layers);
  }
  if (format == WeightFormat::kBFloat16Output && !model->lm_head.is_empty()) {
    convert(*model->lm_head, torch::kBFloat16);
  }
}

WeightFormat WeightFormatOf(const TransformerLM& model) {
  const torch::nn::Module* output = model->lm_head.is_empty() ? nullptr : model->lm_head.get();
  bool output_bf16 = false;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    const auto* linear = module->as<torch::nn::Linear>();
    if (linear == nullptr) continue;
    const bool bf16 = linear->weight.scalar_type() == torch::kBFloat16;
    if (module.get() == output) {
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
