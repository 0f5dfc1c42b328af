// The OpenAI-compatible HTTP API (--http_port) driven by real clients: curl (a plain request, and
// a stream read line by line as it arrives) and OpenAI's own npm client library. Its answers must
// be what the gRPC service gives for the same request and seed.

#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

struct HttpReply {
  int status = 0;
  Json body;
};

// One request through curl: `method` to `path`, with `body` (JSON text) and `token` when given.
HttpReply Curl(const TempDir& dir, int port, const std::string& method, const std::string& path,
               const std::string& body = "", const std::string& token = "") {
  std::string command = "curl -sS -X " + method + " -w '\\n%{http_code}'";
  if (!body.empty()) {
    std::ofstream(dir.Join("body.json")) << body;
    command += " -H 'Content-Type: application/json' --data-binary @" + dir.Join("body.json");
  }
  if (!token.empty()) command += " -H 'Authorization: Bearer " + token + "'";
  command += " http://127.0.0.1:" + std::to_string(port) + path;
  const CommandResult result = RunCommand(command);
  const size_t last = result.out.rfind('\n');
  HttpReply reply;
  if (last == std::string::npos) return reply;
  reply.status = std::atoi(result.out.c_str() + last + 1);
  reply.body = Json::parse(result.out.substr(0, last), nullptr, /*allow_exceptions=*/false);
  return reply;
}

// A streamed completion read by curl line by line, as the events arrive.
std::vector<std::string> CurlStream(const TempDir& dir, int port, const std::string& body) {
  std::ofstream(dir.Join("stream.json")) << body;
  const std::string command = "curl -sSN -H 'Content-Type: application/json' --data-binary @" +
                              dir.Join("stream.json") +
                              " http://127.0.0.1:" + std::to_string(port) + "/v1/completions";
  std::vector<std::string> lines;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[65536];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) lines.emplace_back(buffer);
  pclose(pipe);
  return lines;
}

std::unique_ptr<RecurServer> StartHttpServer(const std::string& checkpoint,
                                             EngineOptions engine = {},
                                             const std::string& token_file = "") {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.http_port = 0;
  options.model_name = "tiny";
  options.engine = engine;
  options.security.auth_token_file = token_file;
  auto server = RecurServer::Start(LoadTestCheckpoint(checkpoint), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteTestCheckpoint(dir_.Join("model"), AttentionKind::kLinear);
    server_ = StartHttpServer(dir_.Join("model"));
    ASSERT_NE(server_, nullptr);
  }
  // What the gRPC service streams for the same request.
  std::string GrpcText(const std::string& prompt, int64_t max_tokens, double temperature,
                       uint64_t seed, const std::string& session = "") {
    RecurClient client(Address(*server_), absl::Seconds(30));
    Streamed out = Stream(client, MakeRequest(prompt, max_tokens, temperature, seed, session));
    EXPECT_TRUE(out.status.ok()) << out.status;
    return out.text;
  }

  TempDir dir_;
  std::unique_ptr<RecurServer> server_;
};

TEST_F(HttpApiTest, ACompletionIsWhatTheGrpcServiceGenerates) {
  const HttpReply reply =
      Curl(dir_, server_->http_port(), "POST", "/v1/completions",
           R"({"model": "tiny", "prompt": "Once ", "max_tokens": 20, "temperature": 1.0,
               "seed": 7})");
  ASSERT_EQ(reply.status, 200) << reply.body.dump();
  EXPECT_EQ(reply.body["object"], "text_completion");
  EXPECT_EQ(reply.body["model"], "tiny");
  EXPECT_THAT(reply.body["id"].get<std::string>(), ::testing::StartsWith("cmpl-"));
  const Json& choice = reply.body["choices"][0];
  EXPECT_EQ(choice["text"], GrpcText("Once ", 20, 1.0, 7));
  EXPECT_EQ(choice["index"], 0);
  EXPECT_TRUE(choice["logprobs"].is_null());
  const Json& usage = reply.body["usage"];
  EXPECT_EQ(usage["prompt_tokens"], 5);
  EXPECT_EQ(usage["total_tokens"].get<int64_t>(), 5 + usage["completion_tokens"].get<int64_t>());
  EXPECT_EQ(choice["finish_reason"], usage["completion_tokens"] == 20 ? "length" : "stop");
}

