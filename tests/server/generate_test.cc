// Generate over gRPC against the model library's own generation: streaming, sessions, fork,
// export/import, concurrency. Each case runs for linear and softmax checkpoints.

#include <algorithm>
#include <atomic>
#include <thread>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "model/utf8.h"
#include "model/weight_format.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

// A served architecture: the attention kind, the short convolution's width (0: none) and the
// linear-attention state decay.
struct ServedModel {
  std::string name;
  AttentionKind kind;
  int64_t short_conv = 0;
  StateDecay state_decay = StateDecay::kNone;
};

class GenerateTest : public ::testing::TestWithParam<ServedModel> {
 protected:
  void SetUp() override {
    WriteTestCheckpoint(dir_.Join("model"), GetParam().kind, /*seed=*/11, GetParam().short_conv,
                        GetParam().state_decay);
    checkpoint_ = LoadTestCheckpoint(dir_.Join("model"));
    // Every batch samples on the helper thread too, as at real vocabularies.
    EngineOptions engine;
    engine.parallel_sampling_logits = 0;
    server_ = StartTestServer(dir_.Join("model"), engine);
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<RecurClient>(Address(*server_), absl::Seconds(60));
  }

  std::vector<int64_t> Encode(const std::string& text) {
    return checkpoint_.tokenizer->Encode(text);
  }

  TempDir dir_;
  Checkpoint checkpoint_;
  std::unique_ptr<RecurServer> server_;
  std::unique_ptr<RecurClient> client_;
};

TEST_P(GenerateTest, StreamEqualsLibraryGenerationAndItsText) {
  for (double temperature : {0.0, 1.0}) {
    auto out = Stream(*client_, MakeRequest("The engine ", 48, temperature, /*seed=*/5));
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.ids, LibraryGenerate(checkpoint_, Encode("The engine "), 48, temperature, 5))
        << temperature;
    // The pieces concatenate to the tokens' text (bytes made valid UTF-8, as streamed).
    std::string bytes;
    for (int64_t id : out.ids) bytes += checkpoint_.tokenizer->Piece(id, -1);
    Utf8StreamDecoder decoder;
    std::string decoded = decoder.Push(bytes);  // before Flush: operands of + have no order
    decoded += decoder.Flush();
    EXPECT_EQ(out.text, decoded);
    EXPECT_TRUE(IsValidUtf8(out.text));
    const auto& usage = out.last.usage();
    EXPECT_EQ(usage.prompt_tokens(), 11);
    EXPECT_EQ(usage.generated_tokens(), static_cast<int64_t>(out.ids.size()));
    EXPECT_GT(usage.time_to_first_token_seconds(), 0);
    EXPECT_GE(usage.duration_seconds(), usage.time_to_first_token_seconds());
    const bool eos = !out.ids.empty() && out.ids.back() == checkpoint_.tokenizer->eos_id();
    EXPECT_EQ(out.last.finish_reason(),
              eos ? v1::FINISH_REASON_END_OF_SEQUENCE : v1::FINISH_REASON_LENGTH);
  }
}

// Logprobs are the model's own log softmax at each position, before temperature and sampling:
// checked against a float64 log softmax of the parallel forward pass over the same text.
TEST_P(GenerateTest, LogprobsAreTheModelsLogSoftmaxAtEachToken) {
  v1::GenerateRequest request = MakeRequest("The engine ", 24, 1.0, /*seed=*/5);
  request.set_logprobs(5);
  std::vector<int64_t> ids;
  std::vector<v1::TokenLogprobs> logprobs;
  ASSERT_TRUE(client_
                  ->Generate(request,
                             [&](const v1::GenerateResponse& m) {
                               ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
                               logprobs.insert(logprobs.end(), m.logprobs().begin(),
                                               m.logprobs().end());
                             })
                  .ok());
  ASSERT_EQ(logprobs.size(), ids.size());
  std::vector<int64_t> text = Encode("The engine ");
  const int64_t prompt = static_cast<int64_t>(text.size());
  text.insert(text.end(), ids.begin(), ids.end() - 1);
  torch::NoGradGuard no_grad;
  checkpoint_.model->eval();
  const auto reference = torch::log_softmax(
      checkpoint_.model->Forward(torch::tensor(text).view({1, -1}))[0].to(torch::kFloat64), -1);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto row = reference[prompt - 1 + static_cast<int64_t>(i)];
    EXPECT_EQ(logprobs[i].chosen().token_id(), ids[i]);
    EXPECT_NEAR(logprobs[i].chosen().logprob(), row[ids[i]].item<double>(), 2e-4) << i;
    ASSERT_EQ(logprobs[i].top_size(), 5);
    const auto best = std::get<1>(row.topk(5));
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(logprobs[i].top(k).token_id(), best[k].item<int64_t>()) << i << " " << k;
      EXPECT_EQ(logprobs[i].top(k).text(),
                checkpoint_.tokenizer->Piece(best[k].item<int64_t>(), -1));
    }
  }
}

