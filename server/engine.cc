#include "server/engine.h"

#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "glog/logging.h"
#include "model/weight_format.h"
#include "server/text_stream.h"

namespace recur {

struct Engine::Request {
  GenerationRequest params;
  std::shared_ptr<GenerationSink> sink;
  std::shared_ptr<GenerationTicket> ticket;
  RequestPhase phase = RequestPhase::kQueued;
  // The session's slot (checked out at Submit), or for a one-off request a slot reserved at
  // admission; returned to the store when the request retires.
  std::optional<SessionStore::Lease> slot;
  std::vector<int64_t> prompt;  // the encoded prompt
  std::vector<int64_t> feed;    // the session's pending tokens, then the prompt
  size_t fed = 0;               // of `feed`, in the state
  // The state started empty, so its prompt prefixes go to the prefix cache; `cached` of the
  // prompt's tokens came from it.
  bool keeps_prefixes = false;
  int64_t cached = 0;
  // With prompt logprobs: those of the prompt fed so far, and the logits after the last slice.
  std::vector<StepLogprobs> prompt_logprobs;
  torch::Tensor prompt_carry;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextStream> text;
  int64_t max_tokens = 0;
  int64_t generated = 0;
  int64_t next_token = -1;  // sampled and sent, not yet fed
  StepLogprobs logprobs;    // of the token just sampled, when the request asks
  absl::Time arrived, first_token, last_token;
  FinishReason reason = FinishReason::kLength;
  absl::Status error;
  bool context_bound = false;  // max_tokens was cut to the context limit
  int64_t kv_reserved_bytes = 0;

