#include "server/engine.h"

#include <algorithm>
#include <utility>

#include <torch/torch.h>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "model/utf8.h"
#include "server/session_codec.h"
#include "server/text_stream.h"

namespace recur {

// A state slot that outlives requests (or, `temporary`, lives for one request).
struct Engine::Session {
  std::string id;
  SessionState state;            // engine thread while busy; under mu_ otherwise
  std::vector<bool> seen_mask;   // mirrors state.seen
  absl::Time last_used;
  bool busy = false;             // guarded by mu_
  bool temporary = false;
  int64_t state_bytes = 0;       // guarded by mu_; as of the last request
  int64_t tokens = 0;            // guarded by mu_; as of the last request

  void See(int64_t token) {
    if (!seen_mask[token]) {
      seen_mask[token] = true;
      state.seen.push_back(token);
    }
  }
};

struct Engine::Request {
  GenerationRequest params;
  std::shared_ptr<GenerationSink> sink;
  std::shared_ptr<GenerationTicket> ticket;
  std::shared_ptr<Session> session;  // set once admitted (one-off requests get a temporary one)
  std::vector<int64_t> prompt;       // the encoded prompt
  std::vector<int64_t> feed;         // the session's pending tokens, then the prompt
  size_t fed = 0;                    // of `feed`, in the state
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> text;
  int64_t max_tokens = 0;
  int64_t generated = 0;
  int64_t next_token = -1;  // sampled and sent, not yet fed
  absl::Time arrived, first_token, last_token;
  bool decoding = false;    // prefill done; a row of the batch
  bool done = false;
  FinishReason reason = FinishReason::kLength;
  absl::Status error;
};

namespace {

std::string NewSessionId() {
  absl::BitGen gen;
  return absl::StrFormat("s-%016x%016x", absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen));
}

}  // namespace

Engine::Engine(Checkpoint checkpoint, EngineOptions options, Metrics* metrics)
    : checkpoint_(std::move(checkpoint)), options_(std::move(options)), metrics_(metrics) {
  checkpoint_.model->to(options_.device);
  checkpoint_.model->eval();
  state_bytes_per_session_ =
      checkpoint_.config.attention == AttentionKind::kLinear ? checkpoint_.config.StateBytesPerSequence() : 0;
  last_ttl_sweep_ = absl::Now();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

// ---------------------------------------------------------------------------------------------
// Requests

absl::StatusOr<std::shared_ptr<GenerationTicket>> Engine::Submit(GenerationRequest params,
                                                                  std::shared_ptr<GenerationSink> sink) {
  auto request = std::make_unique<Request>();
  request->arrived = absl::Now();
  request->max_tokens = params.max_tokens == 0 ? options_.default_max_tokens : params.max_tokens;
  if (request->max_tokens < 1 || request->max_tokens > options_.max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be in [1, ", options_.max_tokens, "], got ", params.max_tokens));
  }
  if (auto status = params.sampling.Validate(); !status.ok()) return status;
  if (!IsValidUtf8(params.prompt)) return absl::InvalidArgumentError("prompt is not valid UTF-8");
  for (const auto& stop : params.stop) {
    if (!IsValidUtf8(stop)) return absl::InvalidArgumentError("a stop sequence is not valid UTF-8");
  }
  if (params.prompt.empty() && params.session_id.empty()) {
    return absl::InvalidArgumentError("prompt is empty and no session is given: nothing to continue from");
  }
  request->prompt = checkpoint_.tokenizer->Encode(params.prompt);
  if (static_cast<int64_t>(request->prompt.size()) > options_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is ", request->prompt.size(),
                                                   " tokens, over the limit of ", options_.max_prompt_tokens));
  }
  request->ticket = std::make_shared<GenerationTicket>();
  request->sink = std::move(sink);
  request->params = std::move(params);
  auto ticket = request->ticket;

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", options_.max_queue, " requests waiting)"));
  }
  if (!request->params.session_id.empty()) {
    auto session = FindIdle(request->params.session_id);
    if (!session.ok()) return session.status();
    if (request->prompt.empty() && (*session)->tokens == 0) {
      return absl::InvalidArgumentError("prompt is empty and the session has no text yet");
    }
    (*session)->busy = true;
    request->session = *std::move(session);
  }
  queue_.push_back(std::move(request));
  UpdateGauges();
  return ticket;
}

