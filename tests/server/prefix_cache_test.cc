// The prefix-state cache on its own (server/prefix_cache.h), and through the server: every output
// the same as a server without the cache, and as the model library's own generation.

#include "server/prefix_cache.h"

#include <torch/torch.h>

#include <thread>

#include "gmock/gmock.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

// A one-layer linear-attention state whose every number is `value`: 2 heads of 4 × 4.
ModelState StateOf(float value) {
  ModelState state;
  state.linear.push_back({torch::full({1, 2, 4, 4}, value), torch::full({1, 2, 4}, value)});
  state.positions = torch::full({1}, 7, torch::kInt64);
  return state;
}

float ValueOf(const ModelState& state) { return state.linear[0].s[0][0][0][0].item<float>(); }

std::vector<int64_t> Iota(int64_t n, int64_t from = 0) {
  std::vector<int64_t> tokens(n);
  for (int64_t i = 0; i < n; ++i) tokens[i] = from + i;
  return tokens;
}

absl::Span<const int64_t> First(const std::vector<int64_t>& tokens, int64_t n) {
  return absl::Span<const int64_t>(tokens.data(), n);
}

TEST(PrefixCacheTest, FindsTheLongestKeptPrefixShorterThanThePrompt) {
  Metrics metrics;
  PrefixCache cache(1 << 20, metrics);
  const std::vector<int64_t> prompt = Iota(10);
  cache.Insert("", First(prompt, 3), StateOf(3), torch::Tensor());
  cache.Insert("", First(prompt, 6), StateOf(6), torch::Tensor());
  cache.Insert("", First(prompt, 10), StateOf(10), torch::Tensor());  // no logits: not usable whole

  auto hit = cache.Lookup("", prompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 6);
  EXPECT_EQ(ValueOf(hit->state), 6);
  EXPECT_FALSE(hit->logits.defined());

  // A prompt that differs at token 4 keeps only the 3-token prefix.
  std::vector<int64_t> other = prompt;
  other[4] = 99;
  hit = cache.Lookup("", other);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 3);

  EXPECT_FALSE(cache.Lookup("", {5, 6, 7}).has_value());  // shares no beginning
  EXPECT_EQ(metrics.prefix_cache_lookups.Value(), 3);
  EXPECT_EQ(metrics.prefix_cache_hits.Value(), 2);
  EXPECT_EQ(metrics.prefix_cache_hit_tokens.Value(), 9);
  EXPECT_EQ(metrics.prefix_cache_entries.Value(), 3);
}

TEST(PrefixCacheTest, AnEntryWithLogitsServesTheWholePrompt) {
  Metrics metrics;
  PrefixCache cache(1 << 20, metrics);
  const std::vector<int64_t> prompt = Iota(5);
  cache.Insert("", prompt, StateOf(5), torch::Tensor());
  EXPECT_FALSE(cache.Lookup("", prompt).has_value());
  // The same prefix again, now at a prompt's end with the logits after it: the entry gains them.
  cache.Insert("", prompt, StateOf(5), torch::arange(4, torch::kFloat32));
  EXPECT_EQ(cache.entries(), 1);
  auto hit = cache.Lookup("", prompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, 5);
  ASSERT_TRUE(hit->logits.defined());
  EXPECT_TRUE(torch::equal(hit->logits, torch::arange(4, torch::kFloat32)));
}

TEST(PrefixCacheTest, AHitIsACopyTheCallerMayAdvance) {
  Metrics metrics;
  PrefixCache cache(1 << 20, metrics);
  const std::vector<int64_t> prompt = Iota(4);
  ModelState original = StateOf(1);
  cache.Insert("", First(prompt, 2), original, torch::Tensor());
  original.linear[0].s.fill_(50);  // the caller goes on with its own state
  auto hit = cache.Lookup("", prompt);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(ValueOf(hit->state), 1);
  hit->state.linear[0].s.fill_(60);
  EXPECT_EQ(ValueOf(cache.Lookup("", prompt)->state), 1);
}

