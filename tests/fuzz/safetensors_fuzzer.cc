// The safetensors parser (model/safetensors.h) on arbitrary bytes: an error or a file whose
// tensors all lie inside the input, never a crash, a hang or an allocation beyond the input.

#include <torch/torch.h>

#include "model/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string bytes = recur::fuzz::SafetensorsBytes(input);
  auto file = recur::ParseSafetensors(bytes, "fuzz");
  if (!file.ok()) return 0;
  int64_t total = 0;
  for (const auto& [name, tensor] : file->tensors) {
    total += tensor.numel() * static_cast<int64_t>(tensor.element_size());
  }
  recur::fuzz::Require(total <= static_cast<int64_t>(bytes.size()));
  // What parsed encodes and parses again to the same tensors.
  recur::NamedTensors tensors(file->tensors.begin(), file->tensors.end());
  auto again = recur::EncodeSafetensors(tensors, file->metadata);
  if (again.ok()) recur::fuzz::Require(recur::ParseSafetensors(*again, "again").ok());
  return 0;
}