  Session& session() { return **slot; }
  // Prompt tokens still to feed: all of `feed`, or but the last for a prefill-only request.
  int64_t unfed() const {
    return static_cast<int64_t>(feed.size()) - (params.prefill_only ? 1 : 0) -
           static_cast<int64_t>(fed);
  }
  bool finished() const { return phase == RequestPhase::kFinished; }
};

namespace {

// Why a one-off request cannot get a slot and will not get one by waiting.
absl::Status SlotsHeldBySessions(int64_t slots) {
  return absl::ResourceExhaustedError(
      absl::StrCat("all ", slots,
                   " slots are held by open sessions: close one (CloseSession), wait for the idle "
                   "TTL, or raise --max_sessions"));
}

}  // namespace

absl::Status EngineOptions::Validate() const {
  if (max_sessions < 1)
    return absl::InvalidArgumentError("the server needs at least one session slot");
  if (max_queue < 0) return absl::InvalidArgumentError("--max_queue must be >= 0");
  if (max_tokens < 1 || default_max_tokens < 1 || default_max_tokens > max_tokens) {
    return absl::InvalidArgumentError(
        "--max_tokens and --default_max_tokens must be >= 1, the default no larger than the cap");
  }
  if (max_context_tokens < 2 || kv_cache_budget_bytes < 1) {
    return absl::InvalidArgumentError(
        "--max_context_tokens must be >= 2 and --kv_cache_memory_mb >= 1");
  }
  if (max_prompt_tokens < 1 || prefill_chunk < 1) {
    return absl::InvalidArgumentError("--max_prompt_tokens and --prefill_chunk must be >= 1");
  }
  if (prefix_cache_bytes < 0 || prefix_cache_interval < 1) {
    return absl::InvalidArgumentError(
        "--prefix_cache_mb must be >= 0 and --prefix_cache_interval >= 1");
  }
  return absl::OkStatus();
}

namespace {

SessionStoreOptions StoreOptions(const EngineOptions& options, const ModelConfig& config) {
  SessionStoreOptions store;
  store.max_slots = options.max_sessions;
  store.idle_ttl = options.session_ttl;
  store.bytes_per_slot = config.SlotBytes();
  return store;
}

}  // namespace

Engine::Engine(Checkpoint checkpoint, EngineOptions options, std::shared_ptr<Metrics> metrics)
    : checkpoint_(std::move(checkpoint)),
      options_(std::move(options)),
      metrics_(std::move(metrics)),
      sessions_(StoreOptions(options_, checkpoint_.config), checkpoint_.config.vocab_size,
                *metrics_),
      sampling_(std::thread::hardware_concurrency() > 1 ? 1 : 0),
      // A softmax state is a key/value cache that grows with the text, budgeted per session: the
      // prefix cache keeps constant-size recurrent states only.
      prefix_cache_(
          checkpoint_.config.attention == AttentionKind::kSoftmax ? 0 : options_.prefix_cache_bytes,
          *metrics_) {
  checkpoint_.model->to(options_.device);
  checkpoint_.model->eval();
  if (checkpoint_.config.attention == AttentionKind::kSoftmax) {
    metrics_->max_context_tokens.Set(static_cast<double>(options_.max_context_tokens));
    metrics_->kv_cache_budget_bytes.Set(static_cast<double>(options_.kv_cache_budget_bytes));
  }
  metrics_->max_queued_requests.Set(static_cast<double>(options_.max_queue));
  metrics_->SetBuildInfo(AttentionKindName(checkpoint_.config.attention), options_.device.str(),
                         WeightFormatName(WeightFormatOf(checkpoint_.model)));
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

std::optional<FinishReason> Engine::Ending() {
  absl::MutexLock lock(&mu_);
  if (stopping_) return FinishReason::kCancelled;
  if (ending_) return FinishReason::kShutdown;
  return std::nullopt;
}

absl::Status Engine::Accepting() {
  absl::MutexLock lock(&mu_);
  if (stopping_ || draining_) return absl::UnavailableError("the server is shutting down");
  return absl::OkStatus();
}

void Engine::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

void Engine::EndRequests() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  ending_ = true;
}

bool Engine::Idle() {
  absl::MutexLock lock(&mu_);
  return running_count_ == 0 && queue_.empty();
}

// ---------------------------------------------------------------------------------------------
// Requests

absl::StatusOr<std::shared_ptr<GenerationTicket>> Engine::Submit(
    GenerationRequest params, std::shared_ptr<GenerationSink> sink,
    std::shared_ptr<GenerationTicket> ticket) {
  auto request = std::make_unique<Request>();
  request->arrived = absl::Now();
  RECUR_ASSIGN_OR_RETURN(
      CheckedRequest checked,
      CheckRequest(params,
                   {options_.max_tokens, options_.default_max_tokens, options_.max_prompt_tokens},
                   *checkpoint_.tokenizer));
  request->prompt = std::move(checked.prompt);
  request->max_tokens = checked.max_tokens;
  if (params.samples != 1) {
    return absl::InvalidArgumentError("n > 1 goes through SubmitSamples (server/sample_fan_out.h)");
  }
  if (ticket == nullptr) ticket = std::make_shared<GenerationTicket>();
  request->ticket = ticket;
  request->sink = std::move(sink);
  request->params = std::move(params);
  if (!request->params.session_id.empty()) ClaimIfSaved(request->params.session_id);

  absl::MutexLock lock(&mu_);
  if (stopping_ || draining_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full (", options_.max_queue, " requests waiting)"));
  }
  if (!request->params.session_id.empty()) {
    auto lease = sessions_.Checkout(request->params.session_id, request->params.tenant);
    if (!lease.ok()) return lease.status();
    if (request->prompt.empty() && (*lease)->state.tokens() == 0) {
      return absl::InvalidArgumentError("prompt is empty and the session has no text yet");
    }
    request->slot = *std::move(lease);
  } else if (sessions_.FullOfSessions()) {
    return SlotsHeldBySessions(sessions_.max_slots());
  }
  RECUR_RETURN_IF_ERROR(ReserveKeyValues(*request));
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
      // Compared with the queue as Admit left it: a request that arrived since wakes it at once.
      std::pair<Engine*, size_t> arg(this, left_queued_);
      mu_.AwaitWithTimeout(absl::Condition(woken, &arg), absl::Milliseconds(50));
    }
  }
}

