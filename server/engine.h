#ifndef RECUR_SERVER_ENGINE_H_
#define RECUR_SERVER_ENGINE_H_

// The engine: the one thread that owns the model. It admits Generate requests into state slots
// (server/session_store.h), feeds prompts through the chunkwise Prefill and decodes every running
// request in one batched Step, in the order server/scheduler.h decides (a slice of prompt per
// iteration, so a long prompt does not stall running streams), samples, streams text to each
// request's sink and honours cancellation between steps.
//
// A session is a slot that outlives requests: its state holds all the text so far, so continuing
// it feeds only the new tokens. A request without a session borrows a slot for its duration.
// Session calls (create, fork, export, ...) go to the session store on the caller's thread; a
// session that a request is running on is checked out and refuses them.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/checkpoint.h"
#include "model/logprobs.h"
#include "model/model_state.h"
#include "model/sampling.h"
#include "server/decode_batch.h"
#include "server/generation_request.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/row_parallel.h"
#include "server/scheduler.h"
#include "server/session_codec.h"
#include "server/session_directory.h"
#include "server/session_keeper.h"
#include "server/session_store.h"

namespace recur {

struct EngineOptions {
  torch::Device device = torch::kCPU;
  int64_t max_sessions = 64;         // state slots: open sessions plus running one-off requests
  int64_t max_queue = 256;           // Generate requests waiting for a slot
  int64_t max_tokens = 4096;         // cap on GenerationRequest::max_tokens
  int64_t default_max_tokens = 128;  // when a request leaves it unset
  int64_t max_prompt_tokens = 32768;
  int64_t prefill_chunk = 256;  // prompt tokens fed per engine iteration, over all requests
  // A step samples its rows on a helper thread too (server/row_parallel.h) from this many logits
  // (rows × vocabulary) up; below, the hand-over costs more than it saves.
  int64_t parallel_sampling_logits = int64_t{1} << 16;
  absl::Duration session_ttl = absl::Minutes(30);  // idle sessions are closed after this
  // Softmax attention only, whose key/value cache grows with the text: the most tokens one
  // session's context may hold, and the key/value bytes all sessions and running requests may
  // hold together, counted as tokens × ModelConfig::KvCacheBytesPerToken() (the allocation is up
  // to twice that: caches grow by doubling).
  int64_t max_context_tokens = 8192;
  int64_t kv_cache_budget_bytes = int64_t{2} << 30;
  // Linear attention: the prefix-state cache's bound in bytes (0: off), and how often a long
  // prompt leaves a state in it (server/prefix_cache.h).
  int64_t prefix_cache_bytes = int64_t{256} << 20;
  int64_t prefix_cache_interval = 512;

  // INVALID_ARGUMENT naming the flag (recur-server's) that is out of range, or OK.
  absl::Status Validate() const;
};

// kShutdown: a drain ran out of time (Engine::EndRequests) before the request finished; the text
// sent is complete. kError: the model failed (e.g. the device ran out of memory); the request's
// session, whose state is then unknown, is closed.
// kContextFull: softmax attention, the session reached EngineOptions::max_context_tokens.
enum class FinishReason {
  kLength,
  kStop,
  kEndOfSequence,
  kContextFull,
  kCancelled,
  kShutdown,
  kError
};

struct GenerationUsage {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // of prompt_tokens, taken from the prefix cache, not fed
  int64_t generated_tokens = 0;
  double time_to_first_token_seconds = 0;
  double duration_seconds = 0;
};

// Receives one request's output, on the engine thread: must return quickly.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void OnText(std::string text, std::vector<int64_t> token_ids) = 0;
  // For a request that asked for logprobs: the next OnText's token, just before it.
  virtual void OnLogprobs(const StepLogprobs& logprobs) {}
  // For a request that asked for prompt logprobs, once its prompt is fed: one per prompt token
  // that has text before it, in order; `previous` is the token before the first of them.
  virtual void OnPromptLogprobs(const std::vector<StepLogprobs>& logprobs, int64_t previous) {}
  // Called exactly once per accepted request, last. `error` is set when `reason` is kError.
  virtual void OnFinish(FinishReason reason, const GenerationUsage& usage,
                        const absl::Status& error) = 0;
};

