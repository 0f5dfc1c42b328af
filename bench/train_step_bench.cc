// Where a training step's time goes: forward, backward and the AdamW update, for a PTB-sized
// word-level model (vocabulary 10,000) and a byte-level one, linear and softmax attention; and the
// 2-hour PTB recipe's step against LibTorch's thread count (OpenBLAS keeps its own threads).
//   build/bench/train_step_bench
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "model/transformer.h"

namespace recur {
namespace {

struct Setup {
  TransformerLM model{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  torch::Tensor input, target;
};

Setup Make(int64_t vocab, int64_t d_model, int64_t layers, AttentionKind kind) {
  ModelConfig config;
  config.vocab_size = vocab;
  config.d_model = d_model;
  config.num_layers = layers;
  config.num_heads = 4;
  config.d_ff = 4 * d_model;
  config.attention = kind;
  Setup s;
  s.model = TransformerLM(config);
  s.optimizer = std::make_unique<torch::optim::AdamW>(s.model->parameters(), torch::optim::AdamWOptions(1e-3));
  s.input = torch::randint(0, vocab, {16, 128}, torch::kInt64);
  s.target = torch::randint(0, vocab, {16, 128}, torch::kInt64);
  return s;
}

torch::Tensor Loss(Setup& s) {
  auto logits = s.model->Forward(s.input);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), s.target.reshape({-1}));
}

// Arguments: vocabulary, width, layers, attention kind (0 linear, 1 softmax).
void BM_Forward(benchmark::State& state) {
  auto s = Make(state.range(0), state.range(1), state.range(2), AttentionKind(state.range(3)));
  for (auto _ : state) benchmark::DoNotOptimize(Loss(s));
  state.SetItemsProcessed(state.iterations() * s.input.numel());
}
void BM_ForwardBackward(benchmark::State& state) {
  auto s = Make(state.range(0), state.range(1), state.range(2), AttentionKind(state.range(3)));
  for (auto _ : state) {
    s.optimizer->zero_grad();
    Loss(s).backward();
  }
  state.SetItemsProcessed(state.iterations() * s.input.numel());
}
void BM_FullStep(benchmark::State& state) {
  auto s = Make(state.range(0), state.range(1), state.range(2), AttentionKind(state.range(3)));
  for (auto _ : state) {
    s.optimizer->zero_grad();
    Loss(s).backward();
    torch::nn::utils::clip_grad_norm_(s.model->parameters(), 1.0);
    s.optimizer->step();
  }
  state.SetItemsProcessed(state.iterations() * s.input.numel());
}
#define RECUR_STEP_ARGS                                                      \
  Args({10000, 256, 4, 0})->Args({10000, 256, 4, 1})->Args({10000, 128, 2, 0}) \
      ->Args({257, 192, 2, 0})->Unit(benchmark::kMillisecond)
BENCHMARK(BM_Forward)->RECUR_STEP_ARGS;
BENCHMARK(BM_ForwardBackward)->RECUR_STEP_ARGS;
BENCHMARK(BM_FullStep)->RECUR_STEP_ARGS;

// One full step of the 2-hour PTB recipe (docs/experiments.md: 4 × 256 tokens, dropout 0.3, a
// short convolution, a learned decay) with LibTorch's intra-op pool at range(0) threads. With
// Debian's libopenblas0-pthread the matrix products run on OpenBLAS's own threads either way; the
// question is what LibTorch's OpenMP threads add beside them.
void BM_RecipeStepByTorchThreads(benchmark::State& state) {
  ModelConfig config;
  config.vocab_size = 10000;
  config.d_model = 256;
  config.num_layers = 4;
  config.num_heads = 4;
  config.d_ff = 1024;
  config.dropout = 0.3;
  config.short_conv = 4;
  config.positional_encoding = PositionalEncoding::kNone;
  config.state_decay = StateDecay::kLearned;
  TransformerLM model(config);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-3));
  const auto input = torch::randint(0, config.vocab_size, {4, 256}, torch::kInt64);
  const auto target = torch::randint(0, config.vocab_size, {4, 256}, torch::kInt64);
  const int saved = at::get_num_threads();
  at::set_num_threads(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    optimizer.zero_grad();
    auto logits = model->Forward(input);
    torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1})).backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    optimizer.step();
  }
  at::set_num_threads(saved);
  state.SetItemsProcessed(state.iterations() * input.numel());
}
BENCHMARK(BM_RecipeStepByTorchThreads)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// The output layer alone: [2048, D] × [D, V] forward, the dominant product at V = 10,000.
void BM_OutputMatmul(benchmark::State& state) {
  auto h = torch::randn({2048, state.range(1)});
  auto w = torch::randn({state.range(0), state.range(1)});
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(h, w.t()));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 2048 * state.range(0) * state.range(1) * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OutputMatmul)->Args({10000, 256})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace recur

int main(int argc, char** argv) {
  at::set_num_threads(2);
  torch::manual_seed(0);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
