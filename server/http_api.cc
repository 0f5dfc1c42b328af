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
#include "server/completion_output.h"
#include "server/openai_request.h"
#include "server/sample_fan_out.h"

namespace recur {

namespace {

using Json = nlohmann::json;

// Connections served at once: each streaming completion holds one for its duration.
constexpr int kWorkers = 64;
constexpr size_t kMaxBodyBytes = size_t{16} << 20;
// How often a streaming response looks up from the engine's output to notice a client that left.
constexpr absl::Duration kStreamPoll = absl::Milliseconds(100);

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
    std::shared_ptr<CompletionOutput> output;
    std::shared_ptr<GenerationTicket> ticket;
    if (status.ok()) {
      parsed->generation.tenant = *tenant;
      output = std::make_shared<CompletionOutput>(engine_.tokenizer(), parsed->generation.samples,
                                                  EchoOf(*parsed));
      std::vector<std::shared_ptr<GenerationSink>> sinks;
      for (int i = 0; i < parsed->generation.samples; ++i) sinks.push_back(output->Sink(i));
      auto submitted = SubmitSamples(engine_, parsed->generation, std::move(sinks));
      status = submitted.status();
      if (submitted.ok()) ticket = *std::move(submitted);
    }
    if (!status.ok()) {
      metrics_.CountRequest(absl::StatusCodeToString(status.code()));
      return ReplyError(response, status);
    }
    Completion completion{NewCompletionId(), absl::ToUnixSeconds(absl::Now()),
                          parsed->generation.session_id};
    if (parsed->stream) return Stream(response, completion, parsed->include_usage, output, ticket);
    Totals totals;
    Json choices = Json::array();
    for (CompletionOutput::Piece& choice : output->Collect()) {
      totals.Add(choice);
      choices.push_back(
          ChoiceJson(choice.index, choice.text, FinishReasonJson(choice.reason), choice.logprobs));
    }
    metrics_.CountRequest(totals.error.ok() ? "OK" : "INTERNAL");
    if (!totals.error.ok()) return ReplyError(response, totals.error);
    Json body = Chunk(completion, 0, "", nullptr);
    body["choices"] = std::move(choices);
    body["usage"] = UsageJson(totals.usage);
    ReplyJson(response, 200, body);
  }

  struct Completion {
    std::string id;
    int64_t created = 0;
    std::string session_id;
  };

  // The choices' usage as OpenAI counts it (the prompt once, the completions' tokens summed), and
  // the first choice's error.
  struct Totals {
    GenerationUsage usage;
    absl::Status error;

    void Add(const CompletionOutput::Piece& choice) {
      usage.prompt_tokens = choice.usage.prompt_tokens;
      usage.cached_prompt_tokens = choice.usage.cached_prompt_tokens;
      usage.generated_tokens += choice.usage.generated_tokens;
      if (choice.reason == FinishReason::kError) error.Update(choice.error);
    }
  };

  std::optional<CompletionOutput::Echo> EchoOf(const CompletionRequest& request) const {
    if (!request.echo) return std::nullopt;
    const std::string& prompt = request.generation.prompt;
    return CompletionOutput::Echo{prompt,
                                  static_cast<int64_t>(engine_.tokenizer().Encode(prompt).size()),
                                  request.generation.logprobs.has_value()};
  }

  static Json ChoiceJson(int index, const std::string& text, Json finish_reason, Json logprobs) {
    return {{"text", text},
            {"index", index},
            {"logprobs", std::move(logprobs)},
            {"finish_reason", std::move(finish_reason)}};
  }

  Json Chunk(const Completion& completion, int index, const std::string& text, Json finish_reason,
             Json logprobs = nullptr) const {
    Json chunk = {
        {"id", completion.id},
        {"object", "text_completion"},
        {"created", completion.created},
        {"model", options_.model_name},
        {"choices",
         Json::array({ChoiceJson(index, text, std::move(finish_reason), std::move(logprobs))})}};
    if (!completion.session_id.empty()) chunk["session_id"] = completion.session_id;
    return chunk;
  }

  static Json UsageJson(const GenerationUsage& usage) {
    return {{"prompt_tokens", usage.prompt_tokens},
            {"completion_tokens", usage.generated_tokens},
            {"total_tokens", usage.prompt_tokens + usage.generated_tokens},
            {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}}};
  }

  // Server-sent events: a chunk per piece of a choice's text as the engine makes it (naming the
  // choice), a chunk with each choice's finish reason, one with the usage when asked, then
  // `data: [DONE]`. A client that leaves cancels the request within kStreamPoll.
  void Stream(httplib::Response& response, const Completion& completion, bool include_usage,
              std::shared_ptr<CompletionOutput> output, std::shared_ptr<GenerationTicket> ticket) {
    response.set_header("Cache-Control", "no-cache");
    response.set_header("X-Accel-Buffering", "no");  // a proxy passes events on at once
    auto totals = std::make_shared<Totals>();
    response.set_chunked_content_provider(
        "text/event-stream",
        [this, completion, include_usage, output, ticket, totals](size_t, httplib::DataSink& out) {
          auto event = [&out](const Json& data) {
            const std::string line = "data: " + Dump(data) + "\n\n";
            return out.write(line.data(), line.size());
          };
          const std::vector<CompletionOutput::Piece> pieces = output->Next(kStreamPoll);
          bool written = out.is_writable();
          for (const CompletionOutput::Piece& piece : pieces) {
            if (written && (!piece.text.empty() || !piece.logprobs.is_null())) {
              written = event(Chunk(completion, piece.index, piece.text, nullptr, piece.logprobs));
            }
            if (!piece.finished) continue;
            totals->Add(piece);
            if (written && piece.reason != FinishReason::kError) {
              written = event(Chunk(completion, piece.index, "", FinishReasonJson(piece.reason)));
            }
          }
          if (!written) {
            ticket->Cancel();
            return false;
          }
          if (!output->finished()) return true;
          metrics_.CountRequest(totals->error.ok() ? "OK" : "INTERNAL");
          if (!totals->error.ok()) {
            event(ErrorJson(totals->error));
          } else if (include_usage) {
            Json usage = Chunk(completion, 0, "", nullptr);
            usage["choices"] = Json::array();
            usage["usage"] = UsageJson(totals->usage);
            event(usage);
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
