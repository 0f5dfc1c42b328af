#include "server/recur_service_impl.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "grpcpp/support/status_code_enum.h"
#include "server/sample_fan_out.h"

// In a unary handler: the value of a StatusOr, or the reply with its error.
#define RECUR_ASSIGN_OR_REPLY(lhs, expr)                              \
  auto RECUR_CONCAT_(caller_, __LINE__) = (expr);                     \
  if (!RECUR_CONCAT_(caller_, __LINE__).ok())                         \
    return Reply(context, RECUR_CONCAT_(caller_, __LINE__).status()); \
  lhs = *std::move(RECUR_CONCAT_(caller_, __LINE__))

namespace recur {

namespace {

// The name a finished RPC is counted under, e.g. "OK", "NOT_FOUND".
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kEndOfSequence:
      return v1::FINISH_REASON_END_OF_SEQUENCE;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kShutdown:
      return v1::FINISH_REASON_SHUTDOWN;
    case FinishReason::kContextFull:
      return v1::FINISH_REASON_CONTEXT_FULL;
    case FinishReason::kError:
      return v1::FINISH_REASON_UNSPECIFIED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const SessionInfo& info, v1::Session* session) {
  session->set_session_id(info.id);
  session->set_tokens(info.tokens);
  session->set_state_bytes(info.state_bytes);
  session->set_last_used_unix_seconds(absl::ToDoubleSeconds(info.last_used - absl::UnixEpoch()));
  session->set_busy(info.busy);
}

GenerationRequest FromProto(const v1::GenerateRequest& message) {
  GenerationRequest request;
  request.prompt = message.prompt();
  request.session_id = message.session_id();
  if (message.has_max_tokens()) {
    request.max_tokens = message.max_tokens();  // an explicit 0 is an error, not "default"
  }
  const auto& sampling = message.sampling();
  if (sampling.has_temperature()) request.sampling.temperature = sampling.temperature();
  request.sampling.top_k = sampling.top_k();
  if (sampling.has_top_p()) request.sampling.top_p = sampling.top_p();
  if (sampling.has_repetition_penalty())
    request.sampling.repetition_penalty = sampling.repetition_penalty();
  request.sampling.seed = sampling.seed();
  request.stop.assign(message.stop().begin(), message.stop().end());
  if (message.has_logprobs()) request.logprobs = message.logprobs();
  if (message.has_prompt_logprobs()) request.prompt_logprobs = message.prompt_logprobs();
  request.samples = message.n() == 0 ? 1 : message.n();
  return request;
}

// One Generate stream. The engine pushes messages from its thread, one SampleSink per sample;
// the reactor writes them one at a time (gRPC allows one write in flight) and finishes the RPC
// after every sample's last. A write that follows a quiet stream starts on the write thread, one
// that follows a finished write starts in gRPC's completion (OnWriteDone): never on the engine's
// thread. The reactor is deleted by gRPC in OnDone; the engine may still hold the sinks, so the
// stream is a separate object.
class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  class Stream : public std::enable_shared_from_this<Stream> {
   public:
    // `writer` outlives every stream: the service owns it, and gRPC finishes every call before
    // the service goes.
    Stream(GenerateReactor* reactor, WriteThread& writer, int samples)
        : reactor_(reactor), writer_(writer), samples_left_(samples) {}

    // Queues `message`; `finished` with a sample's last message and how that sample ended. The
    // call's status is the first failure among the samples, once all have finished.
    void Push(v1::GenerateResponse message, std::optional<grpc::Status> finished) {
      absl::MutexLock lock(&mu_);
      // While a write is in flight or about to start, a sample's text messages queue up merged
      // into one: a slow client gets fewer, larger messages instead of an ever longer queue.
      if (!pending_.empty() && !finished && (writing_ || pump_scheduled_) &&
          pending_.back().finish_reason() == v1::FINISH_REASON_UNSPECIFIED &&
          pending_.back().index() == message.index()) {
        Merge(std::move(message), pending_.back());
      } else {
        pending_.push_back(std::move(message));
      }
      if (finished) {
        if (status_.ok() && !finished->ok()) status_ = *finished;
        if (--samples_left_ == 0) final_status_ = status_;
      }
      // A write in flight pumps again when it completes; otherwise the write thread starts one.
      if (reactor_ == nullptr || writing_ || finished_ || pump_scheduled_) return;
      pump_scheduled_ = true;
      writer_.Schedule([self = shared_from_this()] { self->Pump(); });
    }