// Lets the caller stop an accepted request; the engine ends it within one step.
class GenerationTicket {
 public:
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

struct EngineInfo {
  ModelConfig config;
  std::string tokenizer_kind;
  int64_t parameters = 0;
  int64_t state_bytes_per_session = 0;   // linear attention: constant; softmax: 0
  int64_t kv_cache_bytes_per_token = 0;  // softmax: per token of context; linear: 0
  int64_t max_sessions = 0;
  int64_t sessions_in_use = 0;
  int64_t state_bytes_in_use = 0;
  int64_t running_requests = 0;
  int64_t queued_requests = 0;
  std::string device;
  int64_t max_tokens = 0;
  int64_t max_prompt_tokens = 0;
  int64_t max_context_tokens = 0;  // softmax; 0 for linear attention
  int64_t kv_cache_budget_bytes = 0;
  int64_t kv_cache_bytes_in_use = 0;
  int64_t prefix_cache_capacity_bytes = 0;  // 0: no prefix cache (off, or softmax attention)
  std::string weights;                      // WeightFormatName of the model's linear layers
};

class Engine {
 public:
  // Starts the engine thread. `metrics` records what the engine and its sessions do.
  Engine(Checkpoint checkpoint, EngineOptions options,
         std::shared_ptr<Metrics> metrics = std::make_shared<Metrics>());
  // Ends every request (as cancelled) and stops the thread.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Accepts a request or says why not: INVALID_ARGUMENT (CheckRequest's checks), NOT_FOUND
  // (unknown session, or another tenant's), FAILED_PRECONDITION (the session is busy),
  // RESOURCE_EXHAUSTED (the queue is full; a one-off request while every slot is held by a
  // session; softmax: the context limit or the key/value budget), UNAVAILABLE (draining).
  // `ticket`, when given, is the one the request answers to (several requests that one Cancel
  // ends, server/sample_fan_out.h); otherwise a new one. Request::samples must be 1 here.
  absl::StatusOr<std::shared_ptr<GenerationTicket>> Submit(
      GenerationRequest request, std::shared_ptr<GenerationSink> sink,
      std::shared_ptr<GenerationTicket> ticket = nullptr);

  // Session calls act for the caller's `tenant` (server/session_store.h): a session created or
  // imported by one tenant is NOT_FOUND for every other.
  // `id`, when given, names the new session (SessionStore::Open).
  absl::StatusOr<SessionInfo> CreateSession(const std::string& tenant, const std::string& id = "");
  absl::StatusOr<SessionInfo> GetSession(const std::string& id, const std::string& tenant);
  absl::Status CloseSession(const std::string& id, const std::string& tenant);
  absl::StatusOr<SessionInfo> ForkSession(const std::string& id, const std::string& tenant);
  // The session's state as self-describing bytes (server/session_codec.h).
  absl::StatusOr<std::string> ExportSession(const std::string& id, const std::string& tenant);
  absl::StatusOr<SessionInfo> ImportSession(const std::string& bytes, const std::string& tenant,
                                            const std::string& id = "");

  // Keeps the sessions in `directory` (server/session_keeper.h): restores this replica's saved
  // sessions now and returns how many; saves the changed ones every `sync_interval` (zero: only
  // at SaveSessions). Call once, before requests arrive.
  int64_t KeepSessions(SessionDirectory directory, absl::Duration sync_interval);
  // Writes the sessions changed since their last save (after a drain: every session that
  // changed); 0 without a directory.
  absl::StatusOr<int64_t> SaveSessions();

  // Draining, for a graceful shutdown: from now on new requests and new sessions are refused
  // (UNAVAILABLE) while those running and queued go on.
  void Drain();
  // Ends every running and queued request within a step, each with its final message
  // (kShutdown); sessions keep the text sent.
  void EndRequests();
  // No request running or queued.
  bool Idle();

  EngineInfo Info();
  const Tokenizer& tokenizer() const { return *checkpoint_.tokenizer; }
  const TransformerLM& model() const { return checkpoint_.model; }

 private:
  struct Request;

