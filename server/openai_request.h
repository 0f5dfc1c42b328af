#ifndef RECUR_SERVER_OPENAI_REQUEST_H_
#define RECUR_SERVER_OPENAI_REQUEST_H_

// The body of an OpenAI-style `POST /v1/completions` as recur's GenerationRequest
// (server/http_api.h serves it). Fields: model, prompt (a string, or an array of one string),
// max_tokens, temperature, top_p, top_k, seed, stop (a string or an array), n (1..16 samples of
// the prompt, fed once: server/sample_fan_out.h), logprobs (0..20: each token's log-probability and
// that many alternatives), echo (the prompt leads each choice's text, and with logprobs its
// tokens are scored too), stream,
// stream_options.include_usage, and recur's extensions session_id (continue a session: send only
// the new text) and repetition_penalty. Unknown fields are ignored, as OpenAI-compatible servers
// do, so clients may send what they send to others. Pure: fuzzed and unit-tested.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/generation_request.h"

namespace recur {

struct CompletionRequest {
  GenerationRequest generation;  // tenant left to the caller
  std::string model;             // as sent; empty when absent
  bool echo = false;             // the choices' texts start with the prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
};

// INVALID_ARGUMENT naming the field (`param`) and what is wrong: the body is not a JSON object, a
// field has the wrong type, n is outside [1, kMaxSamples] or above 1 with
// `session_id`, logprobs is outside [0, 20].
// Ranges (temperature ≥ 0, top_p in (0, 1], max_tokens ≥ 1, ...) are CheckRequest's, as for gRPC.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body);

// The field an INVALID_ARGUMENT from ParseCompletionRequest names, for OpenAI's error `param`.
std::optional<std::string> ErrorParam(const absl::Status& status);

}  // namespace recur

#endif  // RECUR_SERVER_OPENAI_REQUEST_H_
