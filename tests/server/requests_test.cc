// Limits and errors of the server, its metrics, health, session lifetime and the recur CLI.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "nlohmann/json.hpp"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RequestsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    WriteTestCheckpoint(dir_->Join("linear"), AttentionKind::kLinear);
  }
  static void TearDownTestSuite() { delete dir_; }

  void Start(EngineOptions options = {}, bool metrics = false) {
    server_ = StartTestServer(dir_->Join("linear"), options, metrics);
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<RecurClient>(Address(*server_), absl::Seconds(60));
  }

  // A word-level model (its <eos> is a line end, so streams run to max_tokens).
  void StartWordModel(EngineOptions options = {}) {
    WriteWordTestCheckpoint(dir_->Join("words"), AttentionKind::kLinear);
    server_ = StartTestServer(dir_->Join("words"), options);
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<RecurClient>(Address(*server_), absl::Seconds(60));
  }

  static TempDir* dir_;
  std::unique_ptr<RecurServer> server_;
  std::unique_ptr<RecurClient> client_;
};
TempDir* RequestsTest::dir_ = nullptr;

TEST_F(RequestsTest, BadRequestsGetTheRightCodeAndAClearMessage) {
  EngineOptions options;
  options.max_tokens = 100;
  options.default_max_tokens = 100;  // no larger than the cap (EngineOptions::Validate)
  options.max_prompt_tokens = 50;
  Start(options);
  struct Case {
    const char* name;
    v1::GenerateRequest request;
    absl::StatusCode code;
    const char* message;
  };
  auto with = [](auto edit) {
    v1::GenerateRequest r = MakeRequest("hello", 5);
    edit(r);
    return r;
  };
  const std::vector<Case> cases = {
      {"unknown session", with([](auto& r) { r.set_session_id("s-nope"); }),
       absl::StatusCode::kNotFound, "no session"},
      {"max_tokens 0", with([](auto& r) { r.set_max_tokens(0); }),
       absl::StatusCode::kInvalidArgument, "max_tokens must be in [1, 100], got 0"},
      {"max_tokens over cap", with([](auto& r) { r.set_max_tokens(101); }),
       absl::StatusCode::kInvalidArgument, "max_tokens must be in [1, 100]"},
      {"logprobs over 20", with([](auto& r) { r.set_logprobs(21); }),
       absl::StatusCode::kInvalidArgument, "logprobs must be in [0, 20], got 21"},
      {"negative temperature", with([](auto& r) { r.mutable_sampling()->set_temperature(-0.5); }),
       absl::StatusCode::kInvalidArgument, "temperature"},
      {"top_p 0", with([](auto& r) { r.mutable_sampling()->set_top_p(0); }),
       absl::StatusCode::kInvalidArgument, "top_p"},
      {"top_p over 1", with([](auto& r) { r.mutable_sampling()->set_top_p(1.5); }),
       absl::StatusCode::kInvalidArgument, "top_p"},
      {"empty prompt, no session", with([](auto& r) { r.set_prompt(""); }),
       absl::StatusCode::kInvalidArgument, "prompt is empty"},
      {"prompt over the limit", with([](auto& r) { r.set_prompt(std::string(51, 'x')); }),
       absl::StatusCode::kInvalidArgument, "over the limit of 50"},
      {"invalid UTF-8", with([](auto& r) { r.set_prompt("caf\xC3"); }),
       absl::StatusCode::kInvalidArgument, "UTF-8"},
  };
  for (const auto& c : cases) {
    auto out = Stream(*client_, c.request);
    EXPECT_EQ(out.status.code(), c.code) << c.name << ": " << out.status;
    EXPECT_THAT(std::string(out.status.message()), HasSubstr(c.message)) << c.name;
    EXPECT_TRUE(out.ids.empty()) << c.name;
  }
  // An empty prompt on a session that has no text yet.
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  auto empty = Stream(*client_, MakeRequest("", 5, 0, 0, session->session_id()));
  EXPECT_EQ(empty.status.code(), absl::StatusCode::kInvalidArgument);

  // Session calls on an unknown id, and corrupt import bytes.
  EXPECT_EQ(client_->GetSession("s-nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->CloseSession("s-nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->ForkSession("s-nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->ExportSession("s-nope").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(
      Stream(*client_, MakeRequest("some text", 4, 0, 0, session->session_id())).status.ok());
  auto bytes = client_->ExportSession(session->session_id());
  ASSERT_TRUE(bytes.ok());
  const std::vector<std::pair<std::string, std::string>> corrupt = {
      {"garbage", "not a session at all"},
      {"truncated", bytes->substr(0, bytes->size() / 2)},
      {"empty", ""},
  };
  for (const auto& [name, data] : corrupt) {
    auto imported = client_->ImportSession(data);
    EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument)
        << name << ": " << imported.status();
  }
  std::string flipped = *bytes;
  flipped[12] = '#';  // breaks the JSON header
  EXPECT_EQ(client_->ImportSession(flipped).status().code(), absl::StatusCode::kInvalidArgument);
  // Bytes from a different model.
  WriteTestCheckpoint(dir_->Join("other"), AttentionKind::kSoftmax);
  auto softmax = StartTestServer(dir_->Join("other"));
  RecurClient softmax_client(Address(*softmax), absl::Seconds(60));
  auto foreign = softmax_client.ImportSession(*bytes);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("different model"));
}

