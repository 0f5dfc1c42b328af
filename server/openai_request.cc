#include "server/openai_request.h"

#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace {

using Json = nlohmann::json;

// Errors name their field first, "<field>: ...", so ErrorParam can give it back.
absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// The field if present and not null.
const Json* Field(const Json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<std::optional<double>> Number(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) return Bad(name, "must be a number");
  return value->get<double>();
}

absl::StatusOr<std::optional<int64_t>> Integer(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_integer()) return value->get<int64_t>();
  if (value->is_number_unsigned() && value->get<uint64_t>() <= uint64_t{INT64_MAX}) {
    return static_cast<int64_t>(value->get<uint64_t>());
  }
  return Bad(name, "must be an integer");
}

absl::StatusOr<bool> Boolean(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return false;
  if (!value->is_boolean()) return Bad(name, "must be true or false");
  return value->get<bool>();
}

absl::StatusOr<std::string> String(const Json& body, const char* name) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::string();
  if (!value->is_string()) return Bad(name, "must be a string");
  return value->get<std::string>();
}

// A string, or an array of strings; `max` bounds the array.
absl::StatusOr<std::vector<std::string>> Strings(const Json& body, const char* name, size_t max) {
  const Json* value = Field(body, name);
  if (value == nullptr) return std::vector<std::string>();
  if (value->is_string()) return std::vector<std::string>{value->get<std::string>()};
  if (!value->is_array()) return Bad(name, "must be a string or an array of strings");
  if (value->size() > max) return Bad(name, absl::StrCat("holds more than ", max, " entries"));
  std::vector<std::string> out;
  for (const Json& item : *value) {
    if (!item.is_string()) return Bad(name, "must be a string or an array of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

absl::Status ReadSampling(const Json& body, SamplingParams& sampling) {
  RECUR_ASSIGN_OR_RETURN(auto temperature, Number(body, "temperature"));
  if (temperature) sampling.temperature = *temperature;
  RECUR_ASSIGN_OR_RETURN(auto top_p, Number(body, "top_p"));
  if (top_p) sampling.top_p = *top_p;
  RECUR_ASSIGN_OR_RETURN(auto top_k, Integer(body, "top_k"));
  if (top_k) sampling.top_k = *top_k;
  RECUR_ASSIGN_OR_RETURN(auto penalty, Number(body, "repetition_penalty"));
  if (penalty) sampling.repetition_penalty = *penalty;
  RECUR_ASSIGN_OR_RETURN(auto seed, Integer(body, "seed"));
  // OpenAI's seed is any integer; recur's is 64 bits: a negative one wraps, as a bit pattern.
  if (seed) sampling.seed = static_cast<uint64_t>(*seed);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(absl::string_view body_text) {
  const Json body = Json::parse(body_text.begin(), body_text.end(), nullptr,
                                /*allow_exceptions=*/false);
  if (body.is_discarded()) return Bad("body", "is not valid JSON");
  if (!body.is_object()) return Bad("body", "must be a JSON object");
  CompletionRequest request;
  RECUR_ASSIGN_OR_RETURN(request.model, String(body, "model"));
  RECUR_ASSIGN_OR_RETURN(std::vector<std::string> prompt, Strings(body, "prompt", 1));
  if (!prompt.empty()) request.generation.prompt = std::move(prompt.front());
  RECUR_ASSIGN_OR_RETURN(request.generation.session_id, String(body, "session_id"));
  RECUR_ASSIGN_OR_RETURN(auto max_tokens, Integer(body, "max_tokens"));
  request.generation.max_tokens = max_tokens;  // unset: the server's default; 0 is an error
  RECUR_RETURN_IF_ERROR(ReadSampling(body, request.generation.sampling));
  RECUR_ASSIGN_OR_RETURN(request.generation.stop, Strings(body, "stop", kMaxStopSequences));
  RECUR_ASSIGN_OR_RETURN(auto n, Integer(body, "n"));
  if (n && (*n < 1 || *n > kMaxSamples)) {
    return Bad("n", absl::StrCat("must be in [1, ", kMaxSamples, "]"));
  }
  if (n) request.generation.samples = static_cast<int>(*n);
  RECUR_ASSIGN_OR_RETURN(auto logprobs, Integer(body, "logprobs"));
  if (logprobs) {
    if (*logprobs < 0 || *logprobs > kMaxTopLogprobs) {
      return Bad("logprobs", absl::StrCat("must be in [0, ", kMaxTopLogprobs, "]"));
    }
    request.generation.logprobs = static_cast<int>(*logprobs);
  }
  RECUR_ASSIGN_OR_RETURN(request.echo, Boolean(body, "echo"));
  // Echo with logprobs scores the prompt too, as OpenAI's does.
  if (request.echo) request.generation.prompt_logprobs = request.generation.logprobs;
  RECUR_ASSIGN_OR_RETURN(request.stream, Boolean(body, "stream"));
  if (request.generation.samples > 1 && !request.generation.session_id.empty()) {
    return Bad("n", "n > 1 samples a one-off prompt; not with session_id");
  }
  if (const Json* options = Field(body, "stream_options"); options != nullptr) {
    if (!options->is_object()) return Bad("stream_options", "must be an object");
    RECUR_ASSIGN_OR_RETURN(request.include_usage, Boolean(*options, "include_usage"));
  }
  return request;
}

std::optional<std::string> ErrorParam(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon > 32) return std::nullopt;
  const absl::string_view field = message.substr(0, colon);
  if (field == "body" || absl::StrContains(field, " ")) return std::nullopt;
  return std::string(field);
}

}  // namespace recur