bool Engine::Iterate() {
  std::vector<Request*> joining = Admit();
  const std::optional<FinishReason> ending = Ending();
  for (auto& request : running_) {
    if (request->finished()) continue;
    if (ending.has_value()) {
      Finish(*request, *ending);
    } else if (request->ticket->cancelled()) {
      Finish(*request, FinishReason::kCancelled);
    }
  }
  LeaveBatch();
  std::vector<SchedulingView> views;
  views.reserve(running_.size());
  for (const auto& request : running_) views.push_back({request->phase, request->unfed()});
  const IterationPlan plan = PlanIteration(views, options_.prefill_chunk);
  for (Request* request : Prefill(plan.prefill)) joining.push_back(request);
  if (plan.decode && !batch_.empty()) {
    try {
      DecodeStep();
    } catch (const std::exception& e) {
      // The batch's state is unknown now: every row in it fails.
      for (Request* request : batch_) Fail(*request, e);
      batch_.clear();
      batch_state_.Clear();
    }
  }
  LeaveBatch();
  JoinBatch(joining);
  Retire();
  if (absl::Now() - last_ttl_sweep_ > absl::Seconds(1)) {
    last_ttl_sweep_ = absl::Now();
    sessions_.CloseIdle(last_ttl_sweep_);
  }
  return !running_.empty();
}

std::vector<Engine::Request*> Engine::Admit() {
  std::vector<std::unique_ptr<Request>> admitted, refused;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      Request& request = **it;
      // Out of the queue, its key/value reservation given back.
      auto refuse = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        kv_reserved_bytes_ -= request.kv_reserved_bytes;
        refused.push_back(std::move(*it));
        it = queue_.erase(it);
      };
      if (stopping_ || ending_ || request.ticket->cancelled()) {
        refuse();
        continue;
      }
      if (!request.slot.has_value()) {
        auto slot = sessions_.Reserve();
        if (!slot.ok() && sessions_.FullOfSessions()) {
          request.error = SlotsHeldBySessions(sessions_.max_slots());  // none will free itself
          refuse();
          continue;
        }
        if (!slot.ok()) {
          ++it;  // waits for a slot; requests on existing sessions may still pass it
          continue;
        }
        request.slot = *std::move(slot);
      }
      request.phase = RequestPhase::kPrefilling;
      admitted.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    running_count_ += admitted.size();
    left_queued_ = queue_.size();
    UpdateGauges();
  }
  for (auto& request : refused) {
    // Never admitted: nothing was fed, the session (if any) goes back as it was.
    request->slot.reset();
    FinishReason reason = request->ticket->cancelled()
                              ? FinishReason::kCancelled
                              : Ending().value_or(FinishReason::kCancelled);
    if (!request->error.ok()) reason = FinishReason::kError;
    request->sink->OnFinish(reason,
                            {static_cast<int64_t>(request->prompt.size()), 0, 0,
                             absl::ToDoubleSeconds(absl::Now() - request->arrived)},
                            request->error);
  }
  std::vector<Request*> decoding;
  for (auto& request : admitted) {
    Start(*request);
    if (request->phase == RequestPhase::kDecoding) decoding.push_back(request.get());
    running_.push_back(std::move(request));
  }
  return decoding;
}

void Engine::Start(Request& request) {
  Session& session = request.session();
  const bool empty = session.state.tokens() == 0;
  if (session.id.empty()) session.state.model = checkpoint_.model->NewState(1, options_.device);
  request.feed = std::move(session.state.pending);
  session.state.pending.clear();
  request.feed.insert(request.feed.end(), request.prompt.begin(), request.prompt.end());
  for (int64_t token : request.prompt) session.state.seen.Insert(token);
  const int64_t previous = request.feed.empty() ? -1 : request.feed.back();
  request.text =
      std::make_unique<TextStream>(*checkpoint_.tokenizer, request.params.stop, previous);
  request.sampler = std::make_unique<Sampler>(request.params.sampling);
  if (empty && prefix_cache_.enabled() && !request.params.prompt_logprobs) StartFromCache(request);
  metrics_->prompt_tokens.Increment(static_cast<double>(request.prompt.size()));
  if (request.params.prefill_only && request.unfed() <= 0) {
    // A one-token prompt: nothing to feed, and its one token has no text before it to score under.
    if (request.params.prompt_logprobs && !request.feed.empty()) {
      request.sink->OnPromptLogprobs({}, request.feed.back());
    }
    Finish(request, FinishReason::kLength);
  }
}

