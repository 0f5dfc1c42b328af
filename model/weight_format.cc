#include "model/weight_format.h"

#include <torch/torch.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace recur {

absl::string_view WeightFormatName(WeightFormat format) {
  return format == WeightFormat::kBFloat16 ? "bf16" : "fp32";
}

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name) {
  if (name == "fp32") return WeightFormat::kFloat32;
  if (name == "bf16") return WeightFormat::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown weight format '", name, "' (fp32 or bf16)"));
}

void SetWeightFormat(TransformerLM& model, WeightFormat format) {
  const torch::ScalarType dtype =
      format == WeightFormat::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  torch::NoGradGuard no_grad;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::Linear>()) {
      linear->weight.set_data(linear->weight.data().to(dtype));
    }
  }
}

WeightFormat WeightFormatOf(const TransformerLM& model) {
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (const auto* linear = module->as<torch::nn::Linear>()) {
      return linear->weight.scalar_type() == torch::kBFloat16 ? WeightFormat::kBFloat16
                                                              : WeightFormat::kFloat32;
    }
  }
  return WeightFormat::kFloat32;
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