// Prompt logprobs are the same log softmax at each prompt position, the prompt fed in slices of 4
// (each slice's first token scored under the last slice's logits): a one-off prompt (its first
// token unscored), and a session's second turn (every token scored, the first under the logits
// after the turn before).
TEST_P(GenerateTest, PromptLogprobsAreTheModelsLogSoftmaxAtEachPromptToken) {
  EngineOptions engine;
  engine.prefill_chunk = 4;
  auto server = StartTestServer(dir_.Join("model"), engine);
  ASSERT_NE(server, nullptr);
  RecurClient client(Address(*server), absl::Seconds(60));
  torch::NoGradGuard no_grad;
  checkpoint_.model->eval();
  // Checks `scored` against the log softmax over `text`, whose last `scored.size()` tokens they
  // score.
  auto check = [&](const std::vector<int64_t>& text, const std::vector<v1::TokenLogprobs>& scored) {
    const auto reference = torch::log_softmax(
        checkpoint_.model->Forward(torch::tensor(text).view({1, -1}))[0].to(torch::kFloat64), -1);
    const size_t first = text.size() - scored.size();
    for (size_t i = 0; i < scored.size(); ++i) {
      const int64_t token = text[first + i];
      const auto row = reference[static_cast<int64_t>(first + i) - 1];
      EXPECT_EQ(scored[i].chosen().token_id(), token) << i;
      EXPECT_NEAR(scored[i].chosen().logprob(), row[token].item<double>(), 2e-4) << i;
      ASSERT_EQ(scored[i].top_size(), 3);
      const auto best = std::get<1>(row.topk(3));
      for (int k = 0; k < 3; ++k) EXPECT_EQ(scored[i].top(k).token_id(), best[k].item<int64_t>());
    }
  };
  auto run = [&](v1::GenerateRequest request, std::vector<int64_t>* ids) {
    request.set_prompt_logprobs(3);
    std::vector<v1::TokenLogprobs> scored;
    int messages = 0;
    EXPECT_TRUE(client
                    .Generate(request,
                              [&](const v1::GenerateResponse& m) {
                                if (m.prompt_logprobs_size() > 0) EXPECT_EQ(messages, 0);
                                ++messages;
                                scored.insert(scored.end(), m.prompt_logprobs().begin(),
                                              m.prompt_logprobs().end());
                                ids->insert(ids->end(), m.token_ids().begin(), m.token_ids().end());
                              })
                    .ok());
    return scored;
  };

  const std::string prompt = "The engine runs on";
  std::vector<int64_t> ids;
  const auto one_off = run(MakeRequest(prompt, 3), &ids);
  EXPECT_EQ(one_off.size(), Encode(prompt).size() - 1);
  check(Encode(prompt), one_off);

  auto session = client.CreateSession();
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<int64_t> first_turn;
  (void)run(MakeRequest(prompt, 5, 0, 0, session->session_id()), &first_turn);
  std::vector<int64_t> text = Encode(prompt);
  text.insert(text.end(), first_turn.begin(), first_turn.end());
  const std::string next = " and on.";
  std::vector<int64_t> second_turn;
  const auto scored = run(MakeRequest(next, 2, 0, 0, session->session_id()), &second_turn);
  ASSERT_EQ(scored.size(), Encode(next).size());
  const std::vector<int64_t> more = Encode(next);
  text.insert(text.end(), more.begin(), more.end());
  check(text, scored);
}

TEST_P(GenerateTest, SessionOverThreeTurnsEqualsOneRequestWithTheWholeText) {
  struct Case {
    double temperature;
    double repetition_penalty;
  };
  for (const Case c : {Case{0.0, 1.0}, Case{0.9, 1.3}}) {
    auto session = client_->CreateSession();
    ASSERT_TRUE(session.ok()) << session.status();
    std::vector<int64_t> text;  // everything the session has seen
    const std::vector<std::string> prompts = {"First turn. ", "Second: ", "and the third "};
    for (size_t turn = 0; turn < prompts.size(); ++turn) {
      auto request =
          MakeRequest(prompts[turn], 12, c.temperature, /*seed=*/40 + turn, session->session_id());
      request.mutable_sampling()->set_repetition_penalty(c.repetition_penalty);
      auto out = Stream(*client_, request);
      ASSERT_TRUE(out.status.ok()) << out.status;
      text = Concat({text, Encode(prompts[turn])});
      EXPECT_EQ(out.ids, LibraryGenerate(checkpoint_, text, 12, c.temperature, 40 + turn,
                                         c.repetition_penalty))
          << "turn " << turn << ", temperature " << c.temperature;
      text = Concat({text, out.ids});
    }
    auto info = client_->GetSession(session->session_id());
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->tokens(), static_cast<int64_t>(text.size()));
    // An empty prompt continues from the text so far.
    auto more = Stream(*client_, MakeRequest("", 6, 0, 0, session->session_id()));
    ASSERT_TRUE(more.status.ok()) << more.status;
    EXPECT_EQ(more.ids, LibraryGenerate(checkpoint_, text, 6));
  }
}

