#include "model/config.h"

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "model/token_set.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace {

// A few tokens is the point; a wide kernel belongs to attention.
constexpr int64_t kMaxShortConv = 16;

// An enum's config.json names, in the enum's order.
template <typename Enum, size_t N>
struct EnumNames {
  const char* field;  // for errors: "unknown <field> '<name>' (expected ...)"
  std::array<absl::string_view, N> names;

  absl::string_view Name(Enum value) const { return names[static_cast<size_t>(value)]; }

  absl::StatusOr<Enum> Parse(absl::string_view name) const {
    for (size_t i = 0; i < N; ++i) {
      if (names[i] == name) return static_cast<Enum>(i);
    }
    std::string expected;
    for (size_t i = 0; i < N; ++i) {
      absl::StrAppend(&expected, i == 0 ? "" : (i + 1 == N ? " or " : ", "), "'", names[i], "'");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown ", field, " '", name, "' (expected ", expected, ")"));
  }
};

constexpr EnumNames<AttentionKind, 2> kAttentionKinds{"attention kind", {"linear", "softmax"}};
constexpr EnumNames<FeatureMap, 1> kFeatureMaps{"feature_map", {"elu+1"}};
constexpr EnumNames<PositionalEncoding, 2> kPositionalEncodings{"positional_encoding",
                                                                {"sinusoidal", "none"}};
constexpr EnumNames<StateDecay, 3> kStateDecays{"state_decay", {"none", "multiscale", "learned"}};

}  // namespace

absl::string_view AttentionKindName(AttentionKind kind) { return kAttentionKinds.Name(kind); }
absl::StatusOr<AttentionKind> ParseAttentionKind(absl::string_view name) {
  return kAttentionKinds.Parse(name);
}
absl::string_view FeatureMapName(FeatureMap map) { return kFeatureMaps.Name(map); }
absl::StatusOr<FeatureMap> ParseFeatureMap(absl::string_view name) {
  return kFeatureMaps.Parse(name);
}
absl::string_view PositionalEncodingName(PositionalEncoding encoding) {
  return kPositionalEncodings.Name(encoding);
}
absl::StatusOr<PositionalEncoding> ParsePositionalEncoding(absl::string_view name) {
  return kPositionalEncodings.Parse(name);
}
absl::string_view StateDecayName(StateDecay decay) { return kStateDecays.Name(decay); }
absl::StatusOr<StateDecay> ParseStateDecay(absl::string_view name) {
  return kStateDecays.Parse(name);
}

absl::Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t value) -> absl::Status {
    if (value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, got ", value));
  };
  for (const auto& [name, value] : {std::pair<const char*, int64_t>{"vocab_size", vocab_size},
                                    {"d_model", d_model},
                                    {"num_layers", num_layers},
                                    {"num_heads", num_heads},
                                    {"d_ff", d_ff},
                                    {"chunk_size", chunk_size}}) {
    RECUR_RETURN_IF_ERROR(positive(name, value));
  }
  if (d_model % num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("d_model (", d_model, ") must be divisible by num_heads (", num_heads, ")"));
  }
  if (positional_encoding == PositionalEncoding::kSinusoidal && d_model % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("d_model must be even for sinusoidal positions, got ", d_model));
  }
  if (short_conv < 0 || short_conv > kMaxShortConv) {
    return absl::InvalidArgumentError(
        absl::StrCat("short_conv must be in [0, ", kMaxShortConv, "] (0: none), got ", short_conv));
  }
  if (state_decay != StateDecay::kNone && attention != AttentionKind::kLinear) {
    return absl::InvalidArgumentError("state_decay applies to linear attention only");
  }
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("dropout must be in [0, 1), got ", dropout));
  }
  if (!(embedding_dropout >= 0.0 && embedding_dropout < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dropout must be in [0, 1), got ", embedding_dropout));
  }
  if (!(epsilon > 0.0 && std::isfinite(epsilon))) {
    return absl::InvalidArgumentError(absl::StrCat("epsilon must be positive, got ", epsilon));
  }
  return absl::OkStatus();
}

int64_t ModelConfig::StateBytesPerSequence() const {
  const int64_t d = head_dim();
  return num_layers * num_heads * (d * d + d) * static_cast<int64_t>(sizeof(float)) +
         ShortConvBytesPerSequence();
}

int64_t ModelConfig::ShortConvBytesPerSequence() const {
  if (short_conv == 0) return 0;
  return num_layers * (short_conv - 1) * 3 * d_model * static_cast<int64_t>(sizeof(float));
}

int64_t ModelConfig::HistoryBytes() const { return TokenSet::BytesFor(vocab_size); }

int64_t ModelConfig::SlotBytes() const {
  return attention == AttentionKind::kLinear ? StateBytesPerSequence() + HistoryBytes() : 0;
}