TEST_F(RequestsTest, AModelFailureIsInternalAndTheServerGoesOn) {
  Start();
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  // Break the model: an embedding with one row makes every lookup fail.
  torch::Tensor weight = server_->engine().model()->embedding->weight;
  torch::Tensor saved = weight.detach().clone();
  weight.set_data(torch::zeros({1, saved.size(1)}));
  auto failed = Stream(*client_, MakeRequest("boom", 5, 0, 0, session->session_id()));
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kInternal) << failed.status;
  EXPECT_THAT(std::string(failed.status.message()), HasSubstr("the model failed"));
  // The session's state is unknown after the failure, so it is gone; the slot is free again.
  EXPECT_EQ(client_->GetSession(session->session_id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->GetModelInfo()->sessions_in_use(), 0);
  weight.set_data(saved);
  EXPECT_TRUE(Stream(*client_, MakeRequest("fine again", 5)).status.ok());
}

TEST_F(RequestsTest, NoFreeSlotAndAFullQueueAreResourceExhausted) {
  EngineOptions options;
  options.max_sessions = 2;
  options.max_queue = 1;
  options.max_tokens = 100'000;  // a stream that outlasts its deadline
  StartWordModel(options);       // its streams run to max_tokens: no end of document
  auto a = client_->CreateSession();
  auto b = client_->CreateSession();
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = client_->CreateSession();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("no free session slot"));
  EXPECT_EQ(client_->ForkSession(a->session_id()).status().code(),
            absl::StatusCode::kResourceExhausted);

  // Every slot held by an idle session: nothing would free one (but a close or the idle TTL), so
  // a one-off request is refused at once instead of waiting for its deadline.
  const absl::Time asked = absl::Now();
  auto held = Stream(*client_, MakeRequest("the cat", 3));
  EXPECT_EQ(held.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(held.status.message()), HasSubstr("held by open sessions"));
  EXPECT_LT(absl::Now() - asked, absl::Seconds(5)) << "refused, not left to wait";

  // A slot held by a running one-off request frees when it ends: the next one-off waits in the
  // queue; one more does not fit in the queue.
  ASSERT_TRUE(client_->CloseSession(b->session_id()).ok());
  Streamed running;
  std::thread runner([&] {
    RecurClient client(Address(*server_), absl::Milliseconds(1500));
    running = Stream(client, MakeRequest("the cat", 100'000, 1.0));
  });
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (server_->engine().Info().running_requests == 0 && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(2));
  Streamed waiting;
  std::thread waiter([&] {
    RecurClient client(Address(*server_), absl::Seconds(60));
    waiting = Stream(client, MakeRequest("the mat", 3));
  });
  until = absl::Now() + absl::Seconds(5);
  while (server_->engine().Info().queued_requests == 0 && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(server_->engine().Info().queued_requests, 1);
  auto refused = Stream(*client_, MakeRequest("the sat", 3));
  EXPECT_EQ(refused.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status.message()), HasSubstr("queue is full"));
  // The running request's deadline ends it; its slot goes to the queued one.
  runner.join();
  waiter.join();
  EXPECT_EQ(running.status.code(), absl::StatusCode::kDeadlineExceeded) << running.status;
  EXPECT_TRUE(waiting.status.ok()) << waiting.status;
  EXPECT_EQ(waiting.ids.size(), 3u);
}

TEST_F(RequestsTest, StateBytesStayConstantOverTwoThousandTokens) {
  Start();
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  // The model's sums and the repetition penalty's bitmap, whatever the length.
  const ModelConfig& config = server_->engine().model()->config();
  const int64_t per_session = config.StateBytesPerSequence() + (config.vocab_size + 63) / 64 * 8;
  EXPECT_EQ(session->state_bytes(), per_session);
  int64_t generated = 0;
  std::string prompt = "A long story: ";
  // Turns of up to 500 tokens (<eos> may end one early) until 2,000 tokens have been generated.
  for (int turn = 0; turn < 20 && generated < 2000; ++turn) {
    auto out = Stream(*client_, MakeRequest(prompt, 500, 1.0, turn, session->session_id()));
    ASSERT_TRUE(out.status.ok()) << out.status;
    generated += static_cast<int64_t>(out.ids.size());
    prompt = " ";
    auto info = client_->GetSession(session->session_id());
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->state_bytes(), per_session) << "after " << generated << " tokens";
    EXPECT_EQ(client_->GetModelInfo()->state_bytes_in_use(), per_session);
  }
  EXPECT_GE(generated, 2000);
  EXPECT_EQ(server_->engine().Info().state_bytes_in_use, per_session);
}

