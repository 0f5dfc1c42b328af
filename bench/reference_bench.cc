// Serving speed at the reference shape (D 256, 4 layers, 4 heads, d_ff 1,024, untied output; the
// vocabulary varies), every figure of docs/performance.md's "Serving at real vocabularies" in
// one command:
//   step    TransformerLM::Step in process at batch 1, 64 and 256, contexts 128 and 32,768,
//           linear and softmax
//   sample  one batch of 64 rows through the sampler, against the sorting sampler recur had
//   load    through gRPC at 1, 8, 64 and 256 streams (temperature 1, top_p 0.95, 64 tokens each),
//           as a fraction of the in-process step rate at that batch
//   prefix  time to first token through gRPC for a request sharing a long prefix with an earlier
//           one, with the prefix-state cache (server/prefix_cache.h) and without
//   samples n samples of one long prompt through gRPC: one request with n (the prompt fed once,
//           its state forked: server/sample_fan_out.h) against n concurrent separate requests
// Usage: build/bench/reference_bench [--part step|sample|load|prefix|samples|all]
//        [--vocab 257,10000,33278]
//        [--threads 0] [--csv FILE]

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/torch_runtime.h"
#include "client/load_generator.h"
#include "client/recur_client.h"
#include "model/checkpoint.h"
#include "model/sampling.h"
#include "model/tokenizer.h"
#include "model/weight_format.h"
#include "server/server.h"

ABSL_FLAG(std::string, part, "all", "step, sample, load, prefix, samples or all");
ABSL_FLAG(std::string, vocab, "257,10000,33278", "vocabulary sizes, comma-separated");
ABSL_FLAG(std::string, streams, "1,8,64,256", "--part load: concurrent streams, comma-separated");
ABSL_FLAG(std::string, csv, "", "also append every figure to this CSV file");
ABSL_FLAG(std::string, weights, "fp32",
          "weight formats, comma-separated: step measures each; sample and load use the first");
ABSL_FLAG(std::string, attention, "linear,softmax",
          "--part step: attention kinds, comma-separated");
ABSL_FLAG(std::string, sampling_helper, "on",
          "--part load: on, off or on,off: whether the server samples a step's rows on its helper "
          "thread too (server/row_parallel.h)");
ABSL_FLAG(std::string, contexts, "128,32768", "--part step: contexts, comma-separated");
ABSL_FLAG(int64_t, prefix_tokens, 2048,
          "--part prefix: the shared prefix; --part samples: the prompt; in tokens");
ABSL_FLAG(int64_t, rounds, 5,
          "--part prefix and samples: rounds, each with a new prompt (medians reported)");
ABSL_FLAG(int, samples, 4, "--part samples: samples of the prompt");

namespace recur {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// name,vocab,attention,batch,context,value,unit rows for plotting (commas in names become ';').
void Record(const std::string& name, int64_t vocab, const std::string& attention, int64_t batch,
            int64_t context, double value, const std::string& unit) {
  const std::string path = absl::GetFlag(FLAGS_csv);
  if (path.empty()) return;
  std::ofstream out(path, std::ios::app);
  out << absl::StrReplaceAll(name, {{",", ";"}}) << ',' << vocab << ',' << attention << ',' << batch
      << ',' << context << ',' << value << ',' << unit << '\n';
}

// Each comma-separated entry of a list flag through `parse` (a StatusOr); exits 2 with the parse
// error on a bad one.
template <typename Parse>
auto ParsedList(const std::string& value, Parse parse) {
  std::vector<typename decltype(parse(absl::string_view()))::value_type> parsed;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    auto entry = parse(part);
    if (!entry.ok()) {
      std::fprintf(stderr, "reference_bench: %s\n", entry.status().ToString().c_str());
      std::exit(2);
    }
    parsed.push_back(*entry);
  }
  return parsed;
}

std::vector<WeightFormat> WeightFormats() {
  return ParsedList(absl::GetFlag(FLAGS_weights),
                    [](absl::string_view name) { return ParseWeightFormat(name, torch::kCPU); });
}

