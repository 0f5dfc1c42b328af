#include "server/sample_fan_out.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status.h"

namespace recur {

namespace {

// The prompt's share of every sample's usage, and when the whole request arrived.
struct PromptUsage {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  absl::Time arrived;
};

// GenerationUsage as a separate request would report it: the prompt counted, the times taken from
// when the request arrived, not from when the sample was started.
GenerationUsage SampleUsage(const PromptUsage& prompt, absl::Time started,
                            const GenerationUsage& sample) {
  GenerationUsage usage = sample;
  usage.prompt_tokens = prompt.prompt_tokens;
  usage.cached_prompt_tokens = prompt.cached_prompt_tokens;
  if (sample.generated_tokens > 0) {
    usage.time_to_first_token_seconds += absl::ToDoubleSeconds(started - prompt.arrived);
  }
  usage.duration_seconds = absl::ToDoubleSeconds(absl::Now() - prompt.arrived);
  return usage;
}

// One sample's output, passed on to the caller's sink; closes the sample's temporary session once
// the sample has finished (its slot is back in the store by then).
class SampleSink : public GenerationSink {
 public:
  SampleSink(Engine& engine, std::string session, std::string tenant, PromptUsage prompt,
             std::shared_ptr<GenerationSink> out)
      : engine_(engine),
        session_(std::move(session)),
        tenant_(std::move(tenant)),
        prompt_(prompt),
        started_(absl::Now()),
        out_(std::move(out)) {}

  void OnText(std::string text, std::vector<int64_t> token_ids) override {
    out_->OnText(std::move(text), std::move(token_ids));
  }
  void OnLogprobs(const StepLogprobs& logprobs) override { out_->OnLogprobs(logprobs); }
  void OnFinish(FinishReason reason, const GenerationUsage& usage,
                const absl::Status& error) override {
    (void)engine_.CloseSession(session_, tenant_);
    out_->OnFinish(reason, SampleUsage(prompt_, started_, usage), error);
  }

 private:
  Engine& engine_;
  const std::string session_;
  const std::string tenant_;
  const PromptUsage prompt_;
  const absl::Time started_;
  const std::shared_ptr<GenerationSink> out_;
};

// The prefill's sink. Prompt logprobs go to every sample at once; when the prompt is in, the
// session is forked and every sample submitted, all on the engine thread and none waiting.
class FanOut : public GenerationSink {
 public:
  FanOut(Engine& engine, GenerationRequest request, std::string base,
         std::vector<std::shared_ptr<GenerationSink>> sinks,
         std::shared_ptr<GenerationTicket> ticket)
      : engine_(engine),
        request_(std::move(request)),
        base_(std::move(base)),
        sinks_(std::move(sinks)),
        ticket_(std::move(ticket)),
        arrived_(absl::Now()) {}

  void OnText(std::string, std::vector<int64_t>) override {}  // a prefill generates nothing

  void OnPromptLogprobs(const std::vector<StepLogprobs>& logprobs, int64_t previous) override {
    for (const auto& sink : sinks_) sink->OnPromptLogprobs(logprobs, previous);
  }

  void OnFinish(FinishReason reason, const GenerationUsage& usage,
                const absl::Status& error) override {
    const PromptUsage prompt{usage.prompt_tokens, usage.cached_prompt_tokens, arrived_};
    if (reason != FinishReason::kLength) {  // cancelled, shut down or failed before any sample
      (void)engine_.CloseSession(base_, request_.tenant);
      for (const auto& sink : sinks_)
        sink->OnFinish(reason, SampleUsage(prompt, arrived_, {}), error);
      return;
    }
    std::vector<std::string> sessions = {base_};
    absl::Status forked;
    while (forked.ok() && sessions.size() < sinks_.size()) {
      auto fork = engine_.ForkSession(base_, request_.tenant);
      forked = fork.status();
      if (fork.ok()) sessions.push_back(fork->id);
    }
    for (size_t i = 0; i < sinks_.size(); ++i) {
      const absl::Status started = i < sessions.size() ? Start(i, sessions[i], prompt) : forked;
      if (!started.ok()) {
        sinks_[i]->OnFinish(FinishReason::kError, SampleUsage(prompt, arrived_, {}), started);
      }
    }
  }

 private:
  // Starts sample `i` on `session`, a copy of the prompt's state with its last token pending.
  absl::Status Start(size_t i, const std::string& session, const PromptUsage& prompt) {
    GenerationRequest sample = request_;
    sample.prompt.clear();
    sample.session_id = session;
    sample.samples = 1;
    sample.prompt_logprobs.reset();
    sample.sampling.seed += static_cast<uint64_t>(i);
    auto sink = std::make_shared<SampleSink>(engine_, session, request_.tenant, prompt, sinks_[i]);
    auto submitted = engine_.Submit(std::move(sample), std::move(sink), ticket_);
    if (!submitted.ok()) (void)engine_.CloseSession(session, request_.tenant);
    return submitted.status();
  }

  Engine& engine_;
  const GenerationRequest request_;
  const std::string base_;
  const std::vector<std::shared_ptr<GenerationSink>> sinks_;
  const std::shared_ptr<GenerationTicket> ticket_;
  const absl::Time arrived_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<GenerationTicket>> SubmitSamples(
    Engine& engine, GenerationRequest request, std::vector<std::shared_ptr<GenerationSink>> sinks) {
  RECUR_RETURN_IF_ERROR(CheckSamples(request));
  if (static_cast<int>(sinks.size()) != request.samples) {
    return absl::InternalError(
        absl::StrCat(request.samples, " samples need as many sinks, got ", sinks.size()));
  }
  if (request.samples == 1) return engine.Submit(std::move(request), std::move(sinks.front()));
  const EngineInfo info = engine.Info();
  if (info.max_sessions - info.sessions_in_use < request.samples) {
    return absl::ResourceExhaustedError(
        absl::StrCat("n = ", request.samples, " samples need as many free state slots; ",
                     info.max_sessions - info.sessions_in_use, " of ", info.max_sessions,
                     " are free (--max_sessions)"));
  }
  const std::string tenant = request.tenant;
  RECUR_ASSIGN_OR_RETURN(SessionInfo base, engine.CreateSession(tenant));
  GenerationRequest prefill = request;
  prefill.samples = 1;
  prefill.session_id = base.id;
  prefill.prefill_only = true;
  auto ticket = std::make_shared<GenerationTicket>();
  auto fan_out =
      std::make_shared<FanOut>(engine, std::move(request), base.id, std::move(sinks), ticket);
  auto submitted = engine.Submit(std::move(prefill), std::move(fan_out), ticket);
  if (!submitted.ok()) (void)engine.CloseSession(base.id, tenant);
  return submitted;
}

}  // namespace recur
