#include "server/http_api.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "server/openai_request.h"

namespace recur {

namespace {

using Json = nlohmann::json;

// Connections served at once: each streaming completion holds one for its duration.
constexpr int kWorkers = 64;
constexpr size_t kMaxBodyBytes = size_t{16} << 20;
// How often a streaming response looks up from the engine's output to notice a client that left.
constexpr absl::Duration kStreamPoll = absl::Milliseconds(100);

// One completion's output, from the engine thread to the connection's thread.
class CompletionSink : public GenerationSink {
 public:
  struct Piece {
    std::string text;
    Json logprobs;  // OpenAI's completions shape for the piece's tokens; null when not asked
    bool finished = false;
    FinishReason reason = FinishReason::kLength;
    GenerationUsage usage;
    absl::Status error;
  };

  explicit CompletionSink(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  void OnText(std::string text, std::vector<int64_t>) override {
    absl::MutexLock lock(&mu_);
    text_ += text;
  }
  // OpenAI's legacy completions logprobs: parallel arrays of the tokens' texts, their
  // log-probabilities, the alternatives as {text: logprob} and each token's offset in the text.
  void OnLogprobs(const StepLogprobs& step) override {
    Json top = Json::object();
    for (const TokenLogprob& t : step.top) top[Text(t.token)] = t.logprob;
    const std::string text = Text(step.chosen.token);
    absl::MutexLock lock(&mu_);
    if (logprobs_.is_null()) {
      logprobs_ = {{"tokens", Json::array()},
                   {"token_logprobs", Json::array()},
                   {"top_logprobs", Json::array()},
                   {"text_offset", Json::array()}};
    }
    logprobs_["tokens"].push_back(text);
    logprobs_["token_logprobs"].push_back(step.chosen.logprob);
    logprobs_["top_logprobs"].push_back(std::move(top));
    logprobs_["text_offset"].push_back(offset_);
    offset_ += static_cast<int64_t>(text.size());
    previous_ = step.chosen.token;
  }
  void OnFinish(FinishReason reason, const GenerationUsage& usage,
                const absl::Status& error) override {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    reason_ = reason;
    usage_ = usage;
    error_ = error;
  }

  // The text since the last call, once there is some or the request has ended (or `timeout`
  // passed: then possibly nothing).
  Piece Next(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &CompletionSink::Ready), timeout);
    Piece piece;
    piece.text = std::exchange(text_, {});
    piece.logprobs = std::exchange(logprobs_, nullptr);
    piece.finished = finished_;
    piece.reason = reason_;
    piece.usage = usage_;
    piece.error = error_;
    return piece;
  }

 private:
  bool Ready() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return finished_ || !text_.empty(); }
  // The engine thread's alone, as OnLogprobs is.
  std::string Text(int64_t token) const { return tokenizer_.Piece(token, previous_); }

  const Tokenizer& tokenizer_;
  int64_t previous_ = -1;
  int64_t offset_ = 0;  // bytes of token text so far
  absl::Mutex mu_;
  Json logprobs_ ABSL_GUARDED_BY(mu_);
  std::string text_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  FinishReason reason_ ABSL_GUARDED_BY(mu_) = FinishReason::kLength;
  GenerationUsage usage_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

// OpenAI's finish reasons; recur's that have none there read "abort" (as vLLM's do).
Json FinishReasonJson(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
    case FinishReason::kContextFull:
      return "length";
    case FinishReason::kStop:
    case FinishReason::kEndOfSequence:
      return "stop";
    case FinishReason::kCancelled:
    case FinishReason::kShutdown:
    case FinishReason::kError:
      return "abort";
  }
  return "abort";
}