// A random model of the reference shape. Its output layer is scaled so that logits spread like a
// trained model's (a few tokens far ahead), and <eos> never wins, so every request runs its
// full length.
Checkpoint ReferenceCheckpoint(int64_t vocab, AttentionKind kind,
                               WeightFormat format = WeightFormats().front()) {
  ModelConfig config;
  config.vocab_size = vocab;
  config.tie_embeddings = false;
  config.attention = kind;
  torch::manual_seed(3);
  Checkpoint checkpoint;
  checkpoint.config = config;
  if (vocab == 257) {
    checkpoint.tokenizer = std::make_shared<ByteTokenizer>();
  } else {
    std::vector<std::string> words{"<eos>", "<unk>"};
    for (int64_t i = 2; i < vocab; ++i) words.push_back(absl::StrCat("w", i));
    checkpoint.tokenizer = std::make_shared<WordTokenizer>(*WordTokenizer::FromWords(words));
  }
  checkpoint.model = TransformerLM(config);
  torch::NoGradGuard no_grad;
  checkpoint.model->lm_head->weight.mul_(4);
  checkpoint.model->lm_head->weight[checkpoint.tokenizer->eos_id()].fill_(0);
  checkpoint.model->eval();
  if (auto s = SetWeightFormat(checkpoint.model, format); !s.ok()) {
    std::fprintf(stderr, "reference_bench: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  return checkpoint;
}

// `tokens` tokens of text; another `salt` gives other text.
std::string Prompt(int64_t vocab, int64_t tokens, int64_t salt = 0) {
  std::string prompt;
  for (int64_t i = 0; i < tokens; ++i) {
    absl::StrAppend(&prompt, vocab == 257 ? std::string(1, 'a' + (i + salt) % 26)
                                          : absl::StrCat(i == 0 ? "" : " ", "w",
                                                         2 + (i * 37 + salt * 101) % 500));
  }
  return prompt;
}

// The model's state for `batch` rows after `context` tokens (one row prefilled, then copied).
ModelState StateAt(TransformerLM& model, int64_t batch, int64_t context) {
  ModelState one = model->NewState(1, torch::kCPU);
  for (int64_t fed = 0; fed < context; fed += 4096) {
    const int64_t n = std::min<int64_t>(4096, context - fed);
    model->Prefill(torch::randint(0, model->config().vocab_size, {1, n}, torch::kInt64), &one);
  }
  return ConcatStates(std::vector<const ModelState*>(batch, &one));
}

// Median seconds of one Step at `batch` rows after `context` tokens.
double StepSeconds(TransformerLM& model, int64_t batch, int64_t context) {
  torch::NoGradGuard no_grad;
  ModelState state = StateAt(model, batch, context);
  auto tokens = torch::randint(0, model->config().vocab_size, {batch}, torch::kInt64);
  std::vector<double> times;
  for (int i = 0; i < 23; ++i) {
    const auto start = Clock::now();
    model->Step(tokens, &state);
    if (i >= 3) times.push_back(Seconds(Clock::now() - start));
  }
  return Median(times);
}

// One row of the step table: batch 1, 64 and 256 after `context` tokens.
void StepRow(TransformerLM& model, int64_t vocab, AttentionKind kind, const std::string& form,
             int64_t context) {
  std::string row = absl::StrCat("| ", vocab, " | ", absl::StrReplaceAll(form, {{"/", " | "}}),
                                 " | ", context, " |");
  for (int64_t batch : {1, 64, 256}) {
    // Softmax keys and values at 32,768 tokens: 268 MB a row; 64 rows would not fit here.
    if (kind == AttentionKind::kSoftmax && context > 128 && batch > 1) {
      absl::StrAppend(&row, " (", batch * 268 / 1000, " GB of K/V) |");
      continue;
    }
    const double s = StepSeconds(model, batch, context);
    absl::StrAppend(&row, absl::StrFormat(" %.2f ms, %.0f/s |", s * 1e3, batch / s));
    Record("step_seconds", vocab, form, batch, context, s, "s");
  }
  std::printf("%s\n", row.c_str());
  std::fflush(stdout);
}

// The comma-separated integers of a list flag, each at least `least`.
std::vector<int64_t> IntegerList(const std::string& flag, const std::string& value, int64_t least) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < least) {
      std::fprintf(stderr, "reference_bench: bad --%s entry '%s'\n", flag.c_str(),
                   std::string(part).c_str());
      std::exit(2);
    }
    values.push_back(v);
  }
  return values;
}

