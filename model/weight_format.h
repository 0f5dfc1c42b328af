#ifndef RECUR_MODEL_WEIGHT_FORMAT_H_
#define RECUR_MODEL_WEIGHT_FORMAT_H_

// How a served model stores its matrix weights. bfloat16 halves the bytes a decode step reads and
// runs the products through oneDNN's bfloat16 kernels (float32 accumulation inside them), which on
// a CPU with AVX512-BF16 are several times faster than float32 (docs/performance.md). Only the
// linear layers change (q/k/v, attention output, feed-forward, an untied output layer): their
// inputs are rounded to bfloat16 and their outputs come back as float32; embeddings, LayerNorms,
// biases, the softmax and the recurrent state (S, z, the key/value cache) stay float32. A tied
// output layer is the embedding and stays float32. For serving and evaluation; training keeps
// float32 weights.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/transformer.h"

namespace recur {

// kBFloat16Output: only an untied output layer in bfloat16, the largest product of a decode step
// at real vocabularies and the one where bfloat16 pays even for one row.
enum class WeightFormat { kFloat32, kBFloat16, kBFloat16Output };  // "fp32", "bf16", "bf16-output"

absl::string_view WeightFormatName(WeightFormat format);
// "fp32", "bf16" or "bf16-output"; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name);

// Converts the model's linear-layer weights to `format` in place.
void SetWeightFormat(TransformerLM& model, WeightFormat format);
// The format the model's linear layers are stored in (the output layer's alone decides
// kBFloat16Output).
WeightFormat WeightFormatOf(const TransformerLM& model);

// Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16); elsewhere oneDNN
// emulates it and float32 is faster.
bool CpuHasNativeBFloat16();

}  // namespace recur

#endif  // RECUR_MODEL_WEIGHT_FORMAT_H_