TEST_F(RequestsTest, StopSequencesEndTheStreamWithoutBeingSent) {
  Start();
  auto free_run = Stream(*client_, MakeRequest("Stop test ", 40, 0));
  ASSERT_TRUE(free_run.status.ok());
  ASSERT_GE(free_run.text.size(), 12u);
  const std::string stop = free_run.text.substr(8, 3);
  auto request = MakeRequest("Stop test ", 40, 0);
  request.add_stop(stop);
  auto stopped = Stream(*client_, request);
  ASSERT_TRUE(stopped.status.ok());
  EXPECT_EQ(stopped.last.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find(stop)));
}

TEST_F(RequestsTest, IdleSessionsAreClosedAfterTheirTtl) {
  EngineOptions options;
  options.session_ttl = absl::Milliseconds(300);
  Start(options);
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  EXPECT_TRUE(client_->GetSession(session->session_id()).ok());
  absl::SleepFor(absl::Milliseconds(1800));
  EXPECT_EQ(client_->GetSession(session->session_id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->GetModelInfo()->sessions_in_use(), 0);
}

// What a dashboard needs for ratios: slots in all and free, the queue's bound, the state bytes
// when full, what the server runs, and the process's own series, beside the rest on /metrics.
TEST_F(RequestsTest, CapacityBuildInfoAndProcessSeriesAreExported) {
  EngineOptions options;
  options.max_sessions = 7;
  options.max_queue = 11;
  Start(options, /*metrics=*/true);
  std::string scrape = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(scrape, "recur_session_slots"), 7) << scrape;
  EXPECT_EQ(Sample(scrape, "recur_session_slots_free"), 7);
  EXPECT_EQ(Sample(scrape, "recur_max_queued_requests"), 11);
  const double slot_bytes = static_cast<double>(client_->GetModelInfo()->state_bytes_per_session());
  EXPECT_EQ(Sample(scrape, "recur_state_bytes_capacity"), 7 * slot_bytes);
  EXPECT_EQ(Sample(scrape, "recur_build_info{attention=\"linear\",device=\"cpu\",version=\"" +
                               std::string(RECUR_VERSION) + "\",weights=\"fp32\"}"),
            1);
  EXPECT_GT(Sample(scrape, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(Sample(scrape, "process_open_fds"), 3);
  EXPECT_GT(Sample(scrape, "process_start_time_seconds"), 0);
  EXPECT_GE(Sample(scrape, "process_cpu_seconds_total"), 0);

  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  scrape = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(scrape, "recur_session_slots_free"), 6);
  EXPECT_EQ(Sample(scrape, "recur_active_sessions"), 1);
  ASSERT_TRUE(client_->CloseSession(session->session_id()).ok());
  EXPECT_EQ(Sample(Scrape(server_->metrics_port()), "recur_session_slots_free"), 7);
}

// The Grafana dashboard's queries parse as PromQL (promtool checks them as recording rules) and
// name only series the server exports, so no panel stays empty.
TEST_F(RequestsTest, DashboardQueriesParseAndNameExportedSeries) {
  std::ifstream file(std::string(RECUR_DEPLOY_DIR) + "/grafana-dashboard.json");
  const auto dashboard = nlohmann::json::parse(file);
  std::vector<std::string> queries;
  for (const auto& panel : dashboard.at("panels")) {
    for (const auto& target : panel.at("targets")) queries.push_back(target.at("expr"));
  }
  ASSERT_GE(queries.size(), 18u);

  TempDir dir;
  std::ofstream rules(dir.Join("dashboard_rules.yml"));
  rules << "groups:\n  - name: dashboard\n    rules:\n";
  for (size_t i = 0; i < queries.size(); ++i) {
    rules << "      - record: dashboard:query" << i << "\n        expr: '"
          << absl::StrReplaceAll(queries[i], {{"'", "''"}}) << "'\n";
  }
  rules.close();
  const CommandResult check = RunCommand("promtool check rules " + dir.Join("dashboard_rules.yml"));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;

  Start({}, /*metrics=*/true);
  // A family without series (recur_requests_total before the first RPC ends) is not on the page.
  ASSERT_TRUE(client_->GetModelInfo().ok());
  const absl::Time until = absl::Now() + absl::Seconds(10);
  std::string scrape = Scrape(server_->metrics_port());
  while (!absl::StrContains(scrape, "recur_requests_total{") && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
    scrape = Scrape(server_->metrics_port());
  }
  const std::regex series_name(R"(\b((recur|process)_[a-z_]+))");
  for (const std::string& query : queries) {
    for (std::sregex_iterator it(query.begin(), query.end(), series_name), end; it != end; ++it) {
      std::string name = (*it)[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (absl::EndsWith(name, suffix) &&
            absl::StrContains(
                scrape, "# TYPE " + name.substr(0, name.size() - strlen(suffix)) + " histogram")) {
          name = name.substr(0, name.size() - strlen(suffix));
        }
      }
      EXPECT_TRUE(absl::StrContains(scrape, "# TYPE " + name + " ")) << name << " in " << query;
    }
  }
}

TEST_F(RequestsTest, ModelInfoAndHealth) {
  EngineOptions options;
  options.max_sessions = 7;
  Start(options);
  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->attention(), "linear");
  EXPECT_EQ(info->tokenizer(), "byte");
  EXPECT_EQ(info->weights(), "fp32");
  EXPECT_EQ(info->vocab_size(), 257);
  EXPECT_EQ(info->max_sessions(), 7);
  EXPECT_EQ(info->sessions_free(), 7);
  // L·H·(d·d + d)·4 bytes (2 layers, 2 heads of width 16) and the history's 257 bits in 5 words.
  EXPECT_EQ(info->state_bytes_per_session(), 2 * 2 * (16 * 16 + 16) * 4 + 5 * 8);
  auto health = client_->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, "SERVING");
}