void Engine::Loop() {
  torch::NoGradGuard no_grad;
  auto woken = +[](std::pair<Engine*, size_t>* arg) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return arg->first->stopping_ || arg->first->queue_.size() != arg->second;
  };
  while (true) {
    const bool working = Iterate();
    absl::MutexLock lock(&mu_);
    if (stopping_ && running_.empty() && queue_.empty()) break;
    if (!working) {
      // Idle: sleep until a request arrives; wake now and then to close idle sessions and to
      // notice queued requests that were cancelled or can now get a slot.
      std::pair<Engine*, size_t> arg(this, queue_.size());
      mu_.AwaitWithTimeout(absl::Condition(woken, &arg), absl::Milliseconds(50));
    }
  }
}

bool Engine::Iterate() {
  Admit();
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  for (auto& request : running_) {
    if (!request->done && (stopping || request->ticket->cancelled())) Finish(*request, FinishReason::kCancelled);
  }
  LeaveBatch();
  // Prompt tokens first, up to prefill_chunk, then one decode step for everyone already decoding.
  // The oldest prompt's next slice runs together with every other prompt whose remaining length
  // is the same (a burst of similar requests starts in one batched Prefill). While streams are
  // decoding, one such slice runs per step, so a long prompt delays them by one slice, never by
  // its length; with nobody decoding, slices run until the budget is spent.
  std::vector<Request*> joining;
  int64_t budget = options_.prefill_chunk;
  const bool streams_waiting = !batch_.empty();
  auto remaining = [](const Request& r) { return static_cast<int64_t>(r.feed.size() - r.fed); };
  while (budget > 0) {
    std::vector<Request*> group;
    int64_t n = 0;
    for (auto& request : running_) {
      if (request->done || request->decoding) continue;
      if (group.empty()) {
        n = std::min(budget, remaining(*request));
        group.push_back(request.get());
      } else if (remaining(*request) == n && static_cast<int64_t>(group.size() + 1) * n <= budget) {
        group.push_back(request.get());
      }
    }
    if (group.empty()) break;
    try {
      PrefillSlice(group, n);
    } catch (const std::exception& e) {
      for (Request* request : group) Fail(*request, e);
      break;
    }
    budget -= n * static_cast<int64_t>(group.size());
    for (Request* request : group) {
      if (request->decoding) joining.push_back(request);
    }
    if (streams_waiting) break;
  }
  if (!batch_.empty()) {
    try {
      DecodeStep();
    } catch (const std::exception& e) {
      // The batch's state is unknown now: every row in it fails.
      for (Request* request : batch_) Fail(*request, e);
      batch_.clear();
      batch_state_ = ModelState();
    }
  }
  LeaveBatch();
  JoinBatch(std::move(joining));
  Retire();
  if (absl::Now() - last_ttl_sweep_ > absl::Seconds(1)) CloseIdleSessions();
  return !running_.empty();
}

void Engine::Admit() {
  std::vector<std::unique_ptr<Request>> admitted, refused;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      Request& request = **it;
      if (stopping_ || request.ticket->cancelled()) {
        refused.push_back(std::move(*it));
        it = queue_.erase(it);
        continue;
      }
      if (request.session == nullptr) {
        if (!HasFreeSlot()) {
          ++it;  // waits for a slot; requests on existing sessions may still pass it
          continue;
        }
        auto session = std::make_shared<Session>();
        session->temporary = true;
        session->busy = true;
        ++temporary_slots_;
        request.session = std::move(session);
      }
      admitted.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    running_count_ += admitted.size();
    UpdateGauges();
  }
  for (auto& request : refused) {
    // Never admitted: nothing was fed, the session (if any) is as it was.
    const bool temporary = request->session == nullptr;
    if (!temporary) {
      absl::MutexLock lock(&mu_);
      request->session->busy = false;
    }
    request->sink->OnFinish(FinishReason::kCancelled,
                            {static_cast<int64_t>(request->prompt.size()), 0, 0,
                             absl::ToDoubleSeconds(absl::Now() - request->arrived)},
                            absl::OkStatus());
  }
  for (auto& request : admitted) {
    Session& session = *request->session;
    if (session.temporary) {
      session.state.model = checkpoint_.model->NewState(1, options_.device);
      session.seen_mask.assign(checkpoint_.config.vocab_size, false);
    }
    request->feed = std::move(session.state.pending);
    session.state.pending.clear();
    request->feed.insert(request->feed.end(), request->prompt.begin(), request->prompt.end());
    for (int64_t token : request->prompt) session.See(token);
    const int64_t previous = request->feed.empty() ? -1 : request->feed.back();
    request->text = std::make_unique<TextStream>(*checkpoint_.tokenizer, request->params.stop, previous);
    request->sampler = std::make_unique<Sampler>(request->params.sampling);
    if (metrics_ != nullptr) metrics_->prompt_tokens.Increment(static_cast<double>(request->prompt.size()));
    running_.push_back(std::move(request));
  }
}