TEST_F(HttpApiTest, AStreamIsServerSentEventsEndingInDone) {
  const std::vector<std::string> lines = CurlStream(
      dir_, server_->http_port(),
      R"({"prompt": "Once ", "max_tokens": 30, "temperature": 1.0, "seed": 7, "stream": true,
          "stream_options": {"include_usage": true}})");
  ASSERT_GE(lines.size(), 4u);
  std::string text;
  std::vector<Json> events;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] == "\n") continue;  // the blank line that ends each event
    ASSERT_THAT(lines[i], ::testing::StartsWith("data: ")) << lines[i];
    if (lines[i] == "data: [DONE]\n") {
      EXPECT_EQ(i + 2, lines.size()) << "[DONE] is the last event";
      break;
    }
    events.push_back(Json::parse(lines[i].substr(6)));
    text += events.back()["choices"].empty()
                ? ""
                : events.back()["choices"][0]["text"].get<std::string>();
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(text, GrpcText("Once ", 30, 1.0, 7));
  const Json& last_choice = events[events.size() - 2]["choices"][0];
  EXPECT_FALSE(last_choice["finish_reason"].is_null());
  EXPECT_TRUE(events.back()["choices"].empty());  // include_usage: the usage comes last
  EXPECT_EQ(events.back()["usage"]["prompt_tokens"], 5);
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_TRUE(events[i]["choices"][0]["finish_reason"].is_null());
  }
}

TEST_F(HttpApiTest, LogprobsComeInOpenAisShapeAndEqualTheGrpcServices) {
  const HttpReply reply = Curl(dir_, server_->http_port(), "POST", "/v1/completions",
                               R"({"prompt": "Once ", "max_tokens": 12, "temperature": 1.0,
                                   "seed": 9, "logprobs": 2})");
  ASSERT_EQ(reply.status, 200) << reply.body.dump();
  const Json& logprobs = reply.body["choices"][0]["logprobs"];
  const size_t n = reply.body["usage"]["completion_tokens"];
  ASSERT_EQ(logprobs["tokens"].size(), n) << logprobs.dump();
  ASSERT_EQ(logprobs["token_logprobs"].size(), n);
  ASSERT_EQ(logprobs["top_logprobs"].size(), n);
  ASSERT_EQ(logprobs["text_offset"].size(), n);
  v1::GenerateRequest request = MakeRequest("Once ", 12, 1.0, 9);
  request.set_logprobs(2);
  std::vector<double> grpc;
  RecurClient client(Address(*server_), absl::Seconds(30));
  ASSERT_TRUE(client
                  .Generate(request,
                            [&](const v1::GenerateResponse& m) {
                              for (const auto& l : m.logprobs())
                                grpc.push_back(l.chosen().logprob());
                            })
                  .ok());
  ASSERT_EQ(grpc.size(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_DOUBLE_EQ(logprobs["token_logprobs"][i].get<double>(), grpc[i]);
    EXPECT_LE(logprobs["top_logprobs"][i].size(), 2u);
  }
}

// n samples prefill the prompt once and fork its state; sample i is what a separate request
// with seed + i gives.
TEST_F(HttpApiTest, SamplesOfOnePromptEqualSeparateRequestsWithTheirSeeds) {
  const HttpReply reply = Curl(dir_, server_->http_port(), "POST", "/v1/completions",
                               R"({"prompt": "Once upon a time ", "max_tokens": 16,
                                   "temperature": 1.0, "seed": 40, "n": 3, "logprobs": 1})");
  ASSERT_EQ(reply.status, 200) << reply.body.dump();
  const Json& choices = reply.body["choices"];
  ASSERT_EQ(choices.size(), 3u);
  std::set<std::string> distinct;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(choices[i]["index"], i);
    EXPECT_EQ(choices[i]["text"], GrpcText("Once upon a time ", 16, 1.0, 40 + i)) << i;
    EXPECT_FALSE(choices[i]["logprobs"].is_null());
    distinct.insert(choices[i]["text"].get<std::string>());
  }
  EXPECT_GT(distinct.size(), 1u) << "three seeds gave one text";
  EXPECT_EQ(reply.body["usage"]["prompt_tokens"], 17);
  EXPECT_EQ(server_->engine().Info().sessions_in_use, 0) << "the temporary sessions are closed";
}