TEST_P(GenerateTest, ForkedSessionsContinueIndependently) {
  auto a = client_->CreateSession();
  ASSERT_TRUE(a.ok());
  auto first = Stream(*client_, MakeRequest("Common start ", 8, 0, 0, a->session_id()));
  ASSERT_TRUE(first.status.ok());
  auto b = client_->ForkSession(a->session_id());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->session_id(), b->session_id());
  const auto base = Concat({Encode("Common start "), first.ids});

  auto in_a = Stream(*client_, MakeRequest("left", 10, 0, 0, a->session_id()));
  auto in_b = Stream(*client_, MakeRequest("right", 10, 0, 0, b->session_id()));
  auto again_a = Stream(*client_, MakeRequest("!", 10, 0, 0, a->session_id()));
  ASSERT_TRUE(in_a.status.ok() && in_b.status.ok() && again_a.status.ok());
  EXPECT_EQ(in_a.ids, LibraryGenerate(checkpoint_, Concat({base, Encode("left")}), 10));
  EXPECT_EQ(in_b.ids, LibraryGenerate(checkpoint_, Concat({base, Encode("right")}), 10));
  EXPECT_EQ(
      again_a.ids,
      LibraryGenerate(checkpoint_, Concat({base, Encode("left"), in_a.ids, Encode("!")}), 10));
}

TEST_P(GenerateTest, ExportedSessionContinuesIdenticallyOnAnotherServer) {
  auto other = StartTestServer(dir_.Join("model"));
  ASSERT_NE(other, nullptr);
  RecurClient other_client(Address(*other), absl::Seconds(60));

  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(
      Stream(*client_, MakeRequest("Moving house ", 7, 0.8, 3, session->session_id())).status.ok());
  auto bytes = client_->ExportSession(session->session_id());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto imported = other_client.ImportSession(*bytes);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->tokens(), client_->GetSession(session->session_id())->tokens());

  auto here = Stream(*client_, MakeRequest("next", 16, 0.8, 9, session->session_id()));
  auto there = Stream(other_client, MakeRequest("next", 16, 0.8, 9, imported->session_id()));
  ASSERT_TRUE(here.status.ok() && there.status.ok());
  EXPECT_EQ(here.ids, there.ids);
  EXPECT_EQ(here.text, there.text);
}

TEST_P(GenerateTest, SixtyFourConcurrentStreamsEachEqualTheirSoloRun) {
  constexpr int kStreams = 64;
  std::vector<Streamed> results(kStreams);
  std::vector<std::thread> threads;
  auto prompt = [](int i) { return "stream " + std::to_string(i) + ": "; };
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      RecurClient client(Address(*server_), absl::Seconds(120));
      results[i] = Stream(client, MakeRequest(prompt(i), 24, i % 2 == 0 ? 0.0 : 1.0, /*seed=*/i));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status;
    EXPECT_EQ(results[i].ids,
              LibraryGenerate(checkpoint_, Encode(prompt(i)), 24, i % 2 == 0 ? 0.0 : 1.0, i))
        << "stream " << i;
  }
  // The decode steps really were batched.
  const auto batch = server_->metrics().batch_size.Collect().histogram;
  EXPECT_GT(batch.sample_sum / batch.sample_count, 1.5);
}

TEST_P(GenerateTest, CancellingAStreamFreesItsSlot) {
  grpc::ClientContext context;
  auto stub = v1::Recur::NewStub(
      grpc::CreateChannel(Address(*server_), grpc::InsecureChannelCredentials()));
  auto reader = stub->Generate(&context, MakeRequest("cancel me ", 4000, 1.0));
  v1::GenerateResponse message;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(reader->Read(&message));
  EXPECT_EQ(server_->engine().Info().sessions_in_use, 1);
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
  // The engine notices within a step; the slot and the running count go back to zero.
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (server_->engine().Info().running_requests > 0 && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(5));
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->sessions_in_use(), 0);
  EXPECT_EQ(info->sessions_free(), info->max_sessions());
  EXPECT_EQ(server_->metrics().running_requests.Value(), 0);
  EXPECT_EQ(server_->metrics().active_sessions.Value(), 0);
}