void Engine::PrefillSlice(const std::vector<Request*>& group, int64_t n) {
  std::vector<int64_t> slices;
  for (const Request* request : group) {
    slices.insert(slices.end(), request->feed.begin() + request->fed, request->feed.begin() + request->fed + n);
  }
  const int64_t rows = static_cast<int64_t>(group.size());
  auto tokens = torch::tensor(slices, torch::TensorOptions().dtype(torch::kInt64)).view({rows, n}).to(options_.device);
  torch::Tensor logits;
  if (rows == 1) {
    logits = checkpoint_.model->Prefill(tokens, &group[0]->session->state.model);
  } else {
    std::vector<const ModelState*> states;
    for (const Request* request : group) states.push_back(&request->session->state.model);
    ModelState batch = ConcatStates(states);
    logits = checkpoint_.model->Prefill(tokens, &batch);
    for (int64_t i = 0; i < rows; ++i) group[i]->session->state.model = SelectRows(batch, {i});
  }
  logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  for (int64_t i = 0; i < rows; ++i) {
    Request& request = *group[i];
    request.fed += n;
    request.session->state.consumed += n;
    // Once the whole prompt is in, the first token comes from the last position's logits.
    if (request.fed == request.feed.size() && Emit(request, logits.data_ptr<float>() + i * logits.size(1))) {
      request.decoding = true;
    }
  }
}

void Engine::DecodeStep() {
  std::vector<int64_t> next;
  next.reserve(batch_.size());
  for (Request* request : batch_) next.push_back(request->next_token);
  auto tokens = torch::tensor(next, torch::TensorOptions().dtype(torch::kInt64)).to(options_.device);
  auto logits = checkpoint_.model->Step(tokens, &batch_state_).to(torch::kCPU, torch::kFloat32).contiguous();
  if (metrics_ != nullptr) metrics_->batch_size.Observe(static_cast<double>(batch_.size()));
  const int64_t vocab = logits.size(1);
  const float* data = logits.data_ptr<float>();
  for (size_t i = 0; i < batch_.size(); ++i) {
    batch_[i]->session->state.consumed += 1;
    Emit(*batch_[i], data + i * vocab);
  }
}

bool Engine::Emit(Request& request, const float* logits) {
  Session& session = *request.session;
  const int64_t vocab = checkpoint_.config.vocab_size;
  const int64_t token =
      request.sampler->Sample({logits, static_cast<size_t>(vocab)}, session.state.seen);
  const absl::Time now = absl::Now();
  if (request.generated == 0) {
    request.first_token = now;
    if (metrics_ != nullptr) metrics_->time_to_first_token.Observe(absl::ToDoubleSeconds(now - request.arrived));
  } else if (metrics_ != nullptr) {
    metrics_->inter_token_latency.Observe(absl::ToDoubleSeconds(now - request.last_token));
  }
  if (metrics_ != nullptr) metrics_->generated_tokens.Increment();
  request.last_token = now;
  request.generated += 1;
  request.next_token = token;
  session.See(token);

  // A byte-level model's <eos> ends a document; a word-level model's marks a line end, which is text.
  if (token == checkpoint_.tokenizer->eos_id() && checkpoint_.tokenizer->kind() == "byte") {
    request.sink->OnText("", {token});
    Finish(request, FinishReason::kEndOfSequence);
    return false;
  }
  auto out = request.text->Push(token);
  request.sink->OnText(std::move(out.text), {token});
  if (out.stopped) {
    Finish(request, FinishReason::kStop);
  } else if (request.generated >= request.max_tokens) {
    Finish(request, FinishReason::kLength);
  }
  return !request.done;
}

void Engine::Finish(Request& request, FinishReason reason) {
  request.done = true;
  request.reason = reason;
  if (reason != FinishReason::kStop && reason != FinishReason::kCancelled && request.text != nullptr) {
    if (std::string rest = request.text->Finish(); !rest.empty()) request.sink->OnText(std::move(rest), {});
  }
}