void Engine::StartFromCache(Request& request) {
  request.keeps_prefixes = true;
  absl::Span<const int64_t> prompt(request.feed);
  if (request.params.prefill_only) prompt.remove_suffix(1);  // its last token stays pending
  std::optional<PrefixHit> hit;
  try {
    hit = prefix_cache_.Lookup(request.params.tenant, prompt);
  } catch (const std::exception& e) {
    // Copying the kept state failed (e.g. the device is out of memory): feed the whole prompt.
    LOG(WARNING) << "prefix cache lookup failed: " << e.what();
  }
  if (!hit.has_value()) return;
  SessionState& state = request.session().state;
  state.model = std::move(hit->state);
  state.consumed = hit->tokens;
  request.fed = static_cast<size_t>(hit->tokens);
  request.cached = hit->tokens;
  if (request.unfed() > 0 || request.params.prefill_only) return;
  // The whole prompt was kept, with the logits after it: the first token needs no model call.
  Emit(request, SampleRows({&request}, hit->logits.unsqueeze(0)).front());
  if (!request.finished()) request.phase = RequestPhase::kDecoding;
}

std::vector<Engine::Request*> Engine::Prefill(const std::vector<PrefillGroup>& groups) {
  std::vector<Request*> joining;
  for (const PrefillGroup& group : groups) {
    std::vector<Request*> rows;
    for (size_t i : group.requests) rows.push_back(running_[i].get());
    try {
      PrefillSlice(rows, group.tokens);
    } catch (const std::exception& e) {
      for (Request* request : rows) Fail(*request, e);
      break;
    }
    for (Request* request : rows) {
      if (request->phase == RequestPhase::kDecoding) joining.push_back(request);
    }
  }
  return joining;
}

void Engine::PrefillSlice(const std::vector<Request*>& group, int64_t n) {
  // Prompt logprobs need the logits at every position, not only the last.
  const bool scored = std::any_of(group.begin(), group.end(), [](const Request* request) {
    return request->params.prompt_logprobs.has_value();
  });
  torch::Tensor logits;
  for (int64_t left = n; left > 0;) {
    const int64_t step = UntilCheckpoint(group, left);
    logits = FeedPrompt(group, step, scored);
    if (scored) {
      ScorePrompt(group, logits, step);
      logits = logits.select(1, step - 1).contiguous();
    }
    left -= step;
    for (size_t i = 0; i < group.size(); ++i) {
      group[i]->fed += step;
      group[i]->session().state.consumed += step;
      KeepPrefix(*group[i], logits[static_cast<int64_t>(i)]);
    }
  }
  for (size_t i = 0; i < group.size(); ++i) {
    Request& request = *group[i];
    if (request.unfed() > 0) continue;
    const torch::Tensor last = logits[static_cast<int64_t>(i)];
    if (request.params.prompt_logprobs) {
      if (request.params.prefill_only) {
        // The pending last token is not fed, but the logits before it are here: score it too.
        const absl::Span<const float> row(last.data_ptr<float>(), last.numel());
        request.prompt_logprobs.push_back(
            ComputeLogprobs(row, request.feed.back(), *request.params.prompt_logprobs));
      }
      const size_t first = request.feed.size() - request.prompt_logprobs.size();
      request.sink->OnPromptLogprobs(request.prompt_logprobs,
                                     first > 0 ? request.feed[first - 1] : -1);
    }
    if (request.params.prefill_only) {
      Finish(request, FinishReason::kLength);
      continue;
    }
    // Once the whole prompt is in, the first token comes from the last position's logits.
    Emit(request, SampleRows({&request}, last.unsqueeze(0)).front());
    if (!request.finished()) request.phase = RequestPhase::kDecoding;
  }
}