    // The write in flight finished; `ok` false means the stream is broken (the client left).
    void WriteDone(bool ok) {
      {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        if (!ok) broken_ = true;
      }
      Pump();
    }

    void Detach() {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
    }

   private:
    static void Merge(v1::GenerateResponse message, v1::GenerateResponse& into) {
      into.mutable_text()->append(message.text());
      for (int64_t id : message.token_ids()) into.add_token_ids(id);
      for (auto& logprobs : *message.mutable_logprobs()) *into.add_logprobs() = std::move(logprobs);
      for (auto& logprobs : *message.mutable_prompt_logprobs())
        *into.add_prompt_logprobs() = std::move(logprobs);
    }

    // Starts the next write, or finishes the RPC after the last; at most one of either at a time.
    void Pump() {
      GenerateReactor* reactor = nullptr;
      const v1::GenerateResponse* next = nullptr;
      std::optional<grpc::Status> finish;
      {
        absl::MutexLock lock(&mu_);
        pump_scheduled_ = false;
        if (reactor_ == nullptr || writing_ || finished_) return;
        const bool cancelled = final_status_ && final_status_->error_code() == grpc::CANCELLED;
        if (!broken_ && !cancelled && !pending_.empty()) {
          current_ = std::move(pending_.front());
          pending_.pop_front();
          writing_ = true;
          next = &current_;
        } else if (final_status_ && (broken_ || cancelled || pending_.empty())) {
          finished_ = true;
          finish = *final_status_;
        } else {
          return;  // nothing to write yet, or a broken stream waiting for the engine's final
                   // message
        }
        reactor = reactor_;
      }
      if (next != nullptr) {
        reactor->StartWrite(next);
      } else {
        reactor->Done(*finish);
      }
    }