std::vector<int64_t> Vocabularies() { return IntegerList("vocab", absl::GetFlag(FLAGS_vocab), 3); }

std::vector<AttentionKind> AttentionKinds() {
  return ParsedList(absl::GetFlag(FLAGS_attention), ParseAttentionKind);
}

void StepTable() {
  std::printf("\n## In-process Step (ms per step, tokens/s)\n\n");
  std::printf("| vocab | attention | weights | context | batch 1 | batch 64 | batch 256 |\n");
  std::printf("|---:|---|---|---:|---:|---:|---:|\n");
  for (int64_t vocab : Vocabularies()) {
    for (AttentionKind kind : AttentionKinds()) {
      for (WeightFormat format : WeightFormats()) {
        // Converted once from the float32 weights (bf16 → fp32 would keep bf16's rounding).
        Checkpoint checkpoint = ReferenceCheckpoint(vocab, kind, format);
        const std::string form =
            absl::StrCat(AttentionKindName(kind), "/", WeightFormatName(format));
        for (int64_t context : IntegerList("contexts", absl::GetFlag(FLAGS_contexts), 1)) {
          StepRow(checkpoint.model, vocab, kind, form, context);
        }
      }
    }
  }
}

// The sampler recur had before the vectorised one, for the ratio: every row copied to doubles,
// the whole vocabulary partially sorted (keep = vocabulary unless top_k), softmax and the top-p
// cut in rank order.
class SortingSampler {
 public:
  explicit SortingSampler(const SamplingParams& p) : p_(p), generator_(p.seed) {}

  int64_t Sample(absl::Span<const float> logits, const TokenSet& seen) {
    const int64_t vocab = static_cast<int64_t>(logits.size());
    std::vector<std::pair<int64_t, double>> ranked;
    ranked.reserve(vocab);
    for (int64_t i = 0; i < vocab; ++i) {
      double s = logits[i];
      if (p_.repetition_penalty != 1.0 && seen.Contains(i)) {
        s = s > 0 ? s / p_.repetition_penalty : s * p_.repetition_penalty;
      }
      ranked.emplace_back(i, s);
    }
    auto by_score = [](const auto& a, const auto& b) {
      return a.second > b.second || (a.second == b.second && a.first < b.first);
    };
    if (p_.temperature == 0.0)
      return std::min_element(ranked.begin(), ranked.end(), by_score)->first;
    const int64_t keep = p_.top_k > 0 ? std::min(vocab, p_.top_k) : vocab;
    std::partial_sort(ranked.begin(), ranked.begin() + keep, ranked.end(), by_score);
    ranked.resize(keep);
    const double max = ranked.front().second;
    double total = 0;
    for (auto& [id, s] : ranked) total += s = std::exp((s - max) / p_.temperature);
    size_t n = ranked.size();
    if (p_.top_p < 1.0) {
      double cumulative = 0;
      for (n = 0; n < ranked.size();) {
        cumulative += ranked[n++].second / total;
        if (cumulative >= p_.top_p) break;
      }
    }
    double kept = 0;
    for (size_t i = 0; i < n; ++i) kept += ranked[i].second;
    double target = static_cast<double>(generator_() >> 11) * 0x1.0p-53 * kept;
    for (size_t i = 0; i < n; ++i) {
      if (target < ranked[i].second) return ranked[i].first;
      target -= ranked[i].second;
    }
    return ranked[n - 1].first;
  }

 private:
  SamplingParams p_;
  std::mt19937_64 generator_;
};

