#ifndef RECUR_TESTS_SERVER_TEST_SERVER_H_
#define RECUR_TESTS_SERVER_TEST_SERVER_H_

// Real servers on ephemeral loopback ports, serving small random models, and the model library's
// own generation as the reference they must agree with.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/recur_client.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/generation.h"
#include "model/tokenizer.h"
#include "server/server.h"
#include "tests/test_util.h"

namespace recur::testing {

// Saves a random model of `config` with `tokenizer` to `directory`: random short-convolution
// taps and learned decays (not their identity starts), and sharper logits than the default
// initialisation (fewer near-ties between the top tokens, so greedy comparisons test the engine
// rather than float rounding).
inline void WriteRandomCheckpoint(const std::string& directory, const ModelConfig& config,
                                  const Tokenizer& tokenizer, uint64_t seed) {
  torch::manual_seed(seed);
  TransformerLM model(config);
  {
    torch::NoGradGuard no_grad;
    model->embedding->weight.mul_(3.0);
  }
  RandomizeShortConvolutions(model);
  RandomizeLearnedDecays(model);
  auto status = SaveCheckpoint(directory, model, tokenizer, {"test", 0});
  ASSERT_TRUE(status.ok()) << status;
}

// The served test models: SmallModelConfig with two heads.
inline ModelConfig SmallServedConfig(int64_t vocab_size, AttentionKind kind) {
  ModelConfig config = SmallModelConfig(kind, vocab_size);
  config.num_heads = 2;
  return config;
}

// Writes a small random byte-level model of the given attention kind to `directory`; with a
// short convolution and no positional encoding when `short_conv` > 0, and the given
// linear-attention state decay.
inline void WriteTestCheckpoint(const std::string& directory, AttentionKind kind,
                                uint64_t seed = 11, int64_t short_conv = 0,
                                StateDecay state_decay = StateDecay::kNone) {
  ModelConfig config = SmallServedConfig(257, kind);
  config.short_conv = short_conv;
  if (short_conv > 0) config.positional_encoding = PositionalEncoding::kNone;
  config.state_decay = state_decay;
  WriteRandomCheckpoint(directory, config, ByteTokenizer(), seed);
}

// A small random word-level model over eight words, <eos> (a line end) among them. Untied: a
// tied random embedding over so few words mostly predicts the word just read.
inline void WriteWordTestCheckpoint(const std::string& directory, AttentionKind kind,
                                    uint64_t seed = 11) {
  auto words = WordTokenizer::FromWords({"<eos>", "<unk>", "the", "cat", "sat", "on", "a", "mat"});
  ASSERT_TRUE(words.ok()) << words.status();
  ModelConfig config = SmallServedConfig(words->vocab_size(), kind);
  config.tie_embeddings = false;
  WriteRandomCheckpoint(directory, config, *words, seed);
}

inline Checkpoint LoadTestCheckpoint(const std::string& directory) {
  auto checkpoint = LoadCheckpoint(directory);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  return *std::move(checkpoint);
}

inline std::unique_ptr<RecurServer> StartTestServer(const std::string& checkpoint_dir,
                                                    EngineOptions engine = {},
                                                    bool metrics = false) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_port = metrics ? 0 : -1;
  options.engine = engine;
  auto server = RecurServer::Start(LoadTestCheckpoint(checkpoint_dir), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

inline std::string Address(const RecurServer& server) {
  return "127.0.0.1:" + std::to_string(server.port());
}

// What a Generate stream delivered.
struct Streamed {
  absl::Status status;
  std::string text;
  std::vector<int64_t> ids;
  v1::GenerateResponse last;
};

inline Streamed Stream(RecurClient& client, const v1::GenerateRequest& request) {
  Streamed out;
  out.status = client.Generate(request, [&out](const v1::GenerateResponse& message) {
    out.text += message.text();
    out.ids.insert(out.ids.end(), message.token_ids().begin(), message.token_ids().end());
    out.last = message;
  });
  return out;
}

inline v1::GenerateRequest MakeRequest(const std::string& prompt, int64_t max_tokens,
                                       double temperature = 0, uint64_t seed = 0,
                                       const std::string& session = "") {
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(temperature);
  request.mutable_sampling()->set_seed(seed);
  request.set_session_id(session);
  return request;
}

// The model library's generation for the same ids and parameters (stopping where the tokenizer
// says the document ends, as the server does).
inline std::vector<int64_t> LibraryGenerate(Checkpoint& checkpoint,
                                            const std::vector<int64_t>& prompt, int64_t max_tokens,
                                            double temperature = 0, uint64_t seed = 0,
                                            double repetition_penalty = 1.0) {
  GenerationOptions options;
  options.max_tokens = max_tokens;
  options.sampling.temperature = temperature;
  options.sampling.seed = seed;
  options.sampling.repetition_penalty = repetition_penalty;
  options.stop_at_document_end = checkpoint.tokenizer.get();
  return Generate(checkpoint.model, prompt, options);
}

// A TCP connection to 127.0.0.1:`port` (-1 when refused), reads timing out after `timeout`.
inline int ConnectLoopback(int port, absl::Duration timeout = absl::Seconds(10)) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  const timeval limit = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  return fd;
}

// A port that was free a moment ago (for a server that cannot report the one it picked).
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// GET `path` over a plain socket (HTTP/1.0): the whole response, headers and body, or what came
// before `timeout` passed; "" when the connection is refused.
inline std::string HttpGet(int port, const std::string& path,
                           absl::Duration timeout = absl::Seconds(10)) {
  const int fd = ConnectLoopback(port, timeout);
  if (fd < 0) return "";
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) response.append(buffer, n);
  close(fd);
  return response;
}

// GET /metrics.
inline std::string Scrape(int port, absl::Duration timeout = absl::Seconds(10)) {
  return HttpGet(port, "/metrics", timeout);
}

// The value of `series` (name and labels) in a scrape, or -1.
inline double Sample(const std::string& scrape, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double value = -1;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return -1;
}

inline std::vector<int64_t> Concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace recur::testing

#endif  // RECUR_TESTS_SERVER_TEST_SERVER_H_