// Asks the reflection service for the list of services, with hand-encoded protobuf bytes (the
// reflection protos are not installed by Debian): ServerReflectionRequest{list_services: ""} is
// field 7, length 0.
std::string ListServicesByReflection(const std::string& address) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto wait = [&] { return cq.Next(&tag, &ok) && ok; };
  call->StartCall(reinterpret_cast<void*>(1));
  if (!wait()) return "";
  const char request[] = {0x3A, 0x00};
  grpc::Slice slice(request, sizeof(request));
  grpc::ByteBuffer out(&slice, 1);
  call->Write(out, reinterpret_cast<void*>(2));
  if (!wait()) return "";
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(3));
  if (!wait()) return "";
  std::vector<grpc::Slice> slices;
  in.Dump(&slices);
  std::string response;
  for (const auto& s : slices) response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return response;
}

TEST_F(RequestsTest, ReflectionListsTheServices) {
  Start();
  const std::string services = ListServicesByReflection(Address(*server_));
  EXPECT_THAT(services, HasSubstr("recur.v1.Recur"));
  EXPECT_THAT(services, HasSubstr("grpc.health.v1.Health"));
}

// Sends `bytes` as the request of a unary `method`, bypassing protobuf; returns the status.
grpc::Status RawUnaryCall(const std::string& address, const std::string& method,
                          const std::string& bytes) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(bytes.data(), bytes.size());
  grpc::ByteBuffer request(&slice, 1), response;
  auto call = stub.PrepareUnaryCall(&context, method, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// Sends `bytes` as the one request of the server-streaming `method`; returns the final status.
grpc::Status RawStreamCall(const std::string& address, const std::string& method,
                           const std::string& bytes) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  void* tag = nullptr;
  bool ok = false;
  auto call = stub.PrepareCall(&context, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  grpc::Slice slice(bytes.data(), bytes.size());
  grpc::ByteBuffer request(&slice, 1), response;
  call->WriteLast(request, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  for (bool reading = true; reading;) {
    call->Read(&response, reinterpret_cast<void*>(3));
    reading = cq.Next(&tag, &ok) && ok;
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// gRPC answered bytes it could not parse with UNIMPLEMENTED, an empty message, and no count.
TEST_F(RequestsTest, UnparsableRequestsAreInvalidArgumentSayWhyAndAreCounted) {
  Start({}, /*metrics=*/true);
  const std::string truncated("\x0a\x05s-", 4);     // field 1 claims 5 bytes, 2 follow
  const std::string not_utf8("\x0a\x03s-\xff", 5);  // a string field must be UTF-8
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"/recur.v1.Recur/GetSession", truncated},
      {"/recur.v1.Recur/GetSession", not_utf8},
      {"/recur.v1.Recur/ImportSession", truncated},  // its field is bytes: any bytes are UTF-8
      {"/recur.v1.Recur/Generate", truncated}};
  for (const auto& [method, bytes] : calls) {
    const bool stream = method == "/recur.v1.Recur/Generate";
    const grpc::Status status = stream ? RawStreamCall(Address(*server_), method, bytes)
                                       : RawUnaryCall(Address(*server_), method, bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("cannot parse the request of " + method));
  }
  const std::string scrape = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(scrape, "recur_requests_total{code=\"INVALID_ARGUMENT\"}"), 4) << scrape;
  EXPECT_EQ(Sample(scrape, "recur_requests_total{code=\"UNIMPLEMENTED\"}"), -1);
}

// A stream cut by its deadline was counted as CANCELLED.
TEST_F(RequestsTest, ADeadlineIsCountedAsDeadlineExceeded) {
  Start({}, /*metrics=*/true);
  RecurClient hurried(Address(*server_), absl::Milliseconds(100));
  auto out = Stream(hurried, MakeRequest("no time ", 4096, 0.0));
  ASSERT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded) << out.status;
  const std::string series = "recur_requests_total{code=\"DEADLINE_EXCEEDED\"}";
  const absl::Time until = absl::Now() + absl::Seconds(10);  // counted when the engine lets go
  while (Sample(Scrape(server_->metrics_port()), series) != 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const std::string scrape = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(scrape, series), 1) << scrape;
  EXPECT_EQ(Sample(scrape, "recur_requests_total{code=\"CANCELLED\"}"), -1);
}

