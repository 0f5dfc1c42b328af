// Request validation (server/generation_request.h) on fuzzed fields: an INVALID_ARGUMENT or a
// request within every limit, never a crash.

#include <cmath>

#include "model/tokenizer.h"
#include "model/utf8.h"
#include "server/generation_request.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  static const recur::ByteTokenizer bytes;
  static const auto words =
      recur::WordTokenizer::FromWords({"<eos>", "<unk>", "the", "cat", "sat"}).value();
  const recur::Tokenizer& tokenizer =
      input.ConsumeBool() ? static_cast<const recur::Tokenizer&>(bytes) : words;
  recur::RequestLimits limits;
  limits.max_tokens = input.ConsumeIntegralInRange<int64_t>(1, 1 << 20);
  limits.default_max_tokens = input.ConsumeIntegralInRange<int64_t>(1, limits.max_tokens);
  limits.max_prompt_tokens = input.ConsumeIntegralInRange<int64_t>(1, 1 << 16);
  recur::GenerationRequest request;
  if (input.ConsumeBool()) request.max_tokens = input.ConsumeIntegral<int64_t>();
  request.sampling.temperature = input.ConsumeFloatingPoint<double>();
  request.sampling.top_k = input.ConsumeIntegral<int64_t>();
  request.sampling.top_p = input.ConsumeFloatingPoint<double>();
  request.sampling.repetition_penalty = input.ConsumeFloatingPoint<double>();
  request.session_id = input.ConsumeRandomLengthString(64);
  const int stops = input.ConsumeIntegralInRange(0, 20);
  for (int i = 0; i < stops; ++i) request.stop.push_back(input.ConsumeRandomLengthString(2048));
  request.prompt = input.ConsumeRemainingBytesAsString();

  auto checked = recur::CheckRequest(request, limits, tokenizer);
  if (!checked.ok()) return 0;
  recur::fuzz::Require(checked->max_tokens >= 1 && checked->max_tokens <= limits.max_tokens);
  recur::fuzz::Require(static_cast<int64_t>(checked->prompt.size()) <= limits.max_prompt_tokens);
  recur::fuzz::Require(recur::IsValidUtf8(request.prompt));
  recur::fuzz::Require(request.stop.size() <= recur::kMaxStopSequences);
  recur::fuzz::Require(std::isfinite(request.sampling.temperature));
  for (int64_t id : checked->prompt) {
    recur::fuzz::Require(id >= 0 && id < tokenizer.vocab_size());
  }
  return 0;
}
