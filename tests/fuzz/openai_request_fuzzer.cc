// POST /v1/completions bodies (server/openai_request.h) from fuzzed bytes: an INVALID_ARGUMENT
// naming a field, or a request that the engine's own checks (CheckRequest) then take or refuse;
// never a crash or an exception out of the JSON parser.

#include "model/tokenizer.h"
#include "server/generation_request.h"
#include "server/openai_request.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const recur::ByteTokenizer bytes;
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto request = recur::ParseCompletionRequest(body);
  if (!request.ok()) {
    recur::fuzz::Require(request.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  recur::fuzz::Require(request->generation.stop.size() <= recur::kMaxStopSequences);
  auto checked = recur::CheckRequest(request->generation, recur::RequestLimits(), bytes);
  if (checked.ok()) recur::fuzz::Require(checked->max_tokens >= 1);
  return 0;
}