// Median seconds to sample every row of `logits` once, with one sampler per row.
template <typename S>
double SampleSeconds(const torch::Tensor& logits, const SamplingParams& params,
                     const std::vector<TokenSet>& seen) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  std::vector<S> samplers;
  for (int64_t r = 0; r < rows; ++r) {
    SamplingParams p = params;
    p.seed = r;
    samplers.emplace_back(p);
  }
  std::vector<double> times;
  int64_t checksum = 0;
  for (int i = 0; i < 13; ++i) {
    const auto start = Clock::now();
    for (int64_t r = 0; r < rows; ++r) {
      checksum +=
          samplers[r].Sample({logits.data_ptr<float>() + r * vocab, size_t(vocab)}, seen[r]);
    }
    if (i >= 3) times.push_back(Seconds(Clock::now() - start));
  }
  if (checksum < 0) std::printf("impossible\n");  // keeps the work observable
  return Median(times);
}

void SampleTable() {
  std::printf("\n## Sampling a batch of 64 rows (ms), against the model's batch-64 step\n\n");
  std::printf(
      "| vocab | mode | sorting sampler | recur's sampler | speed-up | share of the step |\n");
  std::printf("|---:|---|---:|---:|---:|---:|\n");
  struct Mode {
    const char* name;
    SamplingParams params;
    bool penalised;
  };
  SamplingParams top_p;
  top_p.top_p = 0.95;
  SamplingParams top_k;
  top_k.top_k = 40;
  SamplingParams greedy;
  greedy.temperature = 0;
  SamplingParams penalty = top_p;
  penalty.repetition_penalty = 1.2;
  const std::vector<Mode> modes = {{"temperature 1, top_p 0.95", top_p, false},
                                   {"temperature 1", SamplingParams{}, false},
                                   {"top_k 40", top_k, false},
                                   {"greedy", greedy, false},
                                   {"top_p 0.95, penalty 1.2 (200 seen)", penalty, true}};
  for (int64_t vocab : Vocabularies()) {
    Checkpoint checkpoint = ReferenceCheckpoint(vocab, AttentionKind::kLinear);
    const double step = StepSeconds(checkpoint.model, 64, 128);
    torch::NoGradGuard no_grad;
    ModelState state = StateAt(checkpoint.model, 64, 128);
    const torch::Tensor logits =
        checkpoint.model->Step(torch::randint(0, vocab, {64}, torch::kInt64), &state).contiguous();
    for (const Mode& mode : modes) {
      std::vector<TokenSet> seen(64, TokenSet(vocab));
      if (mode.penalised) {
        std::mt19937 gen(1);
        for (TokenSet& s : seen) {
          for (int i = 0; i < 200; ++i) s.Insert(gen() % vocab);
        }
      }
      const double before = SampleSeconds<SortingSampler>(logits, mode.params, seen);
      const double after = SampleSeconds<Sampler>(logits, mode.params, seen);
      std::printf("| %lld | %s | %.3f | %.3f | %.1fx | %.1f %% |\n", static_cast<long long>(vocab),
                  mode.name, before * 1e3, after * 1e3, before / after, 100 * after / step);
      Record(absl::StrCat("sample_seconds_sorting/", mode.name), vocab, "linear", 64, 128, before,
             "s");
      Record(absl::StrCat("sample_seconds/", mode.name), vocab, "linear", 64, 128, after, "s");
      std::fflush(stdout);
    }
  }
}

// Sum and count of a histogram so far.
std::pair<double, double> SumAndCount(prometheus::Histogram& histogram) {
  const prometheus::ClientMetric metric = histogram.Collect();
  return {metric.histogram.sample_sum, static_cast<double>(metric.histogram.sample_count)};
}