int64_t ModelConfig::KvCacheBytesPerToken() const {
  return num_layers * 2 * d_model * static_cast<int64_t>(sizeof(float));
}

namespace {

// Saturating arithmetic on non-negative counts: INT64_MAX stands for "too many".
int64_t Mul(int64_t a, int64_t b) {
  int64_t product = 0;
  return __builtin_mul_overflow(a, b, &product) ? std::numeric_limits<int64_t>::max() : product;
}
int64_t Add(int64_t a, int64_t b) {
  int64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? std::numeric_limits<int64_t>::max() : sum;
}

}  // namespace

int64_t ModelConfig::ParameterCount() const {
  const int64_t d = d_model, f = d_ff;
  int64_t block = 0;
  for (int64_t part : {
           Mul(4, d),                                            // norm1, norm2: weight and bias
           Mul(Mul(3, d), Add(d, 1)),                            // qkv: [3D, D] and a bias
           Mul(d, Add(d, 1)),                                    // out: [D, D] and a bias
           Mul(f, Add(d, 1)),                                    // ff_in: [F, D] and a bias
           Mul(d, Add(f, 1)),                                    // ff_out: [D, F] and a bias
           Mul(short_conv, Mul(3, d)),                           // the convolution's taps [K, 3D]
           state_decay == StateDecay::kLearned ? num_heads : 0,  // a decay rate per head
       }) {
    block = Add(block, part);
  }
  const int64_t embeddings = Mul(tie_embeddings ? 1 : 2, Mul(vocab_size, d));  // and lm_head
  return Add(Add(Mul(num_layers, block), Mul(2, d)), embeddings);  // + the final LayerNorm
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["vocab_size"] = vocab_size;
  j["d_model"] = d_model;
  j["num_layers"] = num_layers;
  j["num_heads"] = num_heads;
  j["d_ff"] = d_ff;
  j["dropout"] = dropout;
  j["embedding_dropout"] = embedding_dropout;
  j["attention"] = std::string(AttentionKindName(attention));
  j["feature_map"] = std::string(FeatureMapName(feature_map));
  j["positional_encoding"] = std::string(PositionalEncodingName(positional_encoding));
  j["short_conv"] = short_conv;
  j["state_decay"] = std::string(StateDecayName(state_decay));
  j["tie_embeddings"] = tie_embeddings;
  j["chunk_size"] = chunk_size;
  j["epsilon"] = epsilon;
  return j.dump();
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("model config is not a JSON object");
  }
  ModelConfig c;
  // Reads one required field, naming it in any error.
  auto read = [&j](const char* key, auto* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end())
      return absl::InvalidArgumentError(absl::StrCat("model config lacks '", key, "'"));
    using Value = std::decay_t<decltype(*out)>;
    if constexpr (std::is_same_v<Value, int64_t>) {
      if (it->is_number_float()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model config field '", key, "' must be an integer, got ", it->dump().substr(0, 32)));
      }
    }
    try {
      *out = it->template get<Value>();
    } catch (const nlohmann::json::exception&) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model config field '", key, "' has the wrong type: ", it->dump().substr(0, 32)));
    }
    return absl::OkStatus();
  };
  std::string attention, feature_map, positional_encoding, state_decay = "none";
  for (absl::Status s :
       {read("vocab_size", &c.vocab_size), read("d_model", &c.d_model),
        read("num_layers", &c.num_layers), read("num_heads", &c.num_heads), read("d_ff", &c.d_ff),
        read("dropout", &c.dropout), read("attention", &attention),
        read("feature_map", &feature_map), read("positional_encoding", &positional_encoding),
        read("tie_embeddings", &c.tie_embeddings), read("chunk_size", &c.chunk_size),
        read("epsilon", &c.epsilon)}) {
    if (!s.ok()) return s;
  }
  // Added after version 1's first checkpoints, so optional.
  if (j.contains("embedding_dropout")) {
    RECUR_RETURN_IF_ERROR(read("embedding_dropout", &c.embedding_dropout));
  }
  if (j.contains("short_conv")) {
    RECUR_RETURN_IF_ERROR(read("short_conv", &c.short_conv));
  }
  if (j.contains("state_decay")) {
    RECUR_RETURN_IF_ERROR(read("state_decay", &state_decay));
  }
  RECUR_ASSIGN_OR_RETURN(c.attention, ParseAttentionKind(attention));
  RECUR_ASSIGN_OR_RETURN(c.feature_map, ParseFeatureMap(feature_map));
  RECUR_ASSIGN_OR_RETURN(c.positional_encoding, ParsePositionalEncoding(positional_encoding));
  RECUR_ASSIGN_OR_RETURN(c.state_decay, ParseStateDecay(state_decay));
  RECUR_RETURN_IF_ERROR(c.Validate());
  return c;
}

}  // namespace recur