// On SIGTERM (Shutdown) the listener used to close at once: no probe ever saw NOT_SERVING, and a
// stream cut at the drain timeout ended with a bare UNAVAILABLE. Now health turns NOT_SERVING and
// new calls are refused while streams finish, and one still running at the timeout ends with a
// final message (finish reason SHUTDOWN and usage) and OK.
TEST_F(RequestsTest, DrainingTurnsHealthNotServingAndEndsStreamsWithAFinalMessage) {
  StartWordModel();
  Streamed out;
  std::atomic<int> received{0};
  std::thread stream([&] {
    out.status = client_->Generate(
        MakeRequest("the cat", 4096, 1.0), [&](const v1::GenerateResponse& message) {
          out.ids.insert(out.ids.end(), message.token_ids().begin(), message.token_ids().end());
          out.last = message;
          ++received;
        });
  });
  while (received < 5) absl::SleepFor(absl::Milliseconds(1));
  std::thread shutdown([&] { server_->Shutdown(absl::Milliseconds(300)); });
  RecurClient probe(Address(*server_), absl::Seconds(5));
  absl::StatusOr<std::string> health;
  const absl::Time until = absl::Now() + absl::Seconds(1);
  do {
    health = probe.Health();
  } while (health.ok() && *health == "SERVING" && absl::Now() < until);
  ASSERT_TRUE(health.ok()) << "the listener stays open while draining: " << health.status();
  EXPECT_EQ(*health, "NOT_SERVING");
  EXPECT_EQ(Stream(probe, MakeRequest("late", 3)).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(probe.CreateSession().status().code(), absl::StatusCode::kUnavailable);
  shutdown.join();
  stream.join();
  EXPECT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.last.finish_reason(), v1::FINISH_REASON_SHUTDOWN);
  EXPECT_EQ(out.last.usage().generated_tokens(), static_cast<int64_t>(out.ids.size()));
  EXPECT_LT(out.ids.size(), 4096u);
}

