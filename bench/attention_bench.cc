// Attention-form benchmarks: the cost of each form of causal linear attention against softmax
// attention as the sequence grows, and the per-token decode cost against the context position.
//   build/bench/attention_bench --benchmark_filter=Forward
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "model/linear_attention.h"
#include "model/softmax_attention.h"
#include "model/transformer.h"

namespace recur {
namespace {

constexpr int64_t kBatch = 1, kHeads = 4, kDim = 64;

torch::Tensor Random(int64_t n) { return torch::randn({kBatch, kHeads, n, kDim}); }

// Training-style forward over N tokens.
void BM_LinearChunkwiseForward(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  auto q = Random(state.range(0)), k = Random(state.range(0)), v = Random(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(LinearAttentionChunkwise(q, k, v, 64, 1e-6));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
// The same with a multi-scale decaying state (--state_decay multiscale).
void BM_LinearDecayedChunkwiseForward(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  auto q = Random(state.range(0)), k = Random(state.range(0)), v = Random(state.range(0));
  auto decay = MultiScaleDecay(kHeads, torch::kCPU);
  for (auto _ : state) {
    benchmark::DoNotOptimize(LinearAttentionChunkwise(q, k, v, 64, 1e-6, nullptr, decay));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
void BM_LinearNaiveForward(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  auto q = Random(state.range(0)), k = Random(state.range(0)), v = Random(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(LinearAttentionNaive(q, k, v, 1e-6));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
void BM_SoftmaxForward(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  auto q = Random(state.range(0)), k = Random(state.range(0)), v = Random(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(CausalSoftmaxAttention(q, k, v));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_LinearChunkwiseForward)
    ->RangeMultiplier(4)
    ->Range(256, 16384)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LinearDecayedChunkwiseForward)
    ->RangeMultiplier(4)
    ->Range(256, 16384)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LinearNaiveForward)
    ->RangeMultiplier(4)
    ->Range(256, 4096)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SoftmaxForward)->RangeMultiplier(4)->Range(256, 4096)->Unit(benchmark::kMillisecond);

// One decode step of a whole model after `range(0)` tokens of context.
void DecodeAt(benchmark::State& state, AttentionKind kind) {
  torch::NoGradGuard no_grad;
  ModelConfig config;
  config.attention = kind;
  config.d_model = 256;
  config.num_layers = 4;
  config.num_heads = 4;
  TransformerLM model(config);
  model->eval();
  const int64_t context = state.range(0);
  auto model_state = model->NewState(1, torch::kCPU);
  model->Prefill(torch::randint(0, config.vocab_size, {1, context - 1}, torch::kInt64),
                 &model_state);
  auto token = torch::tensor({42}, torch::kInt64);
  // One untimed step first: a key/value cache grows (doubling) here, not inside the timed steps.
  model->Step(token, &model_state);
  for (auto _ : state) {
    // Decode from the same context each time: a copy of the state keeps the position fixed.
    state.PauseTiming();
    auto s = model_state.Clone();
    state.ResumeTiming();
    benchmark::DoNotOptimize(model->Step(token, &s));
  }
  state.counters["state_bytes"] = static_cast<double>(model_state.Bytes());
}
void BM_DecodeStepLinear(benchmark::State& state) { DecodeAt(state, AttentionKind::kLinear); }
void BM_DecodeStepSoftmax(benchmark::State& state) { DecodeAt(state, AttentionKind::kSoftmax); }
BENCHMARK(BM_DecodeStepLinear)->RangeMultiplier(4)->Range(128, 8192)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeStepSoftmax)
    ->RangeMultiplier(4)
    ->Range(128, 8192)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace recur

int main(int argc, char** argv) {
  at::set_num_threads(2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