  void Loop();
  // One iteration: admit, prefill and decode as PlanIteration says, retire. False when idle.
  bool Iterate();
  // Moves queued requests that get a slot to running_; returns those whose whole prompt the
  // prefix cache held, which have sampled their first token and join the batch.
  std::vector<Request*> Admit();
  // Gives an admitted request its feed (the session's pending tokens, then the prompt), text
  // stream and sampler; a request on an empty state starts from the longest cached prefix.
  void Start(Request& request);
  // Starts `request` (its state empty) from the prefix cache's longest match, if any.
  void StartFromCache(Request& request);
  // Runs the plan's prefill groups; returns the requests whose prompts are now fed.
  std::vector<Request*> Prefill(const std::vector<PrefillGroup>& groups);
  // Feeds the next `n` prompt tokens of every request in `group` in one batched Prefill; a request
  // whose prompt is then complete samples its first token.
  void PrefillSlice(const std::vector<Request*>& group, int64_t n);
  // Feeds the next `n` prompt tokens of every request in `group`; the logits after them, [rows,
  // V] float on the host, or at every position, [rows, n, V], when `every_position`.
  torch::Tensor FeedPrompt(const std::vector<Request*>& group, int64_t n, bool every_position);
  // Scores the `n` prompt tokens just fed for the requests of `group` that ask for prompt
  // logprobs, from `logits` [rows, n, V] and the logits each request carried from its last slice.
  void ScorePrompt(const std::vector<Request*>& group, const torch::Tensor& logits, int64_t n);
  // How many tokens `group` may feed before one of its requests reaches a cache checkpoint.
  int64_t UntilCheckpoint(const std::vector<Request*>& group, int64_t n) const;
  // After a slice: keeps `request`'s state in the prefix cache if it is at a checkpoint (every
  // prefix_cache_interval tokens, and the prompt's end with `logits`, [V]).
  void KeepPrefix(Request& request, const torch::Tensor& logits);
  void DecodeStep();
  // Samples every row of `logits` ([rows, V] on the host), row i for requests[i], with the
  // logprobs of requests that ask; on the helper thread too when the batch is large enough to pay
  // for the hand-over.
  std::vector<int64_t> SampleRows(const std::vector<Request*>& requests,
                                  const torch::Tensor& logits);
  // Streams the sampled `token`'s text, ends the request if done.
  void Emit(Request& request, int64_t token);
  void Finish(Request& request, FinishReason reason);
  // Ends the request with kError after the model threw.
  void Fail(Request& request, const std::exception& e);
  // Requests that started decoding join the batch (those finished since are left out).
  void JoinBatch(const std::vector<Request*>& decoding);
  // Rows of finished requests go back to their sessions.
  void LeaveBatch();
  // Returns finished requests' slots, then sends their final messages.
  void Retire();
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Softmax attention: bounds `request` (and its session's text) by the context limit and
  // reserves its new tokens in the key/value budget; RESOURCE_EXHAUSTED when either is spent,
  // nothing reserved then. The caller updates the gauges.
  absl::Status ReserveKeyValues(Request& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t KeyValueBytesInUse() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How the engine's shutdown ends a request still running or queued: kCancelled when the
  // engine is destroyed, kShutdown after EndRequests; nullopt while requests may go on.
  std::optional<FinishReason> Ending();
  // UNAVAILABLE once draining or shutting down: no new requests or sessions then.
  absl::Status Accepting();
  // Before a call names session `id`: restores it from --session_dir if a replica saved it there.
  void ClaimIfSaved(const std::string& id);

  Checkpoint checkpoint_;
  const EngineOptions options_;
  const std::shared_ptr<Metrics> metrics_;
  SessionStore sessions_;
  std::unique_ptr<SessionKeeper> keeper_;  // with --session_dir; set before requests arrive

  absl::Mutex mu_;
  std::deque<std::unique_ptr<Request>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;  // EndRequests was called
  int64_t running_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Requests Admit left waiting (for a slot): the idle loop sleeps until the queue differs.
  size_t left_queued_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t kv_reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // new tokens of queued and running requests

  // Engine-thread only.
  std::vector<std::unique_ptr<Request>> running_;  // admitted, in arrival order
  std::vector<Request*> batch_;                    // the rows of batch_state_, decoding
  DecodeBatch batch_state_{options_.max_sessions};
  RowParallel sampling_;  // one helper thread where there are two cores or more
  PrefixCache prefix_cache_;
  absl::Time last_ttl_sweep_;

  std::thread thread_;
};

}  // namespace recur

#endif  // RECUR_SERVER_ENGINE_H_