// A softmax session's key/value cache grew with every turn (80,004 tokens, 134 MB on a tiny model)
// and nothing capped the total. Now a session's context stops at --max_context_tokens (the stream
// ends CONTEXT_FULL, a prompt that would pass it is RESOURCE_EXHAUSTED, the session intact), and
// all caches together stay within --kv_cache_memory_mb; both are in GetModelInfo and the metrics.
TEST_F(RequestsTest, SoftmaxContextsAndTheirTotalAreBounded) {
  WriteWordTestCheckpoint(dir_->Join("softmax_words"), AttentionKind::kSoftmax);
  Checkpoint checkpoint = LoadTestCheckpoint(dir_->Join("softmax_words"));
  const int64_t per_token = checkpoint.config.KvCacheBytesPerToken();
  EngineOptions options;
  options.max_context_tokens = 40;
  options.kv_cache_budget_bytes = 100 * per_token;
  server_ = StartTestServer(dir_->Join("softmax_words"), options, /*metrics=*/true);
  ASSERT_NE(server_, nullptr);
  client_ = std::make_unique<RecurClient>(Address(*server_), absl::Seconds(60));

  auto info = client_->GetModelInfo();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->max_context_tokens(), 40);
  EXPECT_EQ(info->kv_cache_budget_bytes(), 100 * per_token);
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  const std::string id = session->session_id();
  auto full = Stream(*client_, MakeRequest("the cat sat on a mat", 100, 1.0, 0, id));
  ASSERT_TRUE(full.status.ok()) << full.status;
  EXPECT_EQ(full.last.finish_reason(), v1::FINISH_REASON_CONTEXT_FULL);
  EXPECT_EQ(full.ids.size(), 40u - 6u);
  EXPECT_EQ(client_->GetSession(id)->tokens(), 40);
  auto over = Stream(*client_, MakeRequest("the", 5, 1.0, 0, id));
  EXPECT_EQ(over.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.status.message()), HasSubstr("--max_context_tokens"));
  EXPECT_EQ(client_->GetSession(id)->tokens(), 40) << "the refused turn left the session as it was";
  EXPECT_FALSE(client_->GetSession(id)->busy());

  // 40 tokens are held; a one-off request of 6 + 30 fits the budget of 100. With a second full
  // session (80 held) it does not.
  EXPECT_TRUE(Stream(*client_, MakeRequest("the cat sat on a mat", 30, 1.0)).status.ok());
  auto second = client_->CreateSession();
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(
      Stream(*client_, MakeRequest("the cat", 100, 1.0, 0, second->session_id())).status.ok());
  auto spent = Stream(*client_, MakeRequest("the cat sat on a mat", 30, 1.0));
  EXPECT_EQ(spent.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(spent.status.message()), HasSubstr("--kv_cache_memory_mb"));
  const std::string scrape = Scrape(server_->metrics_port());
  EXPECT_EQ(Sample(scrape, "recur_kv_cache_bytes"), 80 * per_token) << scrape;
  EXPECT_EQ(Sample(scrape, "recur_kv_cache_budget_bytes"), 100 * per_token);
  EXPECT_EQ(Sample(scrape, "recur_max_context_tokens"), 40);
  EXPECT_EQ(client_->GetModelInfo()->kv_cache_bytes_in_use(), 80 * per_token);
  ASSERT_TRUE(client_->CloseSession(id).ok());
  EXPECT_TRUE(Stream(*client_, MakeRequest("the cat sat on a mat", 30, 1.0)).status.ok())
      << "closing a session gave its tokens back";
}

