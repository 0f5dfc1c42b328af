// Where a training step's time goes: forward, and forward with backward, for a PTB-sized
// word-level model (vocabulary 10,000) and a byte-level one, linear and softmax attention; then
// the trainer's own step (Trainer::Step: the schedule, weight-decay groups, clipping, AdamW and
// the weights' moving average), and the 2-hour PTB recipe's step against LibTorch's thread count
// (OpenBLAS keeps its own threads). LibTorch runs the binaries' automatic thread count.
//   build/bench/train_step_bench
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/torch_runtime.h"
#include "model/transformer.h"
#include "train/corpus.h"
#include "train/trainer.h"

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
  s.optimizer = std::make_unique<torch::optim::AdamW>(s.model->parameters(),
                                                      torch::optim::AdamWOptions(1e-3));
  s.input = torch::randint(0, vocab, {16, 128}, torch::kInt64);
  s.target = torch::randint(0, vocab, {16, 128}, torch::kInt64);
  return s;
}

torch::Tensor Loss(Setup& s) {
  auto logits = s.model->Forward(s.input);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              s.target.reshape({-1}));
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
#define RECUR_STEP_ARGS          \
  Args({10000, 256, 4, 0})       \
      ->Args({10000, 256, 4, 1}) \
      ->Args({10000, 128, 2, 0}) \
      ->Args({257, 192, 2, 0})   \
      ->Unit(benchmark::kMillisecond)
BENCHMARK(BM_Forward)->RECUR_STEP_ARGS;
BENCHMARK(BM_ForwardBackward)->RECUR_STEP_ARGS;

// A corpus of `tokens` random ids over a vocabulary of `vocab` words (or bytes at 257).
Corpus RandomCorpus(int64_t vocab, int64_t tokens) {
  Corpus corpus;
  corpus.name = "random";
  if (vocab == 257) {
    corpus.tokenizer = std::make_shared<ByteTokenizer>();
    corpus.byte_level = true;
  } else {
    std::vector<std::string> words{"<eos>", "<unk>"};
    for (int64_t i = 2; i < vocab; ++i) words.push_back("w" + std::to_string(i));
    corpus.tokenizer = std::make_shared<WordTokenizer>(*WordTokenizer::FromWords(words));
  }
  corpus.train = torch::randint(0, vocab, {tokens}, torch::kInt64);
  corpus.valid = corpus.train.slice(0, 0, tokens / 10);
  corpus.test = corpus.valid;
  return corpus;
}

// The trainer's real step on `config` at batch × seq_len tokens, with the recipe's options.
void TimeTrainerSteps(benchmark::State& state, const ModelConfig& config, int64_t batch,
                      int64_t seq_len, double ema_decay) {
  const Corpus corpus = RandomCorpus(config.vocab_size, 64 * batch * seq_len);
  TrainOptions options;
  options.batch_size = batch;
  options.seq_len = seq_len;
  options.weight_decay = 0.1;
  options.ema_decay = ema_decay;
  options.max_steps = 1 << 30;
  options.evaluate = false;
  options.progress = false;
  auto trainer = Trainer::Create(config, corpus, options);
  if (!trainer.ok()) {
    state.SkipWithError(std::string(trainer.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    if (!(*trainer)->Step().ok()) state.SkipWithError("the step failed");
  }
  state.SetItemsProcessed(state.iterations() * batch * seq_len);
}

// Arguments as above: one step of Trainer::Step on 16 × 128 tokens (weight decay 0.1, no
// dropout, no averaging).
void BM_TrainerStep(benchmark::State& state) {
  ModelConfig config;
  config.vocab_size = state.range(0);
  config.d_model = state.range(1);
  config.num_layers = state.range(2);
  config.num_heads = 4;
  config.d_ff = 4 * state.range(1);
  config.attention = AttentionKind(state.range(3));
  config.dropout = 0.0;
  TimeTrainerSteps(state, config, 16, 128, /*ema_decay=*/0);
}
BENCHMARK(BM_TrainerStep)->RECUR_STEP_ARGS;

// The output layer alone: [2048, D] × [D, V] forward, the dominant product at V = 10,000.
void BM_OutputMatmul(benchmark::State& state) {
  auto h = torch::randn({2048, state.range(1)});
  auto w = torch::randn({state.range(0), state.range(1)});
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(h, w.t()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * 2048 * state.range(0) * state.range(1) * state.iterations() / 1e9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OutputMatmul)->Args({10000, 256})->Unit(benchmark::kMillisecond);

// One step of the 2-hour PTB recipe (docs/experiments.md: 4 × 256 tokens, dropout 0.3, a short
// convolution, a learned decay, averaged weights at 0.9995) through Trainer::Step, with
// LibTorch's intra-op pool at range(0) threads. With Debian's libopenblas0-pthread the matrix
// products run on OpenBLAS's own threads either way; the question is what LibTorch's OpenMP
// threads add beside them.
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
  const int saved = at::get_num_threads();
  at::set_num_threads(static_cast<int>(state.range(0)));
  TimeTrainerSteps(state, config, 4, 256, /*ema_decay=*/0.9995);
  at::set_num_threads(saved);
}
BENCHMARK(BM_RecipeStepByTorchThreads)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace recur

int main(int argc, char** argv) {
  // The binaries' default (--threads 0): with OpenBLAS's own pool, one LibTorch thread. The
  // recipe's row by thread count runs last, so no earlier row shares the cores with a spinning
  // OpenMP pool.
  if (!recur::SetTorchThreads(0).ok()) return 1;
  torch::manual_seed(0);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
