#ifndef RECUR_MODEL_WEIGHT_FORMAT_H_
#define RECUR_MODEL_WEIGHT_FORMAT_H_

// How a served model stores its matrix weights (model/linear_layer.h). bfloat16 halves the bytes a
// decode step reads and runs the products through oneDNN's bfloat16 kernels (float32 accumulation
// inside them), which on a CPU with AVX512-BF16 are several times faster than float32
// (docs/performance.md). Only the linear layers change (q/k/v, attention output, feed-forward, an
// untied output layer): their inputs are rounded to bfloat16 and their outputs come back as
// float32; embeddings, LayerNorms, biases, the softmax and the recurrent state (S, z, the key/value
// cache) stay float32. A tied output layer is the embedding and stays float32. int8 quarters the
// bytes: every linear layer's weight quantised per row, the input quantised per call (LibTorch's
// dynamic quantised linear). Debian's LibTorch 1.13 runs it on oneDNN's generic kernel, 2–3x slower
// than float32 on the machines measured (docs/performance.md), and since the input's range is the
// whole call's, a row's logits depend on the rows batched with it. For serving and evaluation;
// training keeps float32 weights.

#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/transformer.h"

namespace recur {

// kBFloat16Output: only an untied output layer in bfloat16, the largest product of a decode step
// at real vocabularies and the one where bfloat16 pays even for one row.
// "fp32", "bf16", "bf16-output", "int8".
enum class WeightFormat { kFloat32, kBFloat16, kBFloat16Output, kInt8 };

absl::string_view WeightFormatName(WeightFormat format);
// A format's name, or "auto": the fastest format for `device` (ChooseWeightFormat).
// INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view name, const torch::Device& device);

// The fastest exact-enough format for serving on `device`: on a CPU that multiplies bfloat16
// natively, kBFloat16Output (the fastest at batch 1 and 64, docs/performance.md); elsewhere
// kFloat32, including GPUs (not measured yet).
WeightFormat ChooseWeightFormat(const torch::Device& device);

// Converts the model's linear-layer weights to `format` in place. A model in int8 cannot be
// converted again (its float32 weights are gone): FAILED_PRECONDITION, as for int8 off the CPU.
absl::Status SetWeightFormat(TransformerLM& model, WeightFormat format);
// The format the model's linear layers are stored in (the output layer's alone decides
// kBFloat16Output).
WeightFormat WeightFormatOf(const TransformerLM& model);

// Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16); elsewhere oneDNN
// emulates it and float32 is faster.
bool CpuHasNativeBFloat16();

}  // namespace recur

#endif  // RECUR_MODEL_WEIGHT_FORMAT_H_