    absl::Mutex mu_;
    GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_);
    WriteThread& writer_;
    bool pump_scheduled_ ABSL_GUARDED_BY(mu_) = false;  // a Pump is queued on the write thread
    std::deque<v1::GenerateResponse> pending_ ABSL_GUARDED_BY(mu_);
    v1::GenerateResponse current_;  // the message being written
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool broken_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    int samples_left_ ABSL_GUARDED_BY(mu_);
    grpc::Status status_ ABSL_GUARDED_BY(mu_);  // the first sample's failure, or OK
    std::optional<grpc::Status> final_status_ ABSL_GUARDED_BY(mu_);
  };

  // One sample's output as messages naming it (GenerateResponse.index).
  class SampleSink : public GenerationSink {
   public:
    SampleSink(std::shared_ptr<Stream> stream, const Tokenizer& tokenizer, int index)
        : stream_(std::move(stream)), tokenizer_(tokenizer), index_(index) {}

    void OnText(std::string text, std::vector<int64_t> token_ids) override {
      v1::GenerateResponse message = Message();
      message.set_text(std::move(text));
      for (int64_t id : token_ids) message.add_token_ids(id);
      if (logprobs_.has_value()) *message.add_logprobs() = *std::exchange(logprobs_, std::nullopt);
      stream_->Push(std::move(message), std::nullopt);
    }

    void OnLogprobs(const StepLogprobs& logprobs) override {
      logprobs_.emplace();
      Fill(logprobs, &*logprobs_);
    }

    void OnPromptLogprobs(const std::vector<StepLogprobs>& logprobs, int64_t previous) override {
      v1::GenerateResponse message = Message();
      previous_ = previous;
      for (const StepLogprobs& step : logprobs) Fill(step, message.add_prompt_logprobs());
      stream_->Push(std::move(message), std::nullopt);
    }

    void OnFinish(FinishReason reason, const GenerationUsage& usage,
                  const absl::Status& error) override {
      v1::GenerateResponse message = Message();
      message.set_finish_reason(ToProto(reason));
      auto* u = message.mutable_usage();
      u->set_prompt_tokens(usage.prompt_tokens);
      u->set_generated_tokens(usage.generated_tokens);
      u->set_time_to_first_token_seconds(usage.time_to_first_token_seconds);
      u->set_duration_seconds(usage.duration_seconds);
      u->set_cached_prompt_tokens(usage.cached_prompt_tokens);
      grpc::Status status = grpc::Status::OK;
      if (reason == FinishReason::kCancelled)
        status = grpc::Status(grpc::CANCELLED, "the request was cancelled");
      if (reason == FinishReason::kError) status = ToGrpcStatus(error);
      stream_->Push(std::move(message), status);
    }

   private:
    v1::GenerateResponse Message() const {
      v1::GenerateResponse message;
      message.set_index(index_);
      return message;
    }

    void Fill(const TokenLogprob& token, v1::TokenLogprob* out) const {
      out->set_token_id(token.token);
      out->set_logprob(token.logprob);
      out->set_text(tokenizer_.Piece(token.token, previous_));
    }

    // One position's logprobs, their pieces read after previous_; the chosen token becomes the
    // previous one for the next position.
    void Fill(const StepLogprobs& step, v1::TokenLogprobs* out) {
      Fill(step.chosen, out->mutable_chosen());
      for (const TokenLogprob& top : step.top) Fill(top, out->add_top());
      previous_ = step.chosen.token;
    }

    const std::shared_ptr<Stream> stream_;
    const Tokenizer& tokenizer_;
    const int index_;
    // Engine thread only: the logprobs of the token the next OnText carries, and the token before.
    std::optional<v1::TokenLogprobs> logprobs_;
    int64_t previous_ = -1;
  };

  // `tenant`: the caller's, or why it was not authenticated.
  GenerateReactor(grpc::CallbackServerContext* context, Engine& engine, Metrics& metrics,
                  WriteThread& writer, const v1::GenerateRequest& message,
                  absl::StatusOr<std::string> tenant)
      : context_(context),
        metrics_(metrics),
        stream_(std::make_shared<Stream>(this, writer, std::max(message.n(), 1))) {
    if (!tenant.ok()) {
      Done(ToGrpcStatus(tenant.status()));
      return;
    }
    GenerationRequest request = FromProto(message);
    request.tenant = *std::move(tenant);
    // An n out of range is refused by SubmitSamples before it looks at the sinks.
    std::vector<std::shared_ptr<GenerationSink>> sinks;
    for (int i = 0; i < std::clamp(request.samples, 1, kMaxSamples); ++i) {
      sinks.push_back(std::make_shared<SampleSink>(stream_, engine.tokenizer(), i));
    }
    auto ticket = SubmitSamples(engine, std::move(request), std::move(sinks));
    if (!ticket.ok()) {
      Done(ToGrpcStatus(ticket.status()));
      return;
    }
    ticket_ = *std::move(ticket);
  }

  void OnWriteDone(bool ok) override {
    // A failed write means the client is gone: stop generating for it.
    if (!ok && ticket_ != nullptr) ticket_->Cancel();
    stream_->WriteDone(ok);
  }
  void OnCancel() override {
    if (ticket_ != nullptr) ticket_->Cancel();
  }
  void OnDone() override {
    stream_->Detach();
    delete this;
  }

 private:
  void Done(grpc::Status status) {
    // gRPC cancels a call whose deadline passed; the client sees DEADLINE_EXCEEDED, and so do the
    // metrics. gRPC's timer runs on its own clock, which can fire a little before the system
    // clock reaches the deadline: a cancellation that close to it is the deadline's.
    constexpr auto kClockSkew = std::chrono::milliseconds(100);
    if (status.error_code() == grpc::StatusCode::CANCELLED &&
        context_->deadline() <= std::chrono::system_clock::now() + kClockSkew) {
      status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the deadline passed");
    }
    metrics_.CountRequest(CodeName(status.error_code()));
    Finish(status);
  }

  grpc::CallbackServerContext* const context_;
  Metrics& metrics_;
  std::shared_ptr<Stream> stream_;
  std::shared_ptr<GenerationTicket> ticket_;
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* RecurServiceImpl::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(context, engine_, metrics_, writer_, *request, Caller(*context));
}

absl::StatusOr<std::string> RecurServiceImpl::Caller(
    const grpc::CallbackServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  const absl::string_view header = it == metadata.end()
                                       ? absl::string_view()
                                       : absl::string_view(it->second.data(), it->second.size());
  return authenticator_.Authenticate(header);
}