TEST(PrefixCacheTest, TenantsDoNotShareEntries) {
  Metrics metrics;
  PrefixCache cache(1 << 20, metrics);
  const std::vector<int64_t> prompt = Iota(8);
  cache.Insert("alice", First(prompt, 4), StateOf(4), torch::Tensor());
  EXPECT_FALSE(cache.Lookup("bob", prompt).has_value());
  EXPECT_FALSE(cache.Lookup("", prompt).has_value());
  EXPECT_TRUE(cache.Lookup("alice", prompt).has_value());
}

TEST(PrefixCacheTest, KeepsWithinItsBytesDroppingTheLeastRecentlyUsed) {
  Metrics metrics;
  const int64_t state_bytes = StateOf(0).Bytes();  // 160 bytes; the key adds 4 a token
  PrefixCache cache(3 * (state_bytes + 8), metrics);
  const std::vector<int64_t> a = Iota(2, 0), b = Iota(2, 10), c = Iota(2, 20), d = Iota(2, 30);
  cache.Insert("", a, StateOf(1), torch::Tensor());
  cache.Insert("", b, StateOf(2), torch::Tensor());
  cache.Insert("", c, StateOf(3), torch::Tensor());
  EXPECT_EQ(cache.entries(), 3);
  EXPECT_EQ(cache.bytes(), 3 * (state_bytes + 8));
  ASSERT_TRUE(cache.Lookup("", Iota(3, 0)).has_value());  // a is now the most recently used

  cache.Insert("", d, StateOf(4), torch::Tensor());  // over capacity: b, the oldest, goes
  EXPECT_EQ(cache.entries(), 3);
  EXPECT_LE(cache.bytes(), 3 * (state_bytes + 8));
  EXPECT_TRUE(cache.Lookup("", Iota(3, 0)).has_value());
  EXPECT_FALSE(cache.Lookup("", Iota(3, 10)).has_value());
  EXPECT_TRUE(cache.Lookup("", Iota(3, 20)).has_value());
  EXPECT_TRUE(cache.Lookup("", Iota(3, 30)).has_value());
  EXPECT_EQ(metrics.prefix_cache_evictions.Value(), 1);
  EXPECT_EQ(metrics.prefix_cache_bytes.Value(), static_cast<double>(cache.bytes()));

  // An entry larger than the whole cache is not kept, and evicts nothing.
  ModelState big;
  big.linear.push_back({torch::zeros({1, 2, 64, 64}), torch::zeros({1, 2, 64})});
  big.positions = torch::zeros({1}, torch::kInt64);
  cache.Insert("", Iota(2, 40), big, torch::Tensor());
  EXPECT_EQ(cache.entries(), 3);
}

TEST(PrefixCacheTest, OffWithNoCapacity) {
  Metrics metrics;
  PrefixCache cache(0, metrics);
  const std::vector<int64_t> prompt = Iota(4);
  cache.Insert("", First(prompt, 2), StateOf(1), torch::Tensor());
  EXPECT_FALSE(cache.enabled());
  EXPECT_EQ(cache.entries(), 0);
  EXPECT_FALSE(cache.Lookup("", prompt).has_value());
  EXPECT_EQ(metrics.prefix_cache_lookups.Value(), 0);
}

// ---------------------------------------------------------------------------------------------
// Through the server

class PrefixCacheServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    // A short convolution too: its tail of inputs is part of the state the cache must keep.
    WriteTestCheckpoint(dir_->Join("linear"), AttentionKind::kLinear, 11, /*short_conv=*/4);
    WriteTestCheckpoint(dir_->Join("softmax"), AttentionKind::kSoftmax);
  }
  static void TearDownTestSuite() { delete dir_; }

  // A server with the cache (checkpoints every `interval` tokens) and one without.
  void Start(int64_t interval, const std::string& model = "linear") {
    EngineOptions options;
    options.prefix_cache_interval = interval;
    options.prefill_chunk = 64;
    cached_ = StartTestServer(dir_->Join(model), options, /*metrics=*/true);
    options.prefix_cache_bytes = 0;
    plain_ = StartTestServer(dir_->Join(model), options);
    ASSERT_NE(cached_, nullptr);
    ASSERT_NE(plain_, nullptr);
    cached_client_ = std::make_unique<RecurClient>(Address(*cached_), absl::Seconds(60));
    plain_client_ = std::make_unique<RecurClient>(Address(*plain_), absl::Seconds(60));
  }

  // Runs `request` on both servers: the same tokens, and the cached server's cached count.
  int64_t ExpectSameOnBoth(const v1::GenerateRequest& request) {
    const Streamed cached = Stream(*cached_client_, request);
    const Streamed plain = Stream(*plain_client_, request);
    EXPECT_TRUE(cached.status.ok()) << cached.status;
    EXPECT_TRUE(plain.status.ok()) << plain.status;
    EXPECT_EQ(cached.ids, plain.ids) << "prompt: " << request.prompt();
    EXPECT_EQ(cached.text, plain.text);
    EXPECT_EQ(plain.last.usage().cached_prompt_tokens(), 0);
    EXPECT_EQ(cached.last.usage().prompt_tokens(), plain.last.usage().prompt_tokens());
    return cached.last.usage().cached_prompt_tokens();
  }

  static TempDir* dir_;
  std::unique_ptr<RecurServer> cached_, plain_;
  std::unique_ptr<RecurClient> cached_client_, plain_client_;
};
TempDir* PrefixCacheServerTest::dir_ = nullptr;

// `bytes` printable ASCII characters from `salt` (at most 'h') on.
std::string Text(int64_t bytes, char salt = 'a') {
  std::string text;
  for (int64_t i = 0; i < bytes; ++i) text += static_cast<char>(salt + (i * 7 + i / 5) % 23);
  return text;
}

TEST_F(PrefixCacheServerTest, OutputsAreTheSameWithAndWithoutTheCache) {
  Start(/*interval=*/32);
  const std::string system = Text(100);
  // The first request keeps states at 32, 64, 96 and its end (100).
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(system, 12)), 0);
  // A conversation resent with more text starts at the previous prompt's end, at any token.
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(system + "more text", 12)), 100);
  // A prompt that shares 80 tokens, then differs, starts at the checkpoint below: 64.
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(system.substr(0, 80) + "other", 12)), 64);
  // The identical prompt needs no model call: the logits after it were kept too.
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(system, 12)), 100);
  // Sampled (temperature, a seed), with a repetition penalty and logprobs, and the identical
  // prompt again: the first token is drawn from the kept logits.
  v1::GenerateRequest sampled = MakeRequest(system, 16, /*temperature=*/0.9, /*seed=*/5);
  sampled.mutable_sampling()->set_repetition_penalty(1.3);
  sampled.mutable_sampling()->set_top_p(0.9);
  EXPECT_EQ(ExpectSameOnBoth(sampled), 100);
  sampled.set_prompt(system + "x");
  EXPECT_EQ(ExpectSameOnBoth(sampled), 100);
}

TEST_F(PrefixCacheServerTest, AHitMatchesTheModelLibrarysGeneration) {
  Start(/*interval=*/16);
  Checkpoint reference = LoadTestCheckpoint(dir_->Join("linear"));
  const std::string prompt = Text(70, 'c');
  ASSERT_TRUE(Stream(*cached_client_, MakeRequest(prompt, 4)).status.ok());
  for (const std::string& p : {prompt, prompt + "and on", prompt.substr(0, 40)}) {
    const Streamed out = Stream(*cached_client_, MakeRequest(p, 20));
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_GT(out.last.usage().cached_prompt_tokens(), 0) << p;
    EXPECT_EQ(out.ids, LibraryGenerate(reference, reference.tokenizer->Encode(p), 20)) << p;
  }
}