std::string ErrorType(int http_status) {
  switch (http_status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    default:
      return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

Json ErrorJson(const absl::Status& status) {
  const int http = HttpStatus(status.code());
  std::optional<std::string> param = ErrorParam(status);
  return {{"error",
           {{"message", std::string(status.message())},
            {"type", ErrorType(http)},
            {"param", param ? Json(*param) : Json(nullptr)},
            {"code", absl::AsciiStrToLower(absl::StatusCodeToString(status.code()))}}}};
}

// Text from the model is valid UTF-8 (server/text_stream.h), but error messages may quote what a
// client sent: bytes that are not UTF-8 are written as U+FFFD rather than failing the reply.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

void ReplyJson(httplib::Response& response, int status, const Json& body) {
  response.status = status;
  response.set_content(Dump(body) + "\n", "application/json");
}

void ReplyError(httplib::Response& response, const absl::Status& status) {
  ReplyJson(response, HttpStatus(status.code()), ErrorJson(status));
}

Json SessionJson(const SessionInfo& info) {
  return {{"id", info.id},
          {"object", "session"},
          {"tokens", info.tokens},
          {"state_bytes", info.state_bytes},
          {"busy", info.busy}};
}

std::string NewCompletionId() {
  absl::BitGen gen;
  return absl::StrFormat("cmpl-%016x%08x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint32_t>(gen));
}

void SocketOptions(socket_t fd) {
  const int yes = 1;  // no SO_REUSEPORT: a second server on the port must fail (metrics_server.cc)
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

class HttplibApi : public HttpApi {
 public:
  HttplibApi(HttpApiOptions options, Engine& engine, Metrics& metrics,
             const Authenticator& authenticator)
      : options_(std::move(options)),
        engine_(engine),
        metrics_(metrics),
        authenticator_(authenticator),
        started_(absl::ToUnixSeconds(absl::Now())) {}

  ~HttplibApi() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Listen() {
    Route();
    const int bound = options_.port == 0 ? server_.bind_to_any_port(options_.host)
                      : server_.bind_to_port(options_.host, options_.port) ? options_.port
                                                                           : -1;
    if (bound <= 0) {
      return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", options_.host, ":",
                                                 options_.port,
                                                 " (is the port in use by another server?)"));
    }
    port_ = bound;
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  void SetServing(bool serving) override { serving_.store(serving); }

 private:
  void Route() {
    server_.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
    server_.set_socket_options(SocketOptions);
    server_.set_payload_max_length(kMaxBodyBytes);
    server_.Post("/v1/completions",
                 [this](const httplib::Request& q, httplib::Response& r) { Completions(q, r); });
    server_.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& r) {
      if (Authenticated(q, r)) ReplyJson(r, 200, {{"object", "list"}, {"data", {ModelJson()}}});
    });
    server_.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      ReplyJson(r, serving_ ? 200 : 503, {{"status", serving_ ? "ok" : "draining"}});
    });
    server_.Post("/v1/sessions", [this](const httplib::Request& q, httplib::Response& r) {
      auto tenant = Authenticated(q, r);
      if (!tenant) return;
      Json body = q.body.empty() ? Json::object() : Json::parse(q.body, nullptr, false);
      if (!body.is_object() || (body.contains("id") && !body["id"].is_string())) {
        return ReplyError(
            r, absl::InvalidArgumentError("body: must be {} or {\"id\": \"s-<32 hex digits>\"}"));
      }
      Reply(r, engine_.CreateSession(*tenant, body.value("id", "")));
    });
    server_.Get(R"(/v1/sessions/([^/]+))", [this](const httplib::Request& q, httplib::Response& r) {
      if (auto tenant = Authenticated(q, r)) Reply(r, engine_.GetSession(q.matches[1], *tenant));
    });
    server_.Delete(R"(/v1/sessions/([^/]+))",
                   [this](const httplib::Request& q, httplib::Response& r) {
                     auto tenant = Authenticated(q, r);
                     if (!tenant) return;
                     const std::string id = q.matches[1];
                     const absl::Status closed = engine_.CloseSession(id, *tenant);
                     if (!closed.ok()) return ReplyError(r, closed);
                     ReplyJson(r, 200, {{"id", id}, {"object", "session"}, {"deleted", true}});
                   });
    server_.set_error_handler([](const httplib::Request& q, httplib::Response& r) {
      if (!r.body.empty()) return;  // a handler's own error reply
      ReplyError(r, r.status == 404
                        ? absl::NotFoundError(absl::StrCat("no route ", q.method, " ", q.path))
                        : absl::InvalidArgumentError(absl::StrCat("HTTP status ", r.status)));
    });
  }

  Json ModelJson() const {
    return {{"id", options_.model_name},
            {"object", "model"},
            {"created", started_},
            {"owned_by", "recur"}};
  }

  // The caller's tenant, or nullopt after replying 401.
  std::optional<std::string> Authenticated(const httplib::Request& request,
                                           httplib::Response& response) {
    auto tenant = authenticator_.Authenticate(request.get_header_value("Authorization"));
    if (tenant.ok()) return *std::move(tenant);
    ReplyError(response, tenant.status());
    return std::nullopt;
  }

  void Reply(httplib::Response& response, const absl::StatusOr<SessionInfo>& info) {
    if (!info.ok()) return ReplyError(response, info.status());
    ReplyJson(response, 200, SessionJson(*info));
  }

  void Completions(const httplib::Request& http, httplib::Response& response) {
    auto tenant = Authenticated(http, response);
    if (!tenant) return metrics_.CountRequest("UNAUTHENTICATED");
    auto parsed = ParseCompletionRequest(http.body);
    absl::Status status = parsed.status();
    if (status.ok() && !parsed->model.empty() && parsed->model != options_.model_name) {
      status = absl::NotFoundError(absl::StrCat("model: '", parsed->model,
                                                "' is not served here (GET /v1/models lists '",
                                                options_.model_name, "')"));
    }
    if (status.ok() && parsed->n > 1) {
      parsed->generation.tenant = *tenant;
      return Samples(*parsed, response);
    }
    auto sink = std::make_shared<CompletionSink>(engine_.tokenizer());
    std::shared_ptr<GenerationTicket> ticket;
    if (status.ok()) {
      parsed->generation.tenant = *tenant;
      auto submitted = engine_.Submit(parsed->generation, sink);
      status = submitted.status();
      if (submitted.ok()) ticket = *std::move(submitted);
    }
    if (!status.ok()) {
      metrics_.CountRequest(absl::StatusCodeToString(status.code()));
      return ReplyError(response, status);
    }
    Completion completion{NewCompletionId(), absl::ToUnixSeconds(absl::Now()),
                          parsed->generation.session_id};
    if (parsed->stream) return Stream(response, completion, parsed->include_usage, sink, ticket);
    const CompletionSink::Piece all = Collect(*sink);
    metrics_.CountRequest(all.reason == FinishReason::kError ? "INTERNAL" : "OK");
    if (all.reason == FinishReason::kError) return ReplyError(response, all.error);
    Json body = Chunk(completion, all.text, FinishReasonJson(all.reason), all.logprobs);
    body["usage"] = UsageJson(all.usage);
    ReplyJson(response, 200, body);
  }

  struct Completion {
    std::string id;
    int64_t created = 0;
    std::string session_id;
  };

  // The whole of a request's output, once it has ended.
  static CompletionSink::Piece Collect(CompletionSink& sink) {
    CompletionSink::Piece all;
    for (bool finished = false; !finished;) {
      CompletionSink::Piece piece = sink.Next(absl::InfiniteDuration());
      all.text += piece.text;
      AppendLogprobs(piece.logprobs, all.logprobs);
      finished = piece.finished;
      all.reason = piece.reason;
      all.usage = piece.usage;
      all.error = piece.error;
    }
    return all;
  }

  // n > 1: the prompt is fed once, into a temporary session that keeps its last token pending,
  // and the session is forked for the other samples (a recurrent state forks in one copy); sample
  // i continues its copy with seed + i, exactly as a separate request with that seed would, and
  // the samples decode in one batch. The temporary sessions are closed at the end.
  void Samples(const CompletionRequest& parsed, httplib::Response& response) {
    const std::string& tenant = parsed.generation.tenant;
    std::vector<std::string> sessions;
    auto reply_error = [&](const absl::Status& status) {
      for (const std::string& id : sessions) (void)engine_.CloseSession(id, tenant);
      metrics_.CountRequest(absl::StatusCodeToString(status.code()));
      ReplyError(response, status);
    };
    auto base = engine_.CreateSession(tenant);
    if (!base.ok()) return reply_error(base.status());
    sessions.push_back(base->id);
    GenerationRequest prefill = parsed.generation;
    prefill.session_id = base->id;
    prefill.prefill_only = true;
    prefill.logprobs.reset();
    auto prefill_sink = std::make_shared<CompletionSink>(engine_.tokenizer());
    if (auto ticket = engine_.Submit(prefill, prefill_sink); !ticket.ok()) {
      return reply_error(ticket.status());
    }
    const CompletionSink::Piece fed = Collect(*prefill_sink);
    if (fed.reason == FinishReason::kError) return reply_error(fed.error);
    for (int i = 1; i < parsed.n; ++i) {
      auto fork = engine_.ForkSession(base->id, tenant);
      if (!fork.ok()) return reply_error(fork.status());
      sessions.push_back(fork->id);
    }
    std::vector<std::shared_ptr<CompletionSink>> sinks;
    for (int i = 0; i < parsed.n; ++i) {
      GenerationRequest sample = parsed.generation;
      sample.prompt.clear();  // the session holds it, its last token pending
      sample.session_id = sessions[i];
      sample.sampling.seed += static_cast<uint64_t>(i);
      sinks.push_back(std::make_shared<CompletionSink>(engine_.tokenizer()));
      if (auto ticket = engine_.Submit(sample, sinks.back()); !ticket.ok()) {
        for (int j = 0; j < i; ++j) Collect(*sinks[j]);  // let the started ones end first
        return reply_error(ticket.status());
      }
    }
    Completion completion{NewCompletionId(), absl::ToUnixSeconds(absl::Now()), ""};
    Json choices = Json::array();
    GenerationUsage usage;
    usage.prompt_tokens = fed.usage.prompt_tokens;
    usage.cached_prompt_tokens = fed.usage.cached_prompt_tokens;
    absl::Status error;
    for (int i = 0; i < parsed.n; ++i) {
      const CompletionSink::Piece out = Collect(*sinks[i]);
      if (out.reason == FinishReason::kError) error.Update(out.error);
      usage.generated_tokens += out.usage.generated_tokens;
      choices.push_back(ChoiceJson(i, out.text, FinishReasonJson(out.reason), out.logprobs));
    }
    if (!error.ok()) return reply_error(error);
    for (const std::string& id : sessions) (void)engine_.CloseSession(id, tenant);
    metrics_.CountRequest("OK");
    Json body = Chunk(completion, "", nullptr);
    body["choices"] = std::move(choices);
    body["usage"] = UsageJson(usage);
    ReplyJson(response, 200, body);
  }

  static Json ChoiceJson(int index, const std::string& text, Json finish_reason, Json logprobs) {
    return {{"text", text},
            {"index", index},
            {"logprobs", std::move(logprobs)},
            {"finish_reason", std::move(finish_reason)}};
  }

  // The parallel arrays of `more` appended to those of `all`.
  static void AppendLogprobs(const Json& more, Json& all) {
    if (more.is_null()) return;
    if (all.is_null()) {
      all = more;
      return;
    }
    for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
      for (const Json& item : more[key]) all[key].push_back(item);
    }
  }

  Json Chunk(const Completion& completion, const std::string& text, Json finish_reason,
             Json logprobs = nullptr) const {
    Json chunk = {
        {"id", completion.id},
        {"object", "text_completion"},
        {"created", completion.created},
        {"model", options_.model_name},
        {"choices",
         Json::array({ChoiceJson(0, text, std::move(finish_reason), std::move(logprobs))})}};
    if (!completion.session_id.empty()) chunk["session_id"] = completion.session_id;
    return chunk;
  }

  static Json UsageJson(const GenerationUsage& usage) {
    return {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.generated_tokens},
            {"total_tokens", usage.prompt_tokens + usage.generated_tokens},
            {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}}};
  }

  // Server-sent events: a chunk per piece of text as the engine makes it, a last chunk with the
  // finish reason (and one with the usage when asked), then `data: [DONE]`. A client that leaves
  // cancels the request within kStreamPoll.
  void Stream(httplib::Response& response, const Completion& completion, bool include_usage,
              std::shared_ptr<CompletionSink> sink, std::shared_ptr<GenerationTicket> ticket) {
    response.set_header("Cache-Control", "no-cache");
    response.set_header("X-Accel-Buffering", "no");  // a proxy passes events on at once
    auto event = [](httplib::DataSink& out, const Json& data) {
      const std::string line = "data: " + Dump(data) + "\n\n";
      return out.write(line.data(), line.size());
    };
    response.set_chunked_content_provider(
        "text/event-stream",
        [this, completion, include_usage, sink, ticket, event](size_t, httplib::DataSink& out) {
          const CompletionSink::Piece piece = sink->Next(kStreamPoll);
          if (!out.is_writable()) {
            ticket->Cancel();
            return false;
          }
          if ((!piece.text.empty() || !piece.logprobs.is_null()) &&
              !event(out, Chunk(completion, piece.text, nullptr, piece.logprobs))) {
            ticket->Cancel();
            return false;
          }
          if (!piece.finished) return true;
          metrics_.CountRequest(piece.reason == FinishReason::kError ? "INTERNAL" : "OK");
          if (piece.reason == FinishReason::kError) {
            event(out, ErrorJson(piece.error));
          } else {
            event(out, Chunk(completion, "", FinishReasonJson(piece.reason)));
            if (include_usage) {
              Json usage = Chunk(completion, "", nullptr);
              usage["choices"] = Json::array();
              usage["usage"] = UsageJson(piece.usage);
              event(out, usage);
            }
          }
          const std::string done = "data: [DONE]\n\n";
          out.write(done.data(), done.size());
          out.done();
          return true;
        },
        [ticket](bool) { ticket->Cancel(); });  // no-op once the request has finished
  }

  const HttpApiOptions options_;
  Engine& engine_;
  Metrics& metrics_;
  const Authenticator& authenticator_;
  const int64_t started_;
  httplib::Server server_;
  std::atomic<bool> serving_{true};
  int port_ = 0;
  std::thread thread_;
};

}  // namespace

int HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::StatusOr<std::unique_ptr<HttpApi>> HttpApi::Start(HttpApiOptions options, Engine& engine,
                                                        Metrics& metrics,
                                                        const Authenticator& authenticator) {
  auto api = std::make_unique<HttplibApi>(std::move(options), engine, metrics, authenticator);
  if (absl::Status status = api->Listen(); !status.ok()) return status;
  return std::unique_ptr<HttpApi>(std::move(api));
}

}  // namespace recur