TEST_F(RequestsTest, MetricsEndpointServesTheSeriesWithSensibleValues) {
  Start({}, /*metrics=*/true);
  ASSERT_GT(server_->metrics_port(), 0);
  int64_t generated = 0;
  for (int i = 0; i < 3; ++i) {
    auto out = Stream(*client_, MakeRequest("metrics ", 10, 1.0, i));
    ASSERT_TRUE(out.status.ok());
    generated += static_cast<int64_t>(out.ids.size());
  }
  EXPECT_EQ(client_->GetSession("s-nope").status().code(), absl::StatusCode::kNotFound);
  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());

  const std::string scrape = Scrape(server_->metrics_port());
  ASSERT_THAT(scrape, HasSubstr("200 OK"));
  EXPECT_EQ(Sample(scrape, "recur_generated_tokens_total"), generated);
  EXPECT_EQ(Sample(scrape, "recur_prompt_tokens_total"), 3 * 8);
  EXPECT_EQ(Sample(scrape, "recur_requests_total{code=\"OK\"}"), 4);  // 3 Generate + CreateSession
  EXPECT_EQ(Sample(scrape, "recur_requests_total{code=\"NOT_FOUND\"}"), 1);
  EXPECT_EQ(Sample(scrape, "recur_time_to_first_token_seconds_count"), 3);
  EXPECT_GT(Sample(scrape, "recur_time_to_first_token_seconds_sum"), 0);
  EXPECT_EQ(Sample(scrape, "recur_inter_token_latency_seconds_count"), generated - 3);
  EXPECT_EQ(Sample(scrape, "recur_request_duration_seconds_count"), 3);
  EXPECT_GT(Sample(scrape, "recur_batch_size_count"), 0);
  EXPECT_EQ(Sample(scrape, "recur_active_sessions"), 1);
  EXPECT_EQ(Sample(scrape, "recur_running_requests"), 0);
  EXPECT_EQ(Sample(scrape, "recur_queued_requests"), 0);
  EXPECT_EQ(Sample(scrape, "recur_state_bytes"), server_->engine().Info().state_bytes_per_session);
  // Latency buckets reach below a millisecond.
  EXPECT_THAT(scrape, HasSubstr("recur_inter_token_latency_seconds_bucket{le=\"0.0001\"}"));
  EXPECT_THAT(Scrape(server_->metrics_port()).substr(0, 40), HasSubstr("200 OK"));
}

