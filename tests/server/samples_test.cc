// Several samples of one prompt over gRPC (GenerateRequest.n): the prompt fed once and its state
// forked, each sample the stream a separate request with seed + i gives, for every served kind.

#include <map>
#include <set>

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;

struct ServedKind {
  std::string name;
  AttentionKind kind;
  int64_t short_conv = 0;
};

void PrintTo(const ServedKind& kind, std::ostream* out) { *out << kind.name; }

// One sample's share of an n > 1 stream.
struct SampleStream {
  std::vector<int64_t> ids;
  std::string text;
  std::vector<v1::TokenLogprobs> logprobs, prompt_logprobs;
  v1::GenerateResponse last;  // its message with the finish reason
  int finishes = 0;
  int messages_after_finish = 0;
};

struct Samples {
  absl::Status status;
  std::map<int, SampleStream> by_index;
};

Samples StreamSamples(RecurClient& client, const v1::GenerateRequest& request) {
  Samples out;
  out.status = client.Generate(request, [&out](const v1::GenerateResponse& message) {
    SampleStream& sample = out.by_index[message.index()];
    if (sample.finishes > 0) ++sample.messages_after_finish;
    sample.text += message.text();
    sample.ids.insert(sample.ids.end(), message.token_ids().begin(), message.token_ids().end());
    sample.logprobs.insert(sample.logprobs.end(), message.logprobs().begin(),
                           message.logprobs().end());
    sample.prompt_logprobs.insert(sample.prompt_logprobs.end(), message.prompt_logprobs().begin(),
                                  message.prompt_logprobs().end());
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++sample.finishes;
      sample.last = message;
    }
  });
  return out;
}

class SamplesTest : public ::testing::TestWithParam<ServedKind> {
 protected:
  void SetUp() override {
    WriteTestCheckpoint(dir_.Join("model"), GetParam().kind, /*seed=*/5, GetParam().short_conv);
    EngineOptions engine;
    engine.prefill_chunk = 4;  // the prompt fed in several slices
    engine.max_sessions = 8;
    server_ = StartTestServer(dir_.Join("model"), engine);
    ASSERT_NE(server_, nullptr);
    client_ = std::make_unique<RecurClient>(Address(*server_), absl::Seconds(60));
  }

  void ExpectSlotsFreed() {
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (server_->engine().Info().sessions_in_use > 0 && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_EQ(server_->engine().Info().sessions_in_use, 0) << "the temporary sessions are closed";
  }

  TempDir dir_;
  std::unique_ptr<RecurServer> server_;
  std::unique_ptr<RecurClient> client_;
};

TEST_P(SamplesTest, EachSampleIsTheStreamOfASeparateRequestWithItsSeed) {
  const std::string prompt = "Once upon a time, the model said ";
  // Sampled, with prompt logprobs (which feed the whole prompt); then greedy, through the prefix
  // cache (the n > 1 prefill keeps the prompt's state, the separate requests find it).
  for (const double temperature : {1.0, 0.0}) {
    v1::GenerateRequest request = MakeRequest(prompt, 12, temperature, /*seed=*/40);
    request.mutable_sampling()->set_top_p(0.9);
    request.mutable_sampling()->set_repetition_penalty(1.2);
    request.set_logprobs(2);
    if (temperature > 0) request.set_prompt_logprobs(3);
    request.add_stop("zz");
    request.set_n(3);
    const Samples samples = StreamSamples(*client_, request);
    ASSERT_TRUE(samples.status.ok()) << samples.status;
    ASSERT_EQ(samples.by_index.size(), 3u);
    std::set<std::string> distinct;
    for (const auto& [index, sample] : samples.by_index) {
      v1::GenerateRequest alone = request;
      alone.set_n(1);
      alone.mutable_sampling()->set_seed(40 + index);
      const Samples separate = StreamSamples(*client_, alone);
      ASSERT_TRUE(separate.status.ok());
      const SampleStream& expected = separate.by_index.at(0);
      EXPECT_EQ(sample.ids, expected.ids) << "sample " << index;
      EXPECT_EQ(sample.text, expected.text) << "sample " << index;
      EXPECT_EQ(sample.finishes, 1);
      EXPECT_EQ(sample.messages_after_finish, 0);
      EXPECT_EQ(sample.last.finish_reason(), expected.last.finish_reason());
      EXPECT_EQ(sample.last.usage().prompt_tokens(), expected.last.usage().prompt_tokens());
      EXPECT_EQ(sample.last.usage().generated_tokens(), sample.ids.size());
      EXPECT_GT(sample.last.usage().time_to_first_token_seconds(), 0);
      ASSERT_EQ(sample.logprobs.size(), expected.logprobs.size());
      for (size_t i = 0; i < sample.logprobs.size(); ++i) {
        EXPECT_EQ(sample.logprobs[i].SerializeAsString(), expected.logprobs[i].SerializeAsString());
      }
      // The prompt, scored once by the shared prefill, as the separate request scores it.
      ASSERT_EQ(sample.prompt_logprobs.size(), expected.prompt_logprobs.size());
      ASSERT_EQ(sample.prompt_logprobs.empty(), temperature == 0);
      for (size_t i = 0; i < sample.prompt_logprobs.size(); ++i) {
        EXPECT_EQ(sample.prompt_logprobs[i].chosen().token_id(),
                  expected.prompt_logprobs[i].chosen().token_id());
        EXPECT_NEAR(sample.prompt_logprobs[i].chosen().logprob(),
                    expected.prompt_logprobs[i].chosen().logprob(), 1e-5)
            << i;
      }
      distinct.insert(sample.text);
    }
    if (temperature > 0) EXPECT_GT(distinct.size(), 1u) << "three seeds gave one text";
    ExpectSlotsFreed();
  }
}

TEST_P(SamplesTest, CancellingEndsEverySampleAndClosesTheirSessions) {
  grpc::ClientContext context;
  auto stub = v1::Recur::NewStub(
      grpc::CreateChannel(Address(*server_), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest request = MakeRequest("cancel us ", 4000, 1.0);
  request.set_n(4);
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse message;
  std::set<int> seen;
  while (seen.size() < 4 && reader->Read(&message)) seen.insert(message.index());
  ASSERT_EQ(seen.size(), 4u) << "every sample streams";
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
  ExpectSlotsFreed();
}

TEST_P(SamplesTest, BadSampleCountsAreRefusedWithAReason) {
  v1::GenerateRequest too_many = MakeRequest("a", 2);
  too_many.set_n(17);
  absl::Status status = StreamSamples(*client_, too_many).status;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("[1, 16]"));

  auto session = client_->CreateSession();
  ASSERT_TRUE(session.ok());
  v1::GenerateRequest on_session = MakeRequest("a", 2, 0, 0, session->session_id());
  on_session.set_n(2);
  status = StreamSamples(*client_, on_session).status;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("fork the session"));

  v1::GenerateRequest more_than_slots = MakeRequest("a", 2);
  more_than_slots.set_n(8);  // one of the 8 slots is the session's
  status = StreamSamples(*client_, more_than_slots).status;
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("7 of 8 are free"));
  ASSERT_TRUE(client_->CloseSession(session->session_id()).ok());
  ExpectSlotsFreed();
}

INSTANTIATE_TEST_SUITE_P(Models, SamplesTest,
                         ::testing::Values(ServedKind{"linear", AttentionKind::kLinear},
                                           ServedKind{"softmax", AttentionKind::kSoftmax},
                                           ServedKind{"short_conv", AttentionKind::kLinear, 3}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace recur::testing