// The JSON of every `data:` event before `data: [DONE]`, which must be the last.
std::vector<Json> Events(const std::vector<std::string>& lines) {
  std::vector<Json> events;
  bool done = false;
  for (const std::string& line : lines) {
    if (line == "\n") continue;  // the blank line that ends each event
    EXPECT_FALSE(done) << "an event after [DONE]: " << line;
    EXPECT_THAT(line, ::testing::StartsWith("data: "));
    if (line == "data: [DONE]\n") {
      done = true;
    } else if (line.size() > 6) {
      events.push_back(Json::parse(line.substr(6), nullptr, /*allow_exceptions=*/false));
    }
  }
  EXPECT_TRUE(done) << "no [DONE]";
  return events;
}

// Streamed, the samples' chunks interleave, each naming its choice; each choice's text is the
// unstreamed reply's and ends with its own finish chunk.
TEST_F(HttpApiTest, StreamedSamplesNameTheirChoiceAndEqualTheWholeReply) {
  const std::string request = R"({"prompt": "Once upon a time ", "max_tokens": 16,
                                  "temperature": 1.0, "seed": 40, "n": 3)";
  const HttpReply whole =
      Curl(dir_, server_->http_port(), "POST", "/v1/completions", request + "}");
  ASSERT_EQ(whole.status, 200) << whole.body.dump();
  const std::vector<Json> events = Events(
      CurlStream(dir_, server_->http_port(),
                 request + R"(, "stream": true, "stream_options": {"include_usage": true}})"));
  ASSERT_FALSE(events.empty());
  std::map<int, std::string> texts;
  std::map<int, int> finishes;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    ASSERT_EQ(events[i]["choices"].size(), 1u) << events[i].dump();
    const Json& choice = events[i]["choices"][0];
    const int index = choice["index"];
    EXPECT_EQ(finishes[index], 0) << "choice " << index << " streams after its finish";
    texts[index] += choice["text"].get<std::string>();
    if (!choice["finish_reason"].is_null()) ++finishes[index];
  }
  ASSERT_EQ(texts.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(texts[i], whole.body["choices"][i]["text"]) << i;
    EXPECT_EQ(finishes[i], 1) << i;
  }
  const Json& usage = events.back()["usage"];
  EXPECT_EQ(usage["prompt_tokens"], 17);
  EXPECT_EQ(usage["completion_tokens"], whole.body["usage"]["completion_tokens"]);
  EXPECT_EQ(server_->engine().Info().sessions_in_use, 0) << "the temporary sessions are closed";
}

// echo: each choice's text starts with the prompt, and with logprobs its arrays start with the
// prompt's tokens, scored as the gRPC service scores them (the first, with nothing before it,
// null), their offsets counting from the prompt's start.
TEST_F(HttpApiTest, EchoLeadsEachChoiceWithThePromptAndScoresIt) {
  const std::string prompt = "Once upon";
  const HttpReply reply = Curl(dir_, server_->http_port(), "POST", "/v1/completions",
                               Json{{"prompt", prompt},
                                    {"max_tokens", 6},
                                    {"temperature", 1.0},
                                    {"seed", 3},
                                    {"n", 2},
                                    {"echo", true},
                                    {"logprobs", 2}}
                                   .dump());
  ASSERT_EQ(reply.status, 200) << reply.body.dump();
  v1::GenerateRequest request = MakeRequest(prompt, 6, 1.0, 3);
  request.set_prompt_logprobs(2);
  std::vector<double> scored;
  RecurClient client(Address(*server_), absl::Seconds(30));
  ASSERT_TRUE(client
                  .Generate(request,
                            [&](const v1::GenerateResponse& m) {
                              for (const auto& l : m.prompt_logprobs())
                                scored.push_back(l.chosen().logprob());
                            })
                  .ok());
  ASSERT_EQ(scored.size(), prompt.size() - 1);  // bytes: one token a character
  for (int i = 0; i < 2; ++i) {
    const Json& choice = reply.body["choices"][i];
    EXPECT_EQ(choice["text"], prompt + GrpcText(prompt, 6, 1.0, 3 + i)) << i;
    const Json& logprobs = choice["logprobs"];
    const size_t generated = logprobs["tokens"].size() - prompt.size();
    ASSERT_GT(generated, 0u) << logprobs.dump();
    EXPECT_EQ(logprobs["tokens"][0], "O");
    EXPECT_TRUE(logprobs["token_logprobs"][0].is_null());
    EXPECT_TRUE(logprobs["top_logprobs"][0].is_null());
    for (size_t t = 0; t < prompt.size(); ++t) {
      EXPECT_EQ(logprobs["text_offset"][t], t);
      if (t > 0) EXPECT_NEAR(logprobs["token_logprobs"][t].get<double>(), scored[t - 1], 1e-5);
    }
    EXPECT_EQ(logprobs["text_offset"][prompt.size()], prompt.size()) << "the text's come after";
  }
  // Streamed, the prompt comes first, with its logprobs.
  const std::vector<Json> events = Events(CurlStream(
      dir_, server_->http_port(),
      Json{{"prompt", prompt}, {"max_tokens", 3}, {"echo", true}, {"logprobs", 0}, {"stream", true}}
          .dump()));
  ASSERT_FALSE(events.empty());
  const Json& first = events.front()["choices"][0];
  EXPECT_THAT(first["text"].get<std::string>(), ::testing::StartsWith(prompt));
  EXPECT_GE(first["logprobs"]["tokens"].size(), prompt.size());
}

