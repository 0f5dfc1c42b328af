// The engine without gRPC: scheduling properties that the stream tests cannot see.

#include "server/engine.h"

#include "absl/synchronization/notification.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

// Counts a request's tokens; sink calls all come from the engine thread.
class CountingSink : public GenerationSink {
 public:
  void OnText(std::string, std::vector<int64_t> ids) override {
    tokens += static_cast<int>(ids.size());
    if (on_token) on_token();
  }
  void OnFinish(FinishReason reason, const GenerationUsage&, const absl::Status&) override {
    finish_reason = reason;
    done.Notify();
  }
  std::atomic<int> tokens{0};
  std::function<void()> on_token;
  FinishReason finish_reason = FinishReason::kLength;
  absl::Notification done;
};

TEST(EngineTest, ALongPromptDoesNotStallRunningStreams) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear);
  EngineOptions options;
  options.prefill_chunk = 16;
  Engine engine(LoadTestCheckpoint(dir.Join("model")), options);

  auto running = std::make_shared<CountingSink>();
  GenerationRequest a;
  a.prompt = "a";
  a.max_tokens = 4000;
  auto ticket = engine.Submit(a, running);
  ASSERT_TRUE(ticket.ok());
  while (running->tokens < 5) absl::SleepFor(absl::Milliseconds(1));

  // A 2,000-token prompt arrives: 125 slices of 16. The running stream keeps getting a token after
  // every slice instead of waiting for the whole prompt.
  auto long_prompt = std::make_shared<CountingSink>();
  int tokens_at_first = -1;
  long_prompt->on_token = [&] {
    if (tokens_at_first < 0) tokens_at_first = running->tokens;
  };
  GenerationRequest b;
  b.prompt = std::string(2000, 'x');
  b.max_tokens = 1;
  const int tokens_before = running->tokens;
  ASSERT_TRUE(engine.Submit(b, long_prompt).ok());
  long_prompt->done.WaitForNotification();
  EXPECT_GE(tokens_at_first - tokens_before, 100);
  (*ticket)->Cancel();
  running->done.WaitForNotification();
  EXPECT_EQ(running->finish_reason, FinishReason::kCancelled);
}

}  // namespace
}  // namespace recur::testing