// A server of `checkpoint` on a free loopback port; exits when it cannot start.
std::unique_ptr<RecurServer> StartServer(Checkpoint checkpoint, const EngineOptions& engine) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.engine = engine;
  auto server = RecurServer::Start(std::move(checkpoint), options);
  if (!server.ok()) {
    std::fprintf(stderr, "reference_bench: %s\n", server.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(server);
}

// One server's rows of the load table: the reference model at `vocab`, sampling with or without
// the engine's helper thread.
void LoadRows(int64_t vocab, bool sampling_helper) {
  Checkpoint checkpoint = ReferenceCheckpoint(vocab, AttentionKind::kLinear);
  TransformerLM model = checkpoint.model;
  EngineOptions engine;
  engine.max_sessions = 256;
  engine.max_queue = 1024;
  if (!sampling_helper) engine.parallel_sampling_logits = std::numeric_limits<int64_t>::max();
  const std::string form = sampling_helper ? "linear" : "linear/no-helper";  // the CSV's column
  auto server = StartServer(std::move(checkpoint), engine);
  for (int64_t streams : IntegerList("streams", absl::GetFlag(FLAGS_streams), 1)) {
    LoadOptions load;
    load.server = absl::StrCat("127.0.0.1:", server->port());
    load.concurrency = static_cast<int>(streams);
    load.requests = static_cast<int>(std::max<int64_t>(8, 2 * streams));
    load.request.set_prompt(Prompt(vocab, 16));
    load.request.set_max_tokens(64);
    load.request.mutable_sampling()->set_temperature(1.0);
    load.request.mutable_sampling()->set_top_p(0.95);
    Metrics& metrics = server->metrics();
    const auto model_before = SumAndCount(metrics.decode_model_seconds);
    const auto output_before = SumAndCount(metrics.decode_output_seconds);
    const LoadReport r = RunLoad(load);
    const auto model_after = SumAndCount(metrics.decode_model_seconds);
    const auto output_after = SumAndCount(metrics.decode_output_seconds);
    const double steps = std::max(1.0, model_after.second - model_before.second);
    const double model_ms = 1e3 * (model_after.first - model_before.first) / steps;
    const double output_ms = 1e3 * (output_after.first - output_before.first) / steps;
    if (r.failed > 0) {
      std::fprintf(stderr, "reference_bench: %lld failed: %s\n", static_cast<long long>(r.failed),
                   r.first_error.c_str());
    }
    // The model alone at this batch, measured now beside the server (idle between loads).
    const double step = StepSeconds(model, streams, 128);
    const double in_process = streams / step;
    std::printf(
        "| %lld | %s | %lld | %.0f | %.0f | %.0f %% | %.2f / %.2f ms | %.2fx | %.2f / %.3f ms |\n",
        static_cast<long long>(vocab), sampling_helper ? "on" : "off",
        static_cast<long long>(streams), r.tokens_per_second, in_process,
        100 * r.tokens_per_second / in_process, r.inter_token_p50 * 1e3, r.inter_token_p99 * 1e3,
        r.inter_token_p99 / step, model_ms, output_ms);
    Record("server_model_seconds", vocab, form, streams, 128, model_ms / 1e3, "s");
    Record("server_output_seconds", vocab, form, streams, 128, output_ms / 1e3, "s");
    Record("grpc_tokens_per_second", vocab, form, streams, 128, r.tokens_per_second, "1/s");
    Record("in_process_tokens_per_second", vocab, form, streams, 128, in_process, "1/s");
    Record("inter_token_p50", vocab, form, streams, 128, r.inter_token_p50, "s");
    Record("inter_token_p99", vocab, form, streams, 128, r.inter_token_p99, "s");
    std::fflush(stdout);
  }
}

// Seconds from sending `prompt` through gRPC to its first token, and the prompt tokens the
// server's prefix cache held.
std::pair<double, int64_t> TimeToFirstToken(RecurClient& client, const std::string& prompt) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(1);
  request.mutable_sampling()->set_temperature(1.0);
  request.mutable_sampling()->set_top_p(0.95);
  const Clock::time_point start = Clock::now();
  double first = 0;
  int64_t cached = 0;
  const absl::Status status = client.Generate(request, [&](const v1::GenerateResponse& message) {
    if (first == 0 && message.token_ids_size() > 0) first = Seconds(Clock::now() - start);
    if (message.has_usage()) cached = message.usage().cached_prompt_tokens();
  });
  if (!status.ok()) {
    std::fprintf(stderr, "reference_bench: %s\n", status.ToString().c_str());
    std::exit(1);
  }
  return {first, cached};
}