torch::Tensor Engine::FeedPrompt(const std::vector<Request*>& group, int64_t n,
                                 bool every_position) {
  std::vector<int64_t> slices;
  for (const Request* request : group) {
    slices.insert(slices.end(), request->feed.begin() + request->fed,
                  request->feed.begin() + request->fed + n);
  }
  const int64_t rows = static_cast<int64_t>(group.size());
  auto tokens = torch::tensor(slices, torch::TensorOptions().dtype(torch::kInt64))
                    .view({rows, n})
                    .to(options_.device);
  torch::Tensor logits;
  auto feed = [&](ModelState* state) {
    return every_position ? checkpoint_.model->Continue(tokens, state)
                          : checkpoint_.model->Prefill(tokens, state);
  };
  if (rows == 1) {
    logits = feed(&group[0]->session().state.model);
  } else {
    std::vector<const ModelState*> states;
    for (Request* request : group) states.push_back(&request->session().state.model);
    ModelState batch = ConcatStates(states);
    logits = feed(&batch);
    for (int64_t i = 0; i < rows; ++i) group[i]->session().state.model = SelectRows(batch, {i});
  }
  return logits.to(torch::kCPU, torch::kFloat32).contiguous();
}

void Engine::ScorePrompt(const std::vector<Request*>& group, const torch::Tensor& logits,
                         int64_t n) {
  for (size_t i = 0; i < group.size(); ++i) {
    Request& request = *group[i];
    if (!request.params.prompt_logprobs) continue;
    const torch::Tensor rows = logits[static_cast<int64_t>(i)];  // [n, V]
    const size_t pending = request.feed.size() - request.prompt.size();
    for (int64_t j = 0; j < n; ++j) {
      const size_t t = request.fed + static_cast<size_t>(j);  // the token scored
      // Position j-1's logits predict token j; the first of the slice, the last slice's.
      const torch::Tensor before = j == 0 ? request.prompt_carry : rows[j - 1];
      if (t < pending || !before.defined()) continue;  // a session's pending token; no context
      const absl::Span<const float> row(before.data_ptr<float>(), before.numel());
      request.prompt_logprobs.push_back(
          ComputeLogprobs(row, request.feed[t], *request.params.prompt_logprobs));
    }
    request.prompt_carry = rows[n - 1].clone();
  }
}

int64_t Engine::UntilCheckpoint(const std::vector<Request*>& group, int64_t n) const {
  const int64_t interval = options_.prefix_cache_interval;
  int64_t until = n;
  for (const Request* request : group) {
    if (!request->keeps_prefixes) continue;
    const int64_t fed = static_cast<int64_t>(request->fed);
    until = std::min(until, (fed / interval + 1) * interval - fed);
  }
  return until;
}

void Engine::KeepPrefix(Request& request, const torch::Tensor& logits) {
  if (!request.keeps_prefixes) return;
  const int64_t fed = static_cast<int64_t>(request.fed);
  const bool end = request.unfed() == 0;
  if (!end && fed % options_.prefix_cache_interval != 0) return;
  prefix_cache_.Insert(request.params.tenant, absl::Span<const int64_t>(request.feed.data(), fed),
                       request.session().state.model, end ? logits : torch::Tensor());
}

void Engine::DecodeStep() {
  std::vector<int64_t> next;
  next.reserve(batch_.size());
  for (Request* request : batch_) next.push_back(request->next_token);
  const absl::Time start = absl::Now();
  auto tokens =
      torch::tensor(next, torch::TensorOptions().dtype(torch::kInt64)).to(options_.device);
  auto logits = checkpoint_.model->Step(tokens, &batch_state_.Rows())
                    .to(torch::kCPU, torch::kFloat32)
                    .contiguous();
  batch_state_.Commit();
  const absl::Time stepped = absl::Now();
  metrics_->batch_size.Observe(static_cast<double>(batch_.size()));
  const std::vector<int64_t> sampled = SampleRows(batch_, logits);
  for (size_t i = 0; i < batch_.size(); ++i) {
    batch_[i]->session().state.consumed += 1;
    Emit(*batch_[i], sampled[i]);
  }
  metrics_->decode_model_seconds.Observe(absl::ToDoubleSeconds(stepped - start));
  metrics_->decode_output_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - stepped));
}