TEST_F(PrefixCacheServerTest, ABurstOfRequestsSharingAPrefixMatchesSeparateRuns) {
  Start(/*interval=*/24);
  const std::string shared = Text(60, 'd');
  ASSERT_TRUE(Stream(*cached_client_, MakeRequest(shared, 2)).status.ok());
  // Eight at once: they prefill together from the kept state, each at its own length.
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 8; ++i) {
    requests.push_back(MakeRequest(shared + Text(i * 5 + 1, 'B'), 10, 0.8, 100 + i));
  }
  std::vector<Streamed> outs(requests.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    threads.emplace_back([&, i] { outs[i] = Stream(*cached_client_, requests[i]); });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(outs[i].status.ok()) << outs[i].status;
    // 60 at least: those that arrive after request 0 has finished may start at its end (61).
    EXPECT_GE(outs[i].last.usage().cached_prompt_tokens(), 60);
    const Streamed plain = Stream(*plain_client_, requests[i]);
    EXPECT_EQ(outs[i].ids, plain.ids) << "request " << i;
  }
}

TEST_F(PrefixCacheServerTest, ANewSessionsFirstTurnStartsFromTheCacheAndGoesOnExactly) {
  Start(/*interval=*/32);
  const std::string prompt = Text(50, 'e');
  ASSERT_TRUE(Stream(*cached_client_, MakeRequest(prompt, 3)).status.ok());
  auto cached_session = cached_client_->CreateSession();
  auto plain_session = plain_client_->CreateSession();
  ASSERT_TRUE(cached_session.ok() && plain_session.ok());
  for (const std::string& turn : {prompt, std::string(" and then"), std::string("!")}) {
    const Streamed a =
        Stream(*cached_client_, MakeRequest(turn, 10, 0, 0, cached_session->session_id()));
    const Streamed b =
        Stream(*plain_client_, MakeRequest(turn, 10, 0, 0, plain_session->session_id()));
    ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status << b.status;
    EXPECT_EQ(a.ids, b.ids) << "turn: " << turn;
    // Only the first turn starts on an empty state.
    EXPECT_EQ(a.last.usage().cached_prompt_tokens(), turn == prompt ? 50 : 0);
  }
}

TEST_F(PrefixCacheServerTest, MetricsCountLookupsHitsAndBytes) {
  Start(/*interval=*/32);
  const std::string prompt = Text(40, 'f');
  ASSERT_TRUE(Stream(*cached_client_, MakeRequest(prompt, 2)).status.ok());
  ASSERT_TRUE(Stream(*cached_client_, MakeRequest(prompt + "yz", 2)).status.ok());
  const std::string page = Scrape(cached_->metrics_port());
  EXPECT_EQ(Sample(page, "recur_prefix_cache_lookups_total"), 2);
  EXPECT_EQ(Sample(page, "recur_prefix_cache_hits_total"), 1);
  EXPECT_EQ(Sample(page, "recur_prefix_cache_hit_tokens_total"), 40);
  // Kept: 32 and 40 from the first prompt, 42 from the second.
  EXPECT_EQ(Sample(page, "recur_prefix_cache_entries"), 3);
  EXPECT_GT(Sample(page, "recur_prefix_cache_bytes"), 0);
  EXPECT_EQ(Sample(page, "recur_prefix_cache_capacity_bytes"), 256 << 20);
  auto info = cached_client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->prefix_cache_capacity_bytes(), 256 << 20);
}

TEST_F(PrefixCacheServerTest, SoftmaxModelsKeepNoPrefixes) {
  Start(/*interval=*/16, "softmax");
  const std::string prompt = Text(40, 'g');
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(prompt, 5)), 0);
  EXPECT_EQ(ExpectSameOnBoth(MakeRequest(prompt, 5)), 0);
  auto info = cached_client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->prefix_cache_capacity_bytes(), 0);
}

}  // namespace
}  // namespace recur::testing
