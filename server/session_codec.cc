#include "server/session_codec.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "model/safetensors.h"

namespace recur {

namespace {

constexpr char kFormat[] = "recur-session";
constexpr char kVersion[] = "2";
constexpr char kListVersion[] = "1";  // `seen` as a list of ids

torch::Tensor LongTensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::TensorOptions().dtype(torch::kInt64))
      .view({static_cast<int64_t>(ids.size())});
}

template <typename... Parts>
absl::Status Invalid(const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat("session bytes: ", parts...));
}

}  // namespace

absl::StatusOr<std::string> EncodeSession(const SessionState& session, const ModelConfig& config,
                                          const SessionLabels& labels) {
  NamedTensors tensors;
  for (size_t i = 0; i < session.model.linear.size(); ++i) {
    tensors.emplace_back(absl::StrCat("layers.", i, ".s"), session.model.linear[i].s);
    tensors.emplace_back(absl::StrCat("layers.", i, ".z"), session.model.linear[i].z);
  }
  for (size_t i = 0; i < session.model.kv.size(); ++i) {
    // Only the filled part of the cache travels.
    tensors.emplace_back(absl::StrCat("layers.", i, ".k"),
                         session.model.kv[i].k.narrow(2, 0, session.consumed));
    tensors.emplace_back(absl::StrCat("layers.", i, ".v"),
                         session.model.kv[i].v.narrow(2, 0, session.consumed));
  }
  for (size_t i = 0; i < session.model.conv.size(); ++i) {
    tensors.emplace_back(absl::StrCat("layers.", i, ".conv"), session.model.conv[i]);
  }
  tensors.emplace_back("pending", LongTensor(session.pending));
  const std::vector<uint8_t> seen = session.seen.ToBytes();
  tensors.emplace_back("seen", torch::tensor(at::ArrayRef<uint8_t>(seen), torch::kUInt8)
                                   .view({static_cast<int64_t>(seen.size())}));
  std::map<std::string, std::string> metadata{{"format", kFormat},
                                              {"version", kVersion},
                                              {"consumed", absl::StrCat(session.consumed)},
                                              {"config", config.ToJson()}};
  if (!labels.id.empty()) {
    metadata["session_id"] = labels.id;
    metadata["tenant"] = labels.tenant;
  }
  return EncodeSafetensors(tensors, metadata);
}

namespace {

// The decoded file's tensors, taken one by one with their dtype and shape checked; what is left
// at the end was not expected.
class Tensors {
 public:
  explicit Tensors(std::map<std::string, torch::Tensor> tensors) : tensors_(std::move(tensors)) {}

  // `shape` empty: any shape.
  absl::StatusOr<torch::Tensor> Take(const std::string& name, torch::ScalarType dtype,
                                     const std::vector<int64_t>& shape) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) return Invalid("missing tensor '", name, "'");
    torch::Tensor t = it->second;
    tensors_.erase(it);
    if (t.scalar_type() != dtype) {
      return Invalid("tensor '", name, "' has dtype ", c10::toString(t.scalar_type()));
    }
    if (!shape.empty() && t.sizes().vec() != shape) {
      return Invalid("tensor '", name, "' has shape ", c10::str(t.sizes()), ", expected ",
                     c10::str(shape));
    }
    if (!t.isfinite().all().item<bool>()) {
      return Invalid("tensor '", name, "' holds non-finite values");
    }
    return t;
  }

  // A list of at most `max_length` token ids within the vocabulary.
  absl::StatusOr<std::vector<int64_t>> TakeIds(const std::string& name, int64_t vocab_size,
                                               int64_t max_length) {
    RECUR_ASSIGN_OR_RETURN(const torch::Tensor ids, Take(name, torch::kInt64, {}));
    if (ids.dim() != 1) return Invalid("tensor '", name, "' is not a list");
    if (ids.numel() > max_length) {
      return Invalid("'", name, "' holds ", ids.numel(), " tokens, more than ", max_length);
    }
    const auto* data = ids.data_ptr<int64_t>();
    std::vector<int64_t> list(data, data + ids.numel());
    for (int64_t id : list) {
      if (id < 0 || id >= vocab_size) {
        return Invalid("token id ", id, " in '", name, "' is outside the vocabulary");
      }
    }
    return list;
  }

  absl::Status ExpectEmpty() const {
    if (tensors_.empty()) return absl::OkStatus();
    return Invalid("unexpected tensor '", Excerpt(tensors_.begin()->first), "'");
  }

 private:
  std::map<std::string, torch::Tensor> tensors_;
};