std::vector<int64_t> Engine::SampleRows(const std::vector<Request*>& requests,
                                        const torch::Tensor& logits) {
  const int64_t rows = static_cast<int64_t>(requests.size());
  const int64_t vocab = logits.size(1);
  const float* data = logits.data_ptr<float>();
  std::vector<int64_t> tokens(requests.size());
  auto sample = [&](int64_t i) {
    Request& request = *requests[i];
    const absl::Span<const float> row(data + i * vocab, static_cast<size_t>(vocab));
    tokens[i] = request.sampler->Sample(row, request.session().state.seen);
    if (request.params.logprobs) {
      request.logprobs = ComputeLogprobs(row, tokens[i], *request.params.logprobs);
    }
  };
  if (rows * vocab >= options_.parallel_sampling_logits) {
    sampling_.ForEach(rows, sample);
  } else {
    for (int64_t i = 0; i < rows; ++i) sample(i);
  }
  return tokens;
}

void Engine::Emit(Request& request, int64_t token) {
  Session& session = request.session();
  const absl::Time now = absl::Now();
  if (request.generated == 0) {
    request.first_token = now;
    metrics_->time_to_first_token.Observe(absl::ToDoubleSeconds(now - request.arrived));
  } else {
    metrics_->inter_token_latency.Observe(absl::ToDoubleSeconds(now - request.last_token));
  }
  metrics_->generated_tokens.Increment();
  request.last_token = now;
  request.generated += 1;
  request.next_token = token;
  session.state.seen.Insert(token);
  if (request.params.logprobs) request.sink->OnLogprobs(request.logprobs);

  if (checkpoint_.tokenizer->EndsDocument(token)) {
    request.sink->OnText("", {token});
    Finish(request, FinishReason::kEndOfSequence);
    return;
  }
  auto out = request.text->Push(token);
  request.sink->OnText(std::move(out.text), {token});
  if (out.stopped) {
    Finish(request, FinishReason::kStop);
  } else if (request.generated >= request.max_tokens) {
    Finish(request, request.context_bound ? FinishReason::kContextFull : FinishReason::kLength);
  }
}

void Engine::Finish(Request& request, FinishReason reason) {
  request.phase = RequestPhase::kFinished;
  request.reason = reason;
  if (reason != FinishReason::kStop && reason != FinishReason::kCancelled &&
      request.text != nullptr) {
    if (std::string rest = request.text->Finish(); !rest.empty()) {
      request.sink->OnText(std::move(rest), {});
    }
  }
}

void Engine::Fail(Request& request, const std::exception& e) {
  // LibTorch's errors carry a long backtrace; the message alone is what a client can use.
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  const std::string what =
      torch_error != nullptr ? torch_error->what_without_backtrace() : e.what();
  LOG(ERROR) << "generation failed: " << what;
  request.phase = RequestPhase::kFinished;
  request.reason = FinishReason::kError;
  request.error = absl::InternalError(absl::StrCat("the model failed: ", what));
}

void Engine::JoinBatch(const std::vector<Request*>& decoding) {
  // A request that started decoding at admission may have been cancelled since.
  std::vector<Request*> joining;
  for (Request* request : decoding) {
    if (!request->finished()) joining.push_back(request);
  }
  if (joining.empty()) return;
  std::vector<const ModelState*> states;
  for (Request* request : joining) states.push_back(&request->session().state.model);
  batch_state_.Join(states);
  for (Request* request : joining) {
    request->session().state.model = ModelState();  // the batch holds it now
    batch_.push_back(request);
  }
}

void Engine::LeaveBatch() {
  std::vector<int64_t> rows;
  std::vector<ModelState*> into;
  for (size_t i = 0; i < batch_.size(); ++i) {
    if (!batch_[i]->finished()) continue;
    rows.push_back(static_cast<int64_t>(i));
    into.push_back(&batch_[i]->session().state.model);
  }
  if (rows.empty()) return;
  std::vector<Request*> staying;
  for (int64_t was : batch_state_.Leave(rows, into)) staying.push_back(batch_[was]);
  batch_ = std::move(staying);
}

