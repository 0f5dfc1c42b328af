// Serving benchmarks (results in docs/performance.md):
//   decode   the engine's time per generated token against the context position, linear vs softmax
//   prefill  a 2,048-token prompt through the chunkwise Prefill against stepping it token by token
//   load     aggregate tokens/s, time to first token and inter-token p50/p99 through gRPC at 1, 8
//            and 64 concurrent streams (the `recur bench` load generator against an in-process
//            server)
// Usage: build/bench/server_bench [--part decode|prefill|load|all] [--threads 2]

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/notification.h"
#include "client/load_generator.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"
#include "server/engine.h"
#include "server/server.h"

ABSL_FLAG(std::string, part, "all", "decode, prefill, load or all");
ABSL_FLAG(int32_t, threads, 2, "LibTorch threads");
ABSL_FLAG(int64_t, max_context, 32768, "decode: the longest context measured");

namespace recur {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A random byte-level model: the size of a small real one (4 layers, D = 256, 4 heads).
Checkpoint RandomCheckpoint(AttentionKind kind) {
  ModelConfig config;
  config.vocab_size = 257;
  config.d_model = 256;
  config.num_layers = 4;
  config.num_heads = 4;
  config.d_ff = 1024;
  config.attention = kind;
  torch::manual_seed(3);
  Checkpoint checkpoint;
  checkpoint.config = config;
  checkpoint.tokenizer = std::make_shared<ByteTokenizer>();
  checkpoint.model = TransformerLM(config);
  {
    // Keep <eos> unlikely so every request generates its full length.
    torch::NoGradGuard no_grad;
    checkpoint.model->embedding->weight[256].fill_(0);
  }
  return checkpoint;
}

std::string RandomText(int64_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::string text;
  for (int64_t i = 0; i < n; ++i) text += static_cast<char>('a' + gen() % 26);
  return text;
}

// Collects one request's token times.
class TimingSink : public GenerationSink {
 public:
  void OnText(std::string, std::vector<int64_t> ids) override {
    for (size_t i = 0; i < ids.size(); ++i) times.push_back(Clock::now());
  }
  void OnFinish(FinishReason, const GenerationUsage&, const absl::Status&) override {
    done.Notify();
  }
  std::vector<Clock::time_point> times;
  absl::Notification done;
};

std::shared_ptr<TimingSink> Run(Engine& engine, GenerationRequest request) {
  auto sink = std::make_shared<TimingSink>();
  auto ticket = engine.Submit(std::move(request), sink);
  if (!ticket.ok()) {
    std::fprintf(stderr, "server_bench: %s\n", ticket.status().ToString().c_str());
    std::exit(1);
  }
  sink->done.WaitForNotification();
  return sink;
}

void DecodeAgainstContext() {
  const int64_t max_context = absl::GetFlag(FLAGS_max_context);
  std::printf("\n## Engine decode time per token against the context position\n\n");
  std::printf(
      "| context | linear ms/token | linear state | softmax ms/token | softmax K/V cache | softmax "
      "/ linear |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  std::vector<int64_t> positions;
  for (int64_t n = 128; n <= max_context; n *= 4) positions.push_back(n);
  std::vector<std::array<double, 2>> ms(positions.size());
  std::vector<std::array<int64_t, 2>> bytes(positions.size());
  for (int kind = 0; kind < 2; ++kind) {
    EngineOptions options;
    options.max_prompt_tokens = max_context;
    options.prefill_chunk = 1024;
    Engine engine(RandomCheckpoint(kind == 0 ? AttentionKind::kLinear : AttentionKind::kSoftmax),
                  options);
    auto session = engine.CreateSession(/*tenant=*/"");
    int64_t context = 0;
    for (size_t p = 0; p < positions.size(); ++p) {
      // Bring the session to the position, then time 32 greedy tokens.
      GenerationRequest fill;
      fill.session_id = session->id;
      fill.prompt = RandomText(positions[p] - context, p);
      fill.max_tokens = 1;
      fill.sampling.temperature = 0;
      Run(engine, fill);
      GenerationRequest decode;
      decode.session_id = session->id;
      decode.max_tokens = 33;
      decode.sampling.temperature = 0;
      auto sink = Run(engine, decode);
      ms[p][kind] =
          1e3 * Seconds(sink->times.back() - sink->times.front()) / (sink->times.size() - 1);
      context = positions[p] + 1 + static_cast<int64_t>(sink->times.size());
      bytes[p][kind] = engine.GetSession(session->id, "")->state_bytes;
      std::fprintf(stderr, "decode %s at %lld: %.2f ms\n", kind == 0 ? "linear" : "softmax",
                   static_cast<long long>(positions[p]), ms[p][kind]);
    }
  }
  for (size_t p = 0; p < positions.size(); ++p) {
    std::printf("| %lld | %.2f | %.0f kB | %.2f | %.1f MB | %.1fx |\n",
                static_cast<long long>(positions[p]), ms[p][0], bytes[p][0] / 1e3, ms[p][1],
                bytes[p][1] / 1e6, ms[p][1] / ms[p][0]);
  }
}

void PrefillAgainstStepping() {
  std::printf("\n## A 2,048-token prompt: chunkwise Prefill against token-by-token steps\n\n");
  std::printf(
      "| attention | Prefill (engine, time to first token) | Step x 2,048 (model library) | ratio "
      "|\n");
  std::printf("|---|---:|---:|---:|\n");
  for (AttentionKind kind : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    Checkpoint checkpoint = RandomCheckpoint(kind);
    TransformerLM model = checkpoint.model;
    EngineOptions options;
    options.prefill_chunk = 2048;
    Engine engine(std::move(checkpoint), options);
    const std::string prompt = RandomText(2048, 1);
    GenerationRequest warm{prompt.substr(0, 64), "", 1, {}, {}};
    Run(engine, warm);
    double prefill = 1e9;
    for (int repeat = 0; repeat < 3; ++repeat) {
      GenerationRequest request{prompt, "", 1, {}, {}};
      const auto start = Clock::now();
      Run(engine, request);
      prefill = std::min(prefill, Seconds(Clock::now() - start));
    }
    torch::NoGradGuard no_grad;
    auto ids = ByteTokenizer().Encode(prompt);
    ModelState state = model->NewState(1, torch::kCPU);
    const auto start = Clock::now();
    for (int64_t id : ids) model->Step(torch::tensor({id}, torch::kInt64), &state);
    const double stepping = Seconds(Clock::now() - start);
    std::printf("| %s | %.0f ms | %.0f ms | %.1fx |\n",
                std::string(AttentionKindName(kind)).c_str(), prefill * 1e3, stepping * 1e3,
                stepping / prefill);
  }
}

void LoadThroughGrpc() {
  std::printf(
      "\n## Through gRPC: concurrent streams (64 tokens each, prompt of 16 bytes, sampled)\n\n");
  std::printf(
      "| attention | streams | tokens/s | time to first token p50 / p99 | inter-token p50 / p99 "
      "|\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (AttentionKind kind : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    auto server = RecurServer::Start(RandomCheckpoint(kind), options);
    if (!server.ok()) {
      std::fprintf(stderr, "server_bench: %s\n", server.status().ToString().c_str());
      std::exit(1);
    }
    for (int streams : {1, 8, 64}) {
      LoadOptions load;
      load.server = "127.0.0.1:" + std::to_string((*server)->port());
      load.concurrency = streams;
      load.requests = std::max(4, 2 * streams);
      load.request.set_prompt(RandomText(16, 7));
      load.request.set_max_tokens(64);
      const LoadReport r = RunLoad(load);
      if (r.failed > 0)
        std::fprintf(stderr, "server_bench: %lld failed: %s\n", static_cast<long long>(r.failed),
                     r.first_error.c_str());
      std::printf("| %s | %d | %.0f | %.1f / %.1f ms | %.2f / %.2f ms |\n",
                  std::string(AttentionKindName(kind)).c_str(), streams, r.tokens_per_second,
                  r.ttft_p50 * 1e3, r.ttft_p99 * 1e3, r.inter_token_p50 * 1e3,
                  r.inter_token_p99 * 1e3);
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace recur

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::string part = absl::GetFlag(FLAGS_part);
  std::printf("# server_bench (%d LibTorch threads)\n", at::get_num_threads());
  if (part == "decode" || part == "all") recur::DecodeAgainstContext();
  if (part == "prefill" || part == "all") recur::PrefillAgainstStepping();
  if (part == "load" || part == "all") recur::LoadThroughGrpc();
  return 0;
}
