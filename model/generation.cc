#include "model/generation.h"

#include <torch/torch.h>

namespace recur {

std::vector<int64_t> Generate(TransformerLM& model, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<bool(int64_t)>& on_token) {
  TORCH_CHECK(!prompt.empty(), "Generate needs a non-empty prompt");
  torch::NoGradGuard no_grad;
  const torch::Device device = model->embedding->weight.device();
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  ModelState state = model->NewState(1, device);
  auto prompt_tensor = torch::tensor(prompt, long_opts).view({1, -1}).to(device);
  auto logits = model->Prefill(prompt_tensor, &state);

  Sampler sampler(options.sampling);
  TokenSet history(model->config().vocab_size);
  for (int64_t token : prompt) history.Insert(token);
  std::vector<int64_t> generated;
  while (static_cast<int64_t>(generated.size()) < options.max_tokens) {
    auto row = logits[0].to(torch::kCPU, torch::kFloat32).contiguous();
    const int64_t token =
        sampler.Sample({row.data_ptr<float>(), static_cast<size_t>(row.numel())}, history);
    generated.push_back(token);
    history.Insert(token);
    if (on_token && !on_token(token)) break;
    if (options.stop_at_document_end != nullptr &&
        options.stop_at_document_end->EndsDocument(token)) {
      break;
    }
    if (static_cast<int64_t>(generated.size()) == options.max_tokens) break;
    logits = model->Step(torch::tensor({token}, long_opts).to(device), &state);
  }
  return generated;
}

}  // namespace recur
