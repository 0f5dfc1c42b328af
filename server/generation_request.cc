#include "server/generation_request.h"

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "model/utf8.h"

namespace recur {

absl::Status CheckSamples(const GenerationRequest& request) {
  if (request.samples < 1 || request.samples > kMaxSamples) {
    return absl::InvalidArgumentError(
        absl::StrCat("n must be in [1, ", kMaxSamples, "], got ", request.samples));
  }
  if (request.samples > 1 && (!request.session_id.empty() || request.prefill_only)) {
    return absl::InvalidArgumentError(
        "n > 1 samples a one-off prompt, not a session's (fork the session for that)");
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckedRequest> CheckRequest(const GenerationRequest& request,
                                            const RequestLimits& limits,
                                            const Tokenizer& tokenizer) {
  CheckedRequest checked;
  checked.max_tokens = request.max_tokens.value_or(limits.default_max_tokens);
  if (checked.max_tokens < 1 || checked.max_tokens > limits.max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be in [1, ", limits.max_tokens,
                                                   "], got ", checked.max_tokens));
  }
  RECUR_RETURN_IF_ERROR(request.sampling.Validate());
  for (const auto& [name, value] : {std::pair{"logprobs", request.logprobs},
                                    std::pair{"prompt_logprobs", request.prompt_logprobs}}) {
    if (value && (*value < 0 || *value > kMaxTopLogprobs)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be in [0, ", kMaxTopLogprobs, "], got ", *value));
    }
  }
  if (!IsValidUtf8(request.prompt)) return absl::InvalidArgumentError("prompt is not valid UTF-8");
  if (request.stop.size() > kMaxStopSequences) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxStopSequences, " stop sequences, got ", request.stop.size()));
  }
  for (const auto& stop : request.stop) {
    if (!IsValidUtf8(stop)) return absl::InvalidArgumentError("a stop sequence is not valid UTF-8");
    if (stop.size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a stop sequence is ", stop.size(), " bytes, over ", kMaxStopBytes));
    }
  }
  RECUR_RETURN_IF_ERROR(CheckSamples(request));
  if (request.prefill_only && request.session_id.empty()) {
    return absl::InvalidArgumentError("a prefill-only request needs a session");
  }
  if (request.prompt.empty() && request.session_id.empty()) {
    return absl::InvalidArgumentError(
        "prompt is empty and no session is given: nothing to continue from");
  }
  checked.prompt = tokenizer.Encode(request.prompt);
  if (static_cast<int64_t>(checked.prompt.size()) > limits.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is ", checked.prompt.size(),
                                                   " tokens, over the limit of ",
                                                   limits.max_prompt_tokens));
  }
  return checked;
}

}  // namespace recur