// One vocabulary's rows of the prefix table. Each round takes a new prefix P of --prefix_tokens
// and two 16-token endings A and B: P+A arrives first (cold), then P+B shares P (kept: P's length
// is a multiple of the cache's interval), P+A+B continues P+A (kept at its end), P+A again (kept
// whole, with its logits); the server without the cache gets P+B.
void PrefixRows(int64_t vocab) {
  EngineOptions without_cache;
  without_cache.prefix_cache_bytes = 0;
  auto cached_server = StartServer(ReferenceCheckpoint(vocab, AttentionKind::kLinear), {});
  auto plain_server =
      StartServer(ReferenceCheckpoint(vocab, AttentionKind::kLinear), without_cache);
  RecurClient cached(absl::StrCat("127.0.0.1:", cached_server->port()), absl::Minutes(5));
  RecurClient plain(absl::StrCat("127.0.0.1:", plain_server->port()), absl::Minutes(5));
  const int64_t n = absl::GetFlag(FLAGS_prefix_tokens);
  const std::string glue = vocab == 257 ? "" : " ";
  struct Case {
    const char* name;
    std::vector<double> seconds;
    int64_t cached_tokens = 0;
  };
  std::vector<Case> cases = {{"cold: P+A, nothing kept"},
                             {"P+B, P kept"},
                             {"P+A+B, P+A kept"},
                             {"P+A again, kept whole"},
                             {"P+B without the cache"}};
  for (int64_t round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    const std::string p = Prompt(vocab, n, 1000 + round);
    const std::string a = glue + Prompt(vocab, 16, 7 + round);
    const std::string b = glue + Prompt(vocab, 16, 300 + round);
    const std::pair<RecurClient*, std::string> requests[] = {{&cached, p + a},
                                                             {&cached, p + b},
                                                             {&cached, p + a + b},
                                                             {&cached, p + a},
                                                             {&plain, p + b}};
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto [seconds, cached_tokens] =
          TimeToFirstToken(*requests[i].first, requests[i].second);
      cases[i].seconds.push_back(seconds);
      cases[i].cached_tokens = cached_tokens;
    }
  }
  const double plain_ms = 1e3 * Median(cases.back().seconds);
  for (const Case& c : cases) {
    const double ms = 1e3 * Median(c.seconds);
    std::printf("| %lld | %s | %lld | %.2f ms | %.1fx |\n", static_cast<long long>(vocab), c.name,
                static_cast<long long>(c.cached_tokens), ms, plain_ms / ms);
    Record(absl::StrCat("prefix_ttft_seconds/", c.name), vocab, "linear", 1, n, ms / 1e3, "s");
  }
  std::fflush(stdout);
}

void PrefixTable() {
  std::printf(
      "\n## Time to first token through gRPC for a request sharing a %lld-token prefix (medians "
      "of %lld rounds)\n\n",
      static_cast<long long>(absl::GetFlag(FLAGS_prefix_tokens)),
      static_cast<long long>(absl::GetFlag(FLAGS_rounds)));
  std::printf("| vocab | request | cached tokens | time to first token | vs no cache |\n");
  std::printf("|---:|---|---:|---:|---:|\n");
  for (int64_t vocab : Vocabularies()) PrefixRows(vocab);
}

// Wall seconds until `n` samples of `prompt` (32 tokens each, temperature 1, top_p 0.95, seeds 1
// .. n) have all ended: one request with n, or n separate requests at once.
double SamplesSeconds(const std::string& address, const std::string& prompt, int n, bool forked) {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(32);
  request.mutable_sampling()->set_temperature(1.0);
  request.mutable_sampling()->set_top_p(0.95);
  request.mutable_sampling()->set_seed(1);
  auto run = [&address](const v1::GenerateRequest& r) {
    RecurClient client(address, absl::Minutes(5));
    const absl::Status status = client.Generate(r, [](const v1::GenerateResponse&) {});
    if (!status.ok()) {
      std::fprintf(stderr, "reference_bench: %s\n", status.ToString().c_str());
      std::exit(1);
    }
  };
  const Clock::time_point start = Clock::now();
  if (forked) {
    request.set_n(n);
    run(request);
  } else {
    std::vector<std::thread> separate;
    for (int i = 0; i < n; ++i) {
      v1::GenerateRequest one = request;
      one.mutable_sampling()->set_seed(1 + i);
      separate.emplace_back(run, one);
    }
    for (std::thread& t : separate) t.join();
  }
  return Seconds(Clock::now() - start);
}