void Engine::Fail(Request& request, const std::exception& e) {
  // LibTorch's errors carry a long backtrace; the message alone is what a client can use.
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string what = torch_error != nullptr ? torch_error->what_without_backtrace() : e.what();
  LOG(ERROR) << "generation failed: " << what;
  request.done = true;
  request.reason = FinishReason::kError;
  request.error = absl::InternalError(absl::StrCat("the model failed: ", what));
}

void Engine::JoinBatch(std::vector<Request*> joining) {
  if (joining.empty()) return;
  std::vector<const ModelState*> states;
  if (!batch_.empty()) states.push_back(&batch_state_);
  for (Request* request : joining) states.push_back(&request->session->state.model);
  batch_state_ = ConcatStates(states);
  for (Request* request : joining) {
    request->session->state.model = ModelState();  // the batch holds it now
    batch_.push_back(request);
  }
}

void Engine::LeaveBatch() {
  std::vector<int64_t> keep;
  std::vector<Request*> staying;
  for (size_t i = 0; i < batch_.size(); ++i) {
    Request* request = batch_[i];
    if (!request->done) {
      keep.push_back(static_cast<int64_t>(i));
      staying.push_back(request);
      continue;
    }
    request->session->state.model = SelectRows(batch_state_, {static_cast<int64_t>(i)});
  }
  if (staying.size() == batch_.size()) return;
  batch_state_ = staying.empty() ? ModelState() : SelectRows(batch_state_, keep);
  batch_ = std::move(staying);
}

void Engine::Retire() {
  std::vector<std::unique_ptr<Request>> finished;
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->done) {
      finished.push_back(std::move(*it));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  if (finished.empty()) return;
  const absl::Time now = absl::Now();
  for (auto& request : finished) {
    Session& session = *request->session;
    // What the model has not been fed yet: the last sampled token, or the rest of a prompt.
    session.state.pending.clear();
    if (request->generated > 0) {
      session.state.pending.push_back(request->next_token);
    } else {
      session.state.pending.assign(request->feed.begin() + request->fed, request->feed.end());
    }
  }
  {
    // Release the slots before telling the clients, so a client that continues a session as soon
    // as its stream ends finds the session free.
    absl::MutexLock lock(&mu_);
    for (auto& request : finished) {
      Session& session = *request->session;
      session.busy = false;
      session.last_used = now;
      session.tokens = session.state.tokens();
      session.state_bytes = session.state.model.Bytes();
      if (session.temporary) --temporary_slots_;
      if (request->reason == FinishReason::kError && !session.temporary) sessions_.erase(session.id);
    }
    running_count_ -= finished.size();
    UpdateGauges();
  }
  for (auto& request : finished) {
    GenerationUsage usage;
    usage.prompt_tokens = static_cast<int64_t>(request->prompt.size());
    usage.generated_tokens = request->generated;
    usage.time_to_first_token_seconds =
        request->generated > 0 ? absl::ToDoubleSeconds(request->first_token - request->arrived) : 0;
    usage.duration_seconds = absl::ToDoubleSeconds(now - request->arrived);
    if (metrics_ != nullptr) metrics_->request_duration.Observe(usage.duration_seconds);
    request->sink->OnFinish(request->reason, usage, request->error);
  }
}

void Engine::CloseIdleSessions() {
  last_ttl_sweep_ = absl::Now();
  absl::MutexLock lock(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto current = it++;
    const Session& session = *current->second;
    if (!session.busy && last_ttl_sweep_ - session.last_used > options_.session_ttl) {
      LOG(INFO) << "closing session " << session.id << ", idle for "
                << absl::FormatDuration(last_ttl_sweep_ - session.last_used);
      sessions_.erase(current);
    }
  }
  UpdateGauges();
}

void Engine::UpdateGauges() {
  if (metrics_ == nullptr) return;
  metrics_->active_sessions.Set(static_cast<double>(sessions_.size() + temporary_slots_));
  metrics_->running_requests.Set(static_cast<double>(running_count_));
  metrics_->queued_requests.Set(static_cast<double>(queue_.size()));
  metrics_->state_bytes.Set(static_cast<double>(StateBytesInUse()));
}

