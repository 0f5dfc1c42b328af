#ifndef RECUR_SERVER_GENERATION_REQUEST_H_
#define RECUR_SERVER_GENERATION_REQUEST_H_

// A Generate request as the engine takes it, and the checks every request passes before it
// queues: the same for every front end (gRPC today), and fuzzed (tests/fuzz/).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/logprobs.h"
#include "model/sampling.h"
#include "model/tokenizer.h"

namespace recur {

struct GenerationRequest {
  std::string prompt;                 // UTF-8; may be empty when continuing a session with text
  std::string session_id;             // empty: a one-off request
  std::optional<int64_t> max_tokens;  // unset: RequestLimits::default_max_tokens; else in [1, max]
  SamplingParams sampling;
  std::vector<std::string> stop;
  // Each generated token's log-probability and this many most likely alternatives, 0 to
  // kMaxTopLogprobs (model/logprobs.h); unset: none.
  std::optional<int> logprobs;
  // The same for the prompt's tokens (GenerationSink::OnPromptLogprobs); unset: none.
  std::optional<int> prompt_logprobs;
  // Samples of the prompt, 1 .. kMaxSamples: more than one only for a one-off request, fed once
  // and forked (server/sample_fan_out.h); sample i samples with seed + i.
  int samples = 1;
  // Feeds the prompt into the session, all of it but the last token (left pending, so the next
  // request samples from it), and generates nothing: a prompt prefilled once for several samples,
  // each continuing a fork of the session (server/sample_fan_out.h). Needs a session. With
  // prompt_logprobs, the pending last token is scored too.
  bool prefill_only = false;
  std::string tenant;  // the caller's (server/authenticator.h): others' sessions are NOT_FOUND
};

// The server's limits on one request (EngineOptions' fields of the same names).
struct RequestLimits {
  int64_t max_tokens = 4096;
  int64_t default_max_tokens = 128;
  int64_t max_prompt_tokens = 32768;
};

// The most samples one request may ask for (GenerationRequest::samples).
inline constexpr int kMaxSamples = 16;

// At most this many stop sequences of at most this many bytes each.
inline constexpr size_t kMaxStopSequences = 16;
inline constexpr size_t kMaxStopBytes = 1024;

struct CheckedRequest {
  std::vector<int64_t> prompt;  // encoded, at most max_prompt_tokens
  int64_t max_tokens = 0;       // in [1, limits.max_tokens]
};

// INVALID_ARGUMENT when `samples` is outside [1, kMaxSamples], or above 1 with a session or
// prefill_only; part of CheckRequest.
absl::Status CheckSamples(const GenerationRequest& request);

// INVALID_ARGUMENT naming what is wrong (max_tokens out of range, samples out of range or above 1
// with a session or prefill_only, sampling parameters, a prompt
// or stop sequence that is not UTF-8, too many or too long stop sequences, an empty prompt
// without a session, a prompt over the limit); otherwise the encoded prompt and max_tokens.
absl::StatusOr<CheckedRequest> CheckRequest(const GenerationRequest& request,
                                            const RequestLimits& limits,
                                            const Tokenizer& tokenizer);

}  // namespace recur

#endif  // RECUR_SERVER_GENERATION_REQUEST_H_