// Runs the recur CLI; returns its exit code, stdout in `out`, stderr in `err`.
int RunCli(const std::string& args, std::string* out, std::string* err) {
  CommandResult result = RunCommand(std::string(RECUR_CLI_BINARY) + " " + args);
  *out = std::move(result.out);
  *err = std::move(result.err);
  return result.exit_code;
}

TEST_F(RequestsTest, CliEndToEnd) {
  Start();
  const std::string server = "--server " + Address(*server_) + " ";
  std::string out, err;

  ASSERT_EQ(RunCli(server + "generate 'Hello there' --max_tokens 20 --temperature 0", &out, &err),
            0)
      << err;
  auto reference = Stream(*client_, MakeRequest("Hello there", 20, 0));
  EXPECT_EQ(out, reference.text + "\n");

  ASSERT_EQ(RunCli(server + "session create", &out, &err), 0) << err;
  const std::string id(absl::StripAsciiWhitespace(out));
  EXPECT_TRUE(absl::StartsWith(id, "s-")) << out;
  ASSERT_EQ(
      RunCli(server + "generate 'abc' --session " + id + " --max_tokens 5 --usage", &out, &err), 0)
      << err;
  EXPECT_THAT(err, HasSubstr("finish: length"));
  ASSERT_EQ(RunCli(server + "session info " + id, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("tokens       8"));

  TempDir files;
  ASSERT_EQ(RunCli(server + "session export " + id + " --file " + files.Join("s.bin"), &out, &err),
            0)
      << err;
  ASSERT_EQ(RunCli(server + "session import --file " + files.Join("s.bin"), &out, &err), 0) << err;
  const std::string imported(absl::StripAsciiWhitespace(out));
  EXPECT_NE(imported, id);
  ASSERT_EQ(RunCli(server + "session fork " + id, &out, &err), 0) << err;
  ASSERT_EQ(RunCli(server + "session close " + id, &out, &err), 0) << err;
  ASSERT_EQ(RunCli(server + "info", &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("attention            linear"));
  EXPECT_THAT(out, HasSubstr("2 in use"));
  ASSERT_EQ(RunCli(server + "health", &out, &err), 0) << err;
  EXPECT_EQ(out, "SERVING\n");
  ASSERT_EQ(RunCli(server + "bench --concurrency 4 --requests 8 --max_tokens 8", &out, &err), 0)
      << err;
  EXPECT_THAT(out, HasSubstr("requests 8 (0 failed)"));

  // Errors: the status on stderr and a non-zero exit.
  EXPECT_EQ(RunCli(server + "session info " + id, &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(RunCli(server + "generate 'x' --temperature -1", &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("INVALID_ARGUMENT: temperature"));
  EXPECT_EQ(RunCli(server + "frobnicate", &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("unknown command"));
  EXPECT_EQ(RunCli("--server 127.0.0.1:1 --timeout 2s info", &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("UNAVAILABLE"));
}

TEST(CliFlags, HelpListsOnlyTheClientsFlagsAndSucceeds) {
  std::string out, err;
  ASSERT_EQ(RunCli("--help", &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("recur generate"));
  EXPECT_THAT(out, HasSubstr("--server"));
  EXPECT_THAT(out, HasSubstr("--max_tokens"));
  EXPECT_THAT(out, Not(HasSubstr("--flagfile")));  // Abseil's own flags stay out of the way
  ASSERT_EQ(RunCli("--version", &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("recur 0.1.0"));
  EXPECT_EQ(RunCli("--no_such_flag generate x", &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("no_such_flag"));
  EXPECT_EQ(RunCli("", &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("no command given"));
}

}  // namespace
}  // namespace recur::testing