void Engine::Retire() {
  std::vector<std::unique_ptr<Request>> finished;
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->finished()) {
      finished.push_back(std::move(*it));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  if (finished.empty()) return;
  const absl::Time now = absl::Now();
  for (auto& request : finished) {
    SessionState& state = request->session().state;
    // What the model has not been fed yet: the last sampled token, or the rest of a prompt.
    state.pending.clear();
    if (request->generated > 0) {
      state.pending.push_back(request->next_token);
    } else {
      state.pending.assign(request->feed.begin() + request->fed, request->feed.end());
    }
    // Return the slots before telling the clients, so a client that continues a session as soon
    // as its stream ends finds the session free. A session whose state the model left unknown
    // is closed.
    if (request->reason == FinishReason::kError) request->slot->CloseOnReturn();
    request->slot.reset();
  }
  {
    absl::MutexLock lock(&mu_);
    running_count_ -= finished.size();
    for (const auto& request : finished) kv_reserved_bytes_ -= request->kv_reserved_bytes;
    UpdateGauges();
  }
  for (auto& request : finished) {
    GenerationUsage usage;
    usage.prompt_tokens = static_cast<int64_t>(request->prompt.size());
    usage.cached_prompt_tokens = request->cached;
    usage.generated_tokens = request->generated;
    usage.time_to_first_token_seconds =
        request->generated > 0 ? absl::ToDoubleSeconds(request->first_token - request->arrived) : 0;
    usage.duration_seconds = absl::ToDoubleSeconds(now - request->arrived);
    metrics_->request_duration.Observe(usage.duration_seconds);
    request->sink->OnFinish(request->reason, usage, request->error);
  }
}

void Engine::UpdateGauges() {
  metrics_->running_requests.Set(static_cast<double>(running_count_));
  metrics_->queued_requests.Set(static_cast<double>(queue_.size()));
  metrics_->kv_cache_bytes.Set(static_cast<double>(KeyValueBytesInUse()));
}

// ---------------------------------------------------------------------------------------------
// Sessions

absl::StatusOr<SessionInfo> Engine::CreateSession(const std::string& tenant,
                                                  const std::string& id) {
  RECUR_RETURN_IF_ERROR(Accepting());
  RECUR_ASSIGN_OR_RETURN(SessionStore::Lease slot, sessions_.Reserve());
  slot->state.model = checkpoint_.model->NewState(1, options_.device);
  return sessions_.Open(std::move(slot), tenant, id);
}

absl::StatusOr<SessionInfo> Engine::GetSession(const std::string& id, const std::string& tenant) {
  ClaimIfSaved(id);
  return sessions_.Get(id, tenant);
}

absl::Status Engine::CloseSession(const std::string& id, const std::string& tenant) {
  ClaimIfSaved(id);
  return sessions_.Close(id, tenant);
}

absl::StatusOr<SessionInfo> Engine::ForkSession(const std::string& id, const std::string& tenant) {
  RECUR_RETURN_IF_ERROR(Accepting());
  ClaimIfSaved(id);
  return sessions_.Fork(id, tenant);
}

absl::StatusOr<std::string> Engine::ExportSession(const std::string& id,
                                                  const std::string& tenant) {
  ClaimIfSaved(id);
  return sessions_.Export(id, tenant, checkpoint_.config);
}

int64_t Engine::KeepSessions(SessionDirectory directory, absl::Duration sync_interval) {
  keeper_ = std::make_unique<SessionKeeper>(std::move(directory), sessions_, checkpoint_.config,
                                            options_.device, sync_interval);
  return keeper_->RestoreAll();
}

absl::StatusOr<int64_t> Engine::SaveSessions() {
  if (keeper_ == nullptr) return 0;
  return keeper_->Save();
}

