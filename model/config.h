#ifndef RECUR_MODEL_CONFIG_H_
#define RECUR_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

// Each architectural choice is an enum with its config.json name: Name gives it, Parse reads it
// (INVALID_ARGUMENT naming the field and the names it accepts).

enum class AttentionKind { kLinear, kSoftmax };  // "linear", "softmax"
absl::string_view AttentionKindName(AttentionKind kind);
absl::StatusOr<AttentionKind> ParseAttentionKind(absl::string_view name);

// φ(x) = elu(x) + 1, the map of Katharopoulos et al.; the only one implemented.
enum class FeatureMap { kEluPlusOne };  // "elu+1"
absl::string_view FeatureMapName(FeatureMap map);
absl::StatusOr<FeatureMap> ParseFeatureMap(absl::string_view name);

// kSinusoidal: added to the embedding, computed at any position (the recurrent state has no
// length cap). kNone: no encoding; the model must tell positions apart by other means (a short
// convolution, the causal sums).
enum class PositionalEncoding { kSinusoidal, kNone };  // "sinusoidal", "none"
absl::string_view PositionalEncodingName(PositionalEncoding encoding);
absl::StatusOr<PositionalEncoding> ParsePositionalEncoding(absl::string_view name);

// Linear attention only. kNone: the paper's state, a plain sum. kMultiscale: each head's state
// decays by γ_h = 1 − 2^(−5−h) per token (see linear_attention.h), so old tokens fade at a
// different rate in each head. kLearned: the same start, then γ_h = sigmoid(a parameter) is
// trained with the rest.
enum class StateDecay { kNone, kMultiscale, kLearned };  // "none", "multiscale", "learned"
absl::string_view StateDecayName(StateDecay decay);
absl::StatusOr<StateDecay> ParseStateDecay(absl::string_view name);

// The architecture of a TransformerLM. Everything a checkpoint needs to rebuild the model.
struct ModelConfig {
  int64_t vocab_size = 257;
  int64_t d_model = 256;
  int64_t num_layers = 4;
  int64_t num_heads = 4;
  int64_t d_ff = 1024;
  double dropout = 0.0;
  // Training only: the probability of dropping a word type from the input embedding for a step
  // (every occurrence alike; Gal & Ghahramani 2016, as in AWD-LSTM). Optional in config.json.
  double embedding_dropout = 0.0;
  AttentionKind attention = AttentionKind::kLinear;
  FeatureMap feature_map = FeatureMap::kEluPlusOne;
  PositionalEncoding positional_encoding = PositionalEncoding::kSinusoidal;
  // Width K of a causal depthwise convolution over the q, k, v projections of every attention
  // layer (see short_convolution.h); 0: none. Optional in config.json.
  int64_t short_conv = 0;
  // Optional in config.json.
  StateDecay state_decay = StateDecay::kNone;
  bool tie_embeddings = true;
  // Chunk length of the chunkwise-parallel form used by Forward and Prefill.
  int64_t chunk_size = 64;
  // Added to the linear-attention denominator.
  double epsilon = 1e-6;

  int64_t head_dim() const { return d_model / num_heads; }

  // An error that names the offending field, or OK.
  absl::Status Validate() const;

  // Bytes of recurrent state per sequence for linear attention: L·H·(d·d + d) float32 values,
  // plus L·(K−1)·3·d_model for a short convolution's last inputs (the part softmax attention has
  // too). For softmax attention, the key/value cache bytes per token of context: L·2·d_model.
  int64_t StateBytesPerSequence() const;
  int64_t ShortConvBytesPerSequence() const;
  int64_t KvCacheBytesPerToken() const;
  // The repetition penalty's history of one session: a bitmap over the vocabulary
  // (model/token_set.h), ceil(vocab_size / 64) · 8 bytes.
  int64_t HistoryBytes() const;
  // What one server slot holds whatever its length, the one answer every accounting uses:
  // StateBytesPerSequence() + HistoryBytes() for linear attention; 0 for softmax attention, whose
  // cache grows with the text (KvCacheBytesPerToken() a token).
  int64_t SlotBytes() const;

  // The model's parameter count, from the formula (docs/model.md), without building it;
  // INT64_MAX when that overflows. The checkpoint loader checks it against the weights file.
  int64_t ParameterCount() const;

  std::string ToJson() const;  // a JSON object
  static absl::StatusOr<ModelConfig> FromJson(absl::string_view json);
};

}  // namespace recur

#endif  // RECUR_MODEL_CONFIG_H_