grpc::ServerUnaryReactor* RecurServiceImpl::Reply(grpc::CallbackServerContext* context,
                                                  const absl::Status& status) {
  auto grpc_status = ToGrpcStatus(status);
  metrics_.CountRequest(CodeName(grpc_status.error_code()));
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc_status);
  return reactor;
}

grpc::ServerUnaryReactor* RecurServiceImpl::CreateSession(grpc::CallbackServerContext* context,
                                                          const v1::CreateSessionRequest* request,
                                                          v1::Session* response) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  auto info = engine_.CreateSession(tenant, request->session_id());
  if (info.ok()) ToProto(*info, response);
  return Reply(context, info.status());
}

grpc::ServerUnaryReactor* RecurServiceImpl::GetSession(grpc::CallbackServerContext* context,
                                                       const v1::GetSessionRequest* request,
                                                       v1::Session* response) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  auto info = engine_.GetSession(request->session_id(), tenant);
  if (info.ok()) ToProto(*info, response);
  return Reply(context, info.status());
}

grpc::ServerUnaryReactor* RecurServiceImpl::CloseSession(grpc::CallbackServerContext* context,
                                                         const v1::CloseSessionRequest* request,
                                                         v1::CloseSessionResponse*) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  return Reply(context, engine_.CloseSession(request->session_id(), tenant));
}

grpc::ServerUnaryReactor* RecurServiceImpl::ForkSession(grpc::CallbackServerContext* context,
                                                        const v1::ForkSessionRequest* request,
                                                        v1::Session* response) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  auto info = engine_.ForkSession(request->session_id(), tenant);
  if (info.ok()) ToProto(*info, response);
  return Reply(context, info.status());
}

grpc::ServerUnaryReactor* RecurServiceImpl::ExportSession(grpc::CallbackServerContext* context,
                                                          const v1::ExportSessionRequest* request,
                                                          v1::ExportSessionResponse* response) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  auto bytes = engine_.ExportSession(request->session_id(), tenant);
  if (bytes.ok()) response->set_state(*std::move(bytes));
  return Reply(context, bytes.status());
}

grpc::ServerUnaryReactor* RecurServiceImpl::ImportSession(grpc::CallbackServerContext* context,
                                                          const v1::ImportSessionRequest* request,
                                                          v1::Session* response) {
  RECUR_ASSIGN_OR_REPLY(const std::string tenant, Caller(*context));
  auto info = engine_.ImportSession(request->state(), tenant, request->session_id());
  if (info.ok()) ToProto(*info, response);
  return Reply(context, info.status());
}

grpc::ServerUnaryReactor* RecurServiceImpl::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest*,
                                                         v1::ModelInfo* response) {
  if (auto caller = Caller(*context); !caller.ok()) return Reply(context, caller.status());
  const EngineInfo info = engine_.Info();
  response->set_attention(std::string(AttentionKindName(info.config.attention)));
  response->set_vocab_size(info.config.vocab_size);
  response->set_tokenizer(info.tokenizer_kind);
  response->set_d_model(info.config.d_model);
  response->set_num_layers(info.config.num_layers);
  response->set_num_heads(info.config.num_heads);
  response->set_d_ff(info.config.d_ff);
  response->set_parameters(info.parameters);
  response->set_state_bytes_per_session(info.state_bytes_per_session);
  response->set_kv_cache_bytes_per_token(info.kv_cache_bytes_per_token);
  response->set_max_sessions(info.max_sessions);
  response->set_sessions_in_use(info.sessions_in_use);
  response->set_sessions_free(info.max_sessions - info.sessions_in_use);
  response->set_state_bytes_in_use(info.state_bytes_in_use);
  response->set_device(info.device);
  response->set_config_json(info.config.ToJson());
  response->set_max_tokens(info.max_tokens);
  response->set_max_prompt_tokens(info.max_prompt_tokens);
  response->set_max_context_tokens(info.max_context_tokens);
  response->set_kv_cache_budget_bytes(info.kv_cache_budget_bytes);
  response->set_kv_cache_bytes_in_use(info.kv_cache_bytes_in_use);
  response->set_weights(info.weights);
  response->set_prefix_cache_capacity_bytes(info.prefix_cache_capacity_bytes);
  return Reply(context, absl::OkStatus());
}

}  // namespace recur