// One vocabulary's row of the samples table. The prefix cache is off, so that neither form finds
// the other's prompt: the comparison is the fork against feeding the prompt n times.
void SamplesRow(int64_t vocab) {
  EngineOptions engine;
  engine.prefix_cache_bytes = 0;
  auto server = StartServer(ReferenceCheckpoint(vocab, AttentionKind::kLinear), engine);
  const std::string address = absl::StrCat("127.0.0.1:", server->port());
  const int n = absl::GetFlag(FLAGS_samples);
  const int64_t tokens = absl::GetFlag(FLAGS_prefix_tokens);
  for (const bool form : {true, false}) SamplesSeconds(address, Prompt(vocab, 64, 1999), n, form);
  std::vector<double> forked, separate;
  for (int64_t round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    const std::string prompt = Prompt(vocab, tokens, 2000 + round);
    forked.push_back(SamplesSeconds(address, prompt, n, /*forked=*/true));
    separate.push_back(SamplesSeconds(address, prompt, n, /*forked=*/false));
  }
  const double forked_ms = 1e3 * Median(forked), separate_ms = 1e3 * Median(separate);
  std::printf("| %lld | %d | %.0f ms | %.0f ms | %.2fx |\n", static_cast<long long>(vocab), n,
              forked_ms, separate_ms, separate_ms / forked_ms);
  Record("samples_seconds/forked", vocab, "linear", n, tokens, forked_ms / 1e3, "s");
  Record("samples_seconds/separate", vocab, "linear", n, tokens, separate_ms / 1e3, "s");
  std::fflush(stdout);
}

void SamplesTable() {
  std::printf(
      "\n## %d samples of one %lld-token prompt through gRPC, 32 tokens each (medians of %lld "
      "rounds)\n\n",
      absl::GetFlag(FLAGS_samples), static_cast<long long>(absl::GetFlag(FLAGS_prefix_tokens)),
      static_cast<long long>(absl::GetFlag(FLAGS_rounds)));
  std::printf("| vocab | n | one request with n | n separate requests | saved |\n");
  std::printf("|---:|---:|---:|---:|---:|\n");
  for (int64_t vocab : Vocabularies()) SamplesRow(vocab);
}

void LoadTable() {
  std::printf(
      "\n## Through gRPC (temperature 1, top_p 0.95, 16-token prompts, 64 tokens a stream), "
      "against the in-process step at the same batch\n\n");
  std::printf(
      "| vocab | helper | streams | tokens/s | in-process tokens/s | ratio | inter-token p50 / p99 "
      "| p99 / step | server step: model / output |\n");
  std::printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t vocab : Vocabularies()) {
    for (absl::string_view helper : absl::StrSplit(absl::GetFlag(FLAGS_sampling_helper), ',')) {
      if (helper != "on" && helper != "off") {
        std::fprintf(stderr, "reference_bench: --sampling_helper takes on and off\n");
        std::exit(2);
      }
      LoadRows(vocab, helper == "on");
    }
  }
}
}  // namespace
}  // namespace recur

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // --threads (base/torch_runtime.h), as recur-server takes it: a core reserved for gRPC.
  if (absl::Status s = recur::ApplyThreadsFlag(/*reserved_cores=*/1); !s.ok()) {
    std::fprintf(stderr, "reference_bench: %s\n", s.ToString().c_str());
    return 2;
  }
  const std::string part = absl::GetFlag(FLAGS_part);
  if (part != "step" && part != "sample" && part != "load" && part != "prefix" &&
      part != "samples" && part != "all") {
    std::fprintf(stderr,
                 "reference_bench: --part must be step, sample, load, prefix, samples or all\n");
    return 2;
  }
  std::printf("# reference_bench (%d LibTorch threads)\n", at::get_num_threads());
  if (part == "sample" || part == "all") recur::SampleTable();
  if (part == "step" || part == "all") recur::StepTable();
  if (part == "load" || part == "all") recur::LoadTable();
  if (part == "prefix" || part == "all") recur::PrefixTable();
  if (part == "samples" || part == "all") recur::SamplesTable();
  return 0;
}