TEST_P(GenerateTest, DeadlineEndsTheStreamAndFreesTheSlot) {
  // A seed whose stream runs 1,000 tokens without reaching the end of the document, so the
  // deadline, not the model, ends it (a stream ending by itself within 100 ms made this flaky).
  uint64_t seed = 0;
  while (LibraryGenerate(checkpoint_, Encode("no time "), 1000, 1.0, seed).size() < 1000) ++seed;
  RecurClient hurried(Address(*server_), absl::Milliseconds(100));
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  const absl::Time start = absl::Now();
  auto out = Stream(hurried, MakeRequest("no time ", 4096, 1.0, seed, session->session_id()));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded) << out.status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // The session is released (not busy) within a step, and usable again.
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (client_->GetSession(session->session_id())->busy() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto again = Stream(*client_, MakeRequest("again", 3, 0, 0, session->session_id()));
  EXPECT_TRUE(again.status.ok()) << again.status;
}

// A word-level model's <eos> is a line end: the server streams it as a newline and goes on, and
// the library's generation (recur-generate's) does the same.
TEST(WordModelGenerateTest, LineEndsAreTextAndTheStreamEqualsLibraryGeneration) {
  for (AttentionKind kind : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    TempDir dir;
    WriteWordTestCheckpoint(dir.Join("model"), kind);
    Checkpoint checkpoint = LoadTestCheckpoint(dir.Join("model"));
    auto server = StartTestServer(dir.Join("model"));
    ASSERT_NE(server, nullptr);
    RecurClient client(Address(*server), absl::Seconds(60));
    const int64_t eos = checkpoint.tokenizer->eos_id();
    const std::vector<int64_t> prompt = checkpoint.tokenizer->Encode("the cat sat on");
    // A seed whose sampled text has a line end before its last token.
    uint64_t seed = 0;
    std::vector<int64_t> expected;
    for (; seed < 200; ++seed) {
      expected = LibraryGenerate(checkpoint, prompt, 32, 1.0, seed);
      if (std::find(expected.begin(), expected.end() - 1, eos) != expected.end() - 1) break;
    }
    ASSERT_LT(seed, 200u) << "no seed sampled a line end";
    ASSERT_EQ(expected.size(), 32u) << "the library's generation went on past <eos>";
    auto out = Stream(client, MakeRequest("the cat sat on", 32, 1.0, seed));
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.ids, expected);
    EXPECT_EQ(std::count(out.text.begin(), out.text.end(), '\n'),
              std::count(out.ids.begin(), out.ids.end(), eos));
    EXPECT_EQ(out.last.finish_reason(), v1::FINISH_REASON_LENGTH);
  }
}

// An int8 model serves what the library generates with the same int8 model, and says so. One stream
// at a time: int8 quantises each call's input with the range of the whole batch, so unlike float32
// and bfloat16 a row's logits depend on the rows batched with it (docs/performance.md).
TEST(Int8ModelGenerateTest, StreamEqualsLibraryGenerationWithInt8Weights) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear, /*seed=*/11);
  Checkpoint library = LoadTestCheckpoint(dir.Join("model"));
  Checkpoint served = LoadTestCheckpoint(dir.Join("model"));
  ASSERT_TRUE(SetWeightFormat(library.model, WeightFormat::kInt8).ok());
  ASSERT_TRUE(SetWeightFormat(served.model, WeightFormat::kInt8).ok());
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.metrics_port = -1;
  auto server = RecurServer::Start(std::move(served), options);
  ASSERT_TRUE(server.ok()) << server.status();
  RecurClient client(Address(**server), absl::Seconds(60));
  EXPECT_EQ(client.GetModelInfo()->weights(), "int8");
  const std::vector<int64_t> prompt = library.tokenizer->Encode("The engine ");
  for (double temperature : {0.0, 1.0}) {
    auto out = Stream(client, MakeRequest("The engine ", 40, temperature, 5));
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.ids, LibraryGenerate(library, prompt, 40, temperature, 5)) << temperature;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GenerateTest,
                         ::testing::Values(ServedModel{"linear", AttentionKind::kLinear},
                                           ServedModel{"softmax", AttentionKind::kSoftmax},
                                           ServedModel{"linear_conv4", AttentionKind::kLinear, 4},
                                           ServedModel{"linear_conv4_decay", AttentionKind::kLinear,
                                                       4, StateDecay::kMultiscale},
                                           ServedModel{"linear_conv4_learned_decay",
                                                       AttentionKind::kLinear, 4,
                                                       StateDecay::kLearned}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace recur::testing
