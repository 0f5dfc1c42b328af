// POST /v1/completions bodies as GenerationRequests: OpenAI's fields, recur's extensions, and an
// error naming the field for everything malformed.

#include "server/openai_request.h"

#include "gmock/gmock.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;

TEST(OpenAiRequestTest, OpenAisFieldsAndRecursExtensionsMapToTheRequest) {
  auto request = ParseCompletionRequest(R"({
      "model": "ptb", "prompt": "the cat", "max_tokens": 12, "temperature": 0.7, "top_p": 0.9,
      "top_k": 40, "seed": 42, "stop": ["\n", "end"], "n": 1, "stream": true,
      "stream_options": {"include_usage": true}, "session_id": "s-00", "repetition_penalty": 1.2,
      "user": "ignored", "frequency_penalty": 0})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->model, "ptb");
  const GenerationRequest& g = request->generation;
  EXPECT_EQ(g.prompt, "the cat");
  EXPECT_EQ(g.max_tokens, 12);
  EXPECT_DOUBLE_EQ(g.sampling.temperature, 0.7);
  EXPECT_DOUBLE_EQ(g.sampling.top_p, 0.9);
  EXPECT_EQ(g.sampling.top_k, 40);
  EXPECT_EQ(g.sampling.seed, 42u);
  EXPECT_DOUBLE_EQ(g.sampling.repetition_penalty, 1.2);
  EXPECT_EQ(g.stop, (std::vector<std::string>{"\n", "end"}));
  EXPECT_EQ(g.session_id, "s-00");
  EXPECT_TRUE(request->stream);
  EXPECT_TRUE(request->include_usage);
}

TEST(OpenAiRequestTest, DefaultsAreTheServersAndAPromptMayBeAnArrayOfOne) {
  auto request = ParseCompletionRequest(R"({"prompt": ["hello"], "stop": "x", "seed": null})");
  ASSERT_TRUE(request.ok()) << request.status();
  const SamplingParams defaults;
  EXPECT_EQ(request->generation.prompt, "hello");
  EXPECT_EQ(request->generation.max_tokens, std::nullopt);  // the server's default
  EXPECT_EQ(request->generation.sampling.temperature, defaults.temperature);
  EXPECT_EQ(request->generation.stop, std::vector<std::string>{"x"});
  EXPECT_FALSE(request->stream);
}

TEST(OpenAiRequestTest, SamplesAndEchoMapToTheRequest) {
  auto request = ParseCompletionRequest(
      R"({"prompt": "a b", "n": 3, "stream": true, "echo": true, "logprobs": 2})");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->generation.samples, 3);
  EXPECT_TRUE(request->echo);
  EXPECT_EQ(request->generation.prompt_logprobs, 2) << "echo with logprobs scores the prompt";
  auto plain = ParseCompletionRequest(R"({"prompt": "a", "echo": true})");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->generation.prompt_logprobs, std::nullopt);
  EXPECT_EQ(ParseCompletionRequest(R"({"prompt": "a"})")->generation.samples, 1);
}

// An explicit max_tokens of 0 is an error, not "the default" (the gRPC path's rule).
TEST(OpenAiRequestTest, AnExplicitZeroMaxTokensStaysAnError) {
  auto request = ParseCompletionRequest(R"({"prompt": "a", "max_tokens": 0})");
  ASSERT_TRUE(request.ok());
  EXPECT_EQ(request->generation.max_tokens, 0);
}

TEST(OpenAiRequestTest, MalformedBodiesNameTheirField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "body"},
      {"[1, 2]", "body"},
      {R"({"prompt": 3})", "prompt"},
      {R"({"prompt": ["a", "b"]})", "prompt"},
      {R"({"max_tokens": "ten"})", "max_tokens"},
      {R"({"max_tokens": 1.5})", "max_tokens"},
      {R"({"temperature": "hot"})", "temperature"},
      {R"({"stop": [1]})", "stop"},
      {R"({"n": 0})", "n"},
      {R"({"n": 17})", "n"},
      {R"({"n": 2, "session_id": "s-0"})", "n"},
      {R"({"logprobs": 21})", "logprobs"},
      {R"({"logprobs": "3"})", "logprobs"},
      {R"({"echo": 1})", "echo"},
      {R"({"stream": "yes"})", "stream"},
      {R"({"stream_options": 1})", "stream_options"},
      {R"({"session_id": 7})", "session_id"},
  };
  for (const auto& [body, field] : cases) {
    auto request = ParseCompletionRequest(body);
    ASSERT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_THAT(request.status().message(), HasSubstr(field)) << body;
    if (field != "body") EXPECT_EQ(ErrorParam(request.status()), field) << body;
  }
  EXPECT_EQ(ErrorParam(ParseCompletionRequest("nope").status()), std::nullopt);
}

}  // namespace
}  // namespace recur::testing