void Engine::ClaimIfSaved(const std::string& id) {
  if (keeper_ != nullptr) keeper_->ClaimIfSaved(id);
}

absl::StatusOr<SessionInfo> Engine::ImportSession(const std::string& bytes,
                                                  const std::string& tenant,
                                                  const std::string& id) {
  RECUR_ASSIGN_OR_RETURN(SessionState state,
                         DecodeSession(bytes, checkpoint_.config, options_.device));
  RECUR_RETURN_IF_ERROR(Accepting());
  RECUR_ASSIGN_OR_RETURN(SessionStore::Lease slot, sessions_.Reserve());
  slot->state = std::move(state);
  return sessions_.Open(std::move(slot), tenant, id);
}

absl::Status Engine::ReserveKeyValues(Request& request) {
  const ModelConfig& config = checkpoint_.config;
  if (config.attention != AttentionKind::kSoftmax) return absl::OkStatus();
  // The session's tokens (its pending ones among them) and the prompt are fed first; then the
  // context grows by one a generated token.
  const int64_t context = request.slot.has_value() ? (*request.slot)->state.tokens() : 0;
  const int64_t fed = context + static_cast<int64_t>(request.prompt.size());
  if (fed >= options_.max_context_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the context would hold ", fed,
        " tokens with this prompt; softmax attention keeps at most ", options_.max_context_tokens,
        " (--max_context_tokens) with room to generate: start a new "
        "session"));
  }
  if (fed + request.max_tokens > options_.max_context_tokens) {
    request.max_tokens = options_.max_context_tokens - fed;
    request.context_bound = true;
  }
  // The session's own tokens are counted with the sessions; the request reserves what it adds.
  const int64_t bytes = (static_cast<int64_t>(request.prompt.size()) + request.max_tokens) *
                        config.KvCacheBytesPerToken();
  const int64_t in_use = KeyValueBytesInUse();
  if (in_use + bytes > options_.kv_cache_budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the key/value caches would exceed their budget of ", options_.kv_cache_budget_bytes,
        " bytes (--kv_cache_memory_mb): ", in_use, " in use, this request needs ", bytes,
        "; close sessions or ask for fewer tokens"));
  }
  request.kv_reserved_bytes = bytes;
  kv_reserved_bytes_ += bytes;
  return absl::OkStatus();
}

int64_t Engine::KeyValueBytesInUse() {
  if (checkpoint_.config.attention != AttentionKind::kSoftmax) return 0;
  return sessions_.tokens_in_sessions() * checkpoint_.config.KvCacheBytesPerToken() +
         kv_reserved_bytes_;
}

EngineInfo Engine::Info() {
  EngineInfo info;
  info.config = checkpoint_.config;
  info.tokenizer_kind = std::string(checkpoint_.tokenizer->kind());
  info.parameters = checkpoint_.model->ParameterCount();
  info.weights = std::string(WeightFormatName(WeightFormatOf(checkpoint_.model)));
  info.prefix_cache_capacity_bytes = prefix_cache_.capacity_bytes();
  info.state_bytes_per_session = checkpoint_.config.SlotBytes();
  info.kv_cache_bytes_per_token = checkpoint_.config.attention == AttentionKind::kSoftmax
                                      ? checkpoint_.config.KvCacheBytesPerToken()
                                      : 0;
  info.max_sessions = sessions_.max_slots();
  info.device = options_.device.str();
  info.max_tokens = options_.max_tokens;
  info.max_prompt_tokens = options_.max_prompt_tokens;
  info.sessions_in_use = sessions_.slots_in_use();
  info.state_bytes_in_use = sessions_.state_bytes_in_use();
  absl::MutexLock lock(&mu_);
  if (checkpoint_.config.attention == AttentionKind::kSoftmax) {
    info.max_context_tokens = options_.max_context_tokens;
    info.kv_cache_budget_bytes = options_.kv_cache_budget_bytes;
    info.kv_cache_bytes_in_use = KeyValueBytesInUse();
  }
  info.running_requests = running_count_;
  info.queued_requests = static_cast<int64_t>(queue_.size());
  return info;
}

}  // namespace recur