int64_t Engine::StateBytesInUse() const {
  // Linear attention: every slot costs the same. Softmax: the sessions' caches as of their last
  // request (a running one-off request's cache is not counted until it ends).
  if (state_bytes_per_session_ > 0) {
    return (static_cast<int64_t>(sessions_.size()) + temporary_slots_) * state_bytes_per_session_;
  }
  int64_t bytes = 0;
  for (const auto& [id, session] : sessions_) bytes += session->state_bytes;
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Sessions

bool Engine::HasFreeSlot() const {
  return static_cast<int64_t>(sessions_.size()) + temporary_slots_ < options_.max_sessions;
}

absl::StatusOr<std::shared_ptr<Engine::Session>> Engine::FindIdle(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session '", id, "'"));
  if (it->second->busy) {
    return absl::FailedPreconditionError(absl::StrCat("session '", id, "' has a request in progress"));
  }
  return it->second;
}

std::shared_ptr<Engine::Session> Engine::NewSession(SessionState state) {
  auto session = std::make_shared<Session>();
  session->id = NewSessionId();
  session->seen_mask.assign(checkpoint_.config.vocab_size, false);
  for (int64_t token : state.seen) session->seen_mask[token] = true;
  session->state = std::move(state);
  session->last_used = absl::Now();
  session->tokens = session->state.tokens();
  session->state_bytes = session->state.model.Bytes();
  sessions_.emplace(session->id, session);
  UpdateGauges();
  return session;
}

SessionInfo Engine::Describe(const Session& session) const {
  return {session.id,
          session.tokens,
          state_bytes_per_session_ > 0 ? state_bytes_per_session_ : session.state_bytes,
          session.last_used,
          session.busy};
}

absl::Status Engine::SlotAvailable() const {
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (!HasFreeSlot()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free session slot (", options_.max_sessions, " in use); close a session first"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> Engine::CreateSession() {
  SessionState state;
  state.model = checkpoint_.model->NewState(1, options_.device);
  absl::MutexLock lock(&mu_);
  if (auto status = SlotAvailable(); !status.ok()) return status;
  return Describe(*NewSession(std::move(state)));
}

absl::StatusOr<SessionInfo> Engine::GetSession(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no session '", id, "'"));
  return Describe(*it->second);
}

absl::Status Engine::CloseSession(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto session = FindIdle(id);
  if (!session.ok()) return session.status();
  sessions_.erase(id);
  UpdateGauges();
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> Engine::ForkSession(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto source = FindIdle(id);
  if (!source.ok()) return source.status();
  if (auto status = SlotAvailable(); !status.ok()) return status;
  SessionState copy = (*source)->state;
  copy.model = copy.model.Clone();
  (*source)->last_used = absl::Now();
  return Describe(*NewSession(std::move(copy)));
}

absl::StatusOr<std::string> Engine::ExportSession(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto session = FindIdle(id);
  if (!session.ok()) return session.status();
  (*session)->last_used = absl::Now();
  return EncodeSession((*session)->state, checkpoint_.config);
}

absl::StatusOr<SessionInfo> Engine::ImportSession(const std::string& bytes) {
  auto state = DecodeSession(bytes, checkpoint_.config, options_.device);
  if (!state.ok()) return state.status();
  absl::MutexLock lock(&mu_);
  if (auto status = SlotAvailable(); !status.ok()) return status;
  return Describe(*NewSession(*std::move(state)));
}

EngineInfo Engine::Info() {
  EngineInfo info;
  info.config = checkpoint_.config;
  info.tokenizer_kind = std::string(checkpoint_.tokenizer->kind());
  info.parameters = checkpoint_.model->ParameterCount();
  info.state_bytes_per_session = state_bytes_per_session_;
  info.kv_cache_bytes_per_token =
      checkpoint_.config.attention == AttentionKind::kSoftmax ? checkpoint_.config.KvCacheBytesPerToken() : 0;
  info.max_sessions = options_.max_sessions;
  info.device = options_.device.str();
  info.max_tokens = options_.max_tokens;
  info.max_prompt_tokens = options_.max_prompt_tokens;
  absl::MutexLock lock(&mu_);
  info.sessions_in_use = static_cast<int64_t>(sessions_.size()) + temporary_slots_;
  info.state_bytes_in_use = StateBytesInUse();
  info.running_requests = running_count_;
  info.queued_requests = static_cast<int64_t>(queue_.size());
  return info;
}

}  // namespace recur
