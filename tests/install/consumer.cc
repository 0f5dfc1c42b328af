// Builds a model through the installed headers and library and runs one recurrent step.
#include <torch/torch.h>

#include <cstdio>

#include "model/config.h"
#include "model/transformer.h"

int main() {
  recur::ModelConfig config;
  config.vocab_size = 11;
  config.d_model = 16;
  config.num_layers = 1;
  config.num_heads = 2;
  config.d_ff = 32;
  if (!config.Validate().ok()) return 1;
  recur::TransformerLM model(config);
  torch::NoGradGuard no_grad;
  recur::ModelState state = model->NewState(1, torch::kCPU);
  const torch::Tensor logits = model->Step(torch::tensor({3}, torch::kInt64), &state);
  std::printf("logits %lld x %lld\n", static_cast<long long>(logits.size(0)),
              static_cast<long long>(logits.size(1)));
  return logits.size(1) == 11 ? 0 : 1;
}