// The repetition penalty's history: a bitmap (version 2) or a list of distinct ids (version 1).
absl::StatusOr<TokenSet> TakeSeen(Tensors& tensors, int64_t vocab_size, bool as_list) {
  TokenSet seen(vocab_size);
  if (as_list) {
    RECUR_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                           tensors.TakeIds("seen", vocab_size, vocab_size));
    for (int64_t id : ids) {
      if (!seen.Insert(id)) return Invalid("'seen' lists token ", id, " twice");
    }
    return seen;
  }
  RECUR_ASSIGN_OR_RETURN(const torch::Tensor bits,
                         tensors.Take("seen", torch::kUInt8, {(vocab_size + 7) / 8}));
  if (!seen.FromBytes({bits.data_ptr<uint8_t>(), static_cast<size_t>(bits.numel())})) {
    return Invalid("'seen' marks tokens outside the vocabulary");
  }
  return seen;
}

// Every layer's state (S and z or the key/value cache, and the convolution tail) into `model`.
absl::Status TakeLayers(Tensors& tensors, const ModelConfig& config, int64_t consumed,
                        const torch::Device& device, ModelState* model) {
  const int64_t h = config.num_heads, d = config.head_dim();
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string prefix = absl::StrCat("layers.", i, ".");
    if (config.attention == AttentionKind::kLinear) {
      RECUR_ASSIGN_OR_RETURN(auto s, tensors.Take(prefix + "s", torch::kFloat32, {1, h, d, d}));
      RECUR_ASSIGN_OR_RETURN(auto z, tensors.Take(prefix + "z", torch::kFloat32, {1, h, d}));
      model->linear.push_back({s.to(device), z.to(device)});
    } else {
      const std::vector<int64_t> shape{1, h, consumed, d};
      RECUR_ASSIGN_OR_RETURN(auto k, tensors.Take(prefix + "k", torch::kFloat32, shape));
      RECUR_ASSIGN_OR_RETURN(auto v, tensors.Take(prefix + "v", torch::kFloat32, shape));
      model->kv.push_back({k.to(device), v.to(device)});
    }
    if (config.short_conv > 0) {
      RECUR_ASSIGN_OR_RETURN(auto conv,
                             tensors.Take(prefix + "conv", torch::kFloat32,
                                          {1, config.short_conv - 1, 3 * config.d_model}));
      model->conv.push_back(conv.to(device));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SessionState> DecodeSession(absl::string_view bytes, const ModelConfig& config,
                                           const torch::Device& device, SessionLabels* labels) {
  auto file = ParseSafetensors(bytes, "session bytes");
  if (!file.ok()) return absl::InvalidArgumentError(file.status().message());
  auto meta = [&file](const std::string& key) {
    auto it = file->metadata.find(key);
    return it == file->metadata.end() ? std::string() : it->second;
  };
  if (meta("format") != kFormat) {
    return Invalid("not a recur session (format '", Excerpt(meta("format")), "')");
  }
  const bool list_version = meta("version") == kListVersion;
  if (meta("version") != kVersion && !list_version) {
    return Invalid("unsupported version '", Excerpt(meta("version")), "'");
  }
  auto their_config = ModelConfig::FromJson(meta("config"));
  if (!their_config.ok()) {
    return Invalid("bad model config: ", Excerpt(their_config.status().message(), 200));
  }
  if (their_config->ToJson() != config.ToJson()) {
    return Invalid("made by a different model (config ", their_config->ToJson(),
                   ", this server runs ", config.ToJson(), ")");
  }
  SessionState session;
  if (!absl::SimpleAtoi(meta("consumed"), &session.consumed) || session.consumed < 0 ||
      session.consumed > kMaxSessionTokens) {
    return Invalid("bad 'consumed' count '", Excerpt(meta("consumed")), "' (at most ",
                   kMaxSessionTokens, ")");
  }
  Tensors tensors(std::move(file->tensors));
  RECUR_RETURN_IF_ERROR(TakeLayers(tensors, config, session.consumed, device, &session.model));
  RECUR_ASSIGN_OR_RETURN(session.pending,
                         tensors.TakeIds("pending", config.vocab_size, kMaxPendingTokens));
  RECUR_ASSIGN_OR_RETURN(session.seen, TakeSeen(tensors, config.vocab_size, list_version));
  RECUR_RETURN_IF_ERROR(tensors.ExpectEmpty());
  if (session.pending.empty() && session.consumed > 0) {
    return Invalid("a session with text must hold its last token as pending");
  }
  session.model.positions = torch::full({1}, session.consumed,
                                        torch::TensorOptions().dtype(torch::kInt64).device(device));
  if (labels != nullptr) *labels = {meta("session_id"), meta("tenant")};
  return session;
}

}  // namespace recur