TEST_F(HttpApiTest, SessionsContinueWithoutResendingTheText) {
  const int port = server_->http_port();
  const HttpReply created = Curl(dir_, port, "POST", "/v1/sessions", "{}");
  ASSERT_EQ(created.status, 200) << created.body.dump();
  const std::string id = created.body["id"];
  RecurClient client(Address(*server_), absl::Seconds(30));
  auto twin = client.CreateSession();
  ASSERT_TRUE(twin.ok());
  for (const std::string& turn : {"The first turn. ", "And the second. "}) {
    const HttpReply reply = Curl(dir_, port, "POST", "/v1/completions",
                                 Json{{"prompt", turn},
                                      {"max_tokens", 10},
                                      {"temperature", 0.8},
                                      {"seed", 3},
                                      {"session_id", id}}
                                     .dump());
    ASSERT_EQ(reply.status, 200) << reply.body.dump();
    EXPECT_EQ(reply.body["session_id"], id);
    EXPECT_EQ(reply.body["choices"][0]["text"], GrpcText(turn, 10, 0.8, 3, twin->session_id()));
  }
  const HttpReply info = Curl(dir_, port, "GET", "/v1/sessions/" + id);
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.body["tokens"], client.GetSession(twin->session_id())->tokens());
  EXPECT_EQ(Curl(dir_, port, "DELETE", "/v1/sessions/" + id).body["deleted"], true);
  EXPECT_EQ(Curl(dir_, port, "GET", "/v1/sessions/" + id).status, 404);
}

TEST_F(HttpApiTest, ErrorsAreOpenAisShapeWithTheRightStatus) {
  const int port = server_->http_port();
  auto expect_error = [&](const HttpReply& reply, int status, const std::string& type,
                          const std::string& says) {
    EXPECT_EQ(reply.status, status) << reply.body.dump();
    EXPECT_EQ(reply.body["error"]["type"], type) << reply.body.dump();
    EXPECT_THAT(reply.body["error"]["message"].get<std::string>(), HasSubstr(says));
  };
  expect_error(Curl(dir_, port, "POST", "/v1/completions", "{not json"), 400,
               "invalid_request_error", "not valid JSON");
  const HttpReply hot =
      Curl(dir_, port, "POST", "/v1/completions", R"({"prompt": "a", "temperature": -1})");
  expect_error(hot, 400, "invalid_request_error", "temperature");
  expect_error(Curl(dir_, port, "POST", "/v1/completions", R"({"prompt": "a", "logprobs": 30})"),
               400, "invalid_request_error", "logprobs");
  const HttpReply n = Curl(dir_, port, "POST", "/v1/completions", R"({"prompt": "a", "n": 30})");
  expect_error(n, 400, "invalid_request_error", "[1, 16]");
  EXPECT_EQ(n.body["error"]["param"], "n");
  expect_error(Curl(dir_, port, "POST", "/v1/completions", R"({"prompt": "a", "model": "gpt"})"),
               404, "invalid_request_error", "'gpt' is not served here");
  expect_error(Curl(dir_, port, "POST", "/v1/completions",
                    R"({"prompt": "a", "session_id": "s-00000000000000000000000000000000"})"),
               404, "invalid_request_error", "no session");
  expect_error(Curl(dir_, port, "GET", "/v1/nothing"), 404, "invalid_request_error", "no route");
  // Not UTF-8, quoted back in the message: still a JSON reply.
  expect_error(
      Curl(dir_, port, "POST", "/v1/completions", "{\"prompt\": \"a\", \"model\": \"\xff\"}"), 400,
      "invalid_request_error", "not valid JSON");
  expect_error(Curl(dir_, port, "GET", "/v1/sessions/%FF%FE"), 404, "invalid_request_error",
               "no session");
  EXPECT_EQ(Curl(dir_, port, "GET", "/health").status, 200);
  server_->engine().Drain();
  expect_error(Curl(dir_, port, "POST", "/v1/completions", R"({"prompt": "a"})"), 503,
               "server_error", "shutting down");
}

