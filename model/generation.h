#ifndef RECUR_MODEL_GENERATION_H_
#define RECUR_MODEL_GENERATION_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "model/sampling.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace recur {

struct GenerationOptions {
  int64_t max_tokens = 128;
  SamplingParams sampling;
  // Stop after emitting a token that ends the document by this tokenizer's rule
  // (Tokenizer::EndsDocument), as the server does; null: never stops early.
  const Tokenizer* stop_at_document_end = nullptr;
};

// The model library's own generation loop for one sequence: Prefill the prompt, then Step and
// sample token by token. `on_token` sees each new id as it is chosen and may return false to stop.
// The reference the server's batched engine must agree with. The prompt must be non-empty.
std::vector<int64_t> Generate(TransformerLM& model, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<bool(int64_t)>& on_token = {});

}  // namespace recur

#endif  // RECUR_MODEL_GENERATION_H_