// Every slot held by a session: a one-off request would wait for nothing, so it is refused at
// once (RESOURCE_EXHAUSTED), which HTTP clients know as 429.
TEST_F(HttpApiTest, ACompletionWithNoSlotToRunInIs429) {
  EngineOptions engine;
  engine.max_sessions = 1;
  auto server = StartHttpServer(dir_.Join("model"), engine);
  ASSERT_EQ(Curl(dir_, server->http_port(), "POST", "/v1/sessions", "{}").status, 200);
  const HttpReply reply =
      Curl(dir_, server->http_port(), "POST", "/v1/completions", R"({"prompt": "a"})");
  EXPECT_EQ(reply.status, 429) << reply.body.dump();
  EXPECT_EQ(reply.body["error"]["type"], "rate_limit_error");
}

TEST_F(HttpApiTest, BearerTokensAndTenantsAreTheGrpcServicesOwn) {
  std::ofstream(dir_.Join("tokens")) << "alice-token-0123456789 alice\nbob-token-0123456789 bob\n";
  auto server = StartHttpServer(dir_.Join("model"), {}, dir_.Join("tokens"));
  const int port = server->http_port();
  const HttpReply anonymous = Curl(dir_, port, "GET", "/v1/models");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(anonymous.body["error"]["type"], "authentication_error");
  EXPECT_EQ(Curl(dir_, port, "GET", "/v1/models", "", "wrong-token-0123456789").status, 401);
  const HttpReply models = Curl(dir_, port, "GET", "/v1/models", "", "alice-token-0123456789");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["data"][0]["id"], "tiny");
  const HttpReply session =
      Curl(dir_, port, "POST", "/v1/sessions", "{}", "alice-token-0123456789");
  ASSERT_EQ(session.status, 200);
  const std::string id = session.body["id"];
  EXPECT_EQ(Curl(dir_, port, "GET", "/v1/sessions/" + id, "", "bob-token-0123456789").status, 404);
  EXPECT_EQ(Curl(dir_, port, "GET", "/v1/sessions/" + id, "", "alice-token-0123456789").status,
            200);
  // A gRPC client with alice's token sees the session made over HTTP.
  ConnectionOptions alice;
  alice.token = "alice-token-0123456789";
  RecurClient client(Address(*server), absl::Seconds(30), alice);
  EXPECT_TRUE(client.GetSession(id).ok());
}

// OpenAI's own client library (npm `openai`) against the server: completions, plain and
// streamed, three samples streamed, an echo, the model list, and an error surfacing as the
// library's APIError with its status.
TEST_F(HttpApiTest, OpenAisClientLibraryWorksAgainstIt) {
  const std::string command =
      std::string("node ") + RECUR_TESTS_DIR +
      "/http/openai_client.mjs http://127.0.0.1:" + std::to_string(server_->http_port()) + "/v1";
  const CommandResult result = RunCommand(command);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const Json report = Json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(report.is_object()) << result.out << result.err;
  const std::string expected = GrpcText("Once ", 16, 1.0, 5);
  EXPECT_EQ(report["text"], expected);
  EXPECT_EQ(report["streamed"], expected);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(report["samples"][i], GrpcText("Once ", 16, 1.0, 5 + i));
  EXPECT_EQ(report["echo"], "Once " + expected);
  const HttpReply plain = Curl(dir_, server_->http_port(), "POST", "/v1/completions",
                               R"({"prompt": "Once ", "max_tokens": 16, "temperature": 1.0,
                                   "seed": 5})");
  EXPECT_EQ(report["echo_tokens"], 5 + plain.body["usage"]["completion_tokens"].get<int>());
  EXPECT_EQ(report["models"], Json::array({"tiny"}));
  EXPECT_EQ(report["error_status"], 404);
}

}  // namespace
}  // namespace recur::testing
