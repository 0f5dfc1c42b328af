#include "server/session_codec.h"

#include <torch/torch.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "model/safetensors.h"

namespace recur {

namespace {

constexpr char kFormat[] = "recur-session";
constexpr char kVersion[] = "1";

torch::Tensor LongTensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::TensorOptions().dtype(torch::kInt64))
      .view({static_cast<int64_t>(ids.size())});
}

template <typename... Parts>
absl::Status Invalid(const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat("session bytes: ", parts...));
}

}  // namespace

absl::StatusOr<std::string> EncodeSession(const SessionState& session, const ModelConfig& config) {
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
  tensors.emplace_back("seen", LongTensor(session.seen));
  return EncodeSafetensors(tensors, {{"format", kFormat},
                                     {"version", kVersion},
                                     {"consumed", absl::StrCat(session.consumed)},
                                     {"config", config.ToJson()}});
}

absl::StatusOr<SessionState> DecodeSession(absl::string_view bytes, const ModelConfig& config,
                                           const torch::Device& device) {
  auto file = ParseSafetensors(bytes, "session bytes");
  if (!file.ok()) return absl::InvalidArgumentError(file.status().message());
  auto meta = [&file](const std::string& key) {
    auto it = file->metadata.find(key);
    return it == file->metadata.end() ? std::string() : it->second;
  };
  if (meta("format") != kFormat)
    return Invalid("not a recur session (format '", meta("format"), "')");
  if (meta("version") != kVersion) return Invalid("unsupported version '", meta("version"), "'");
  auto their_config = ModelConfig::FromJson(meta("config"));
  if (!their_config.ok()) return Invalid("bad model config: ", their_config.status().message());
  if (their_config->ToJson() != config.ToJson()) {
    return Invalid("made by a different model (config ", their_config->ToJson(),
                   ", this server runs ", config.ToJson(), ")");
  }
  SessionState session;
  if (!absl::SimpleAtoi(meta("consumed"), &session.consumed) || session.consumed < 0) {
    return Invalid("bad 'consumed' count '", meta("consumed"), "'");
  }

  std::map<std::string, torch::Tensor> tensors = file->tensors;
  auto take = [&tensors](const std::string& name, torch::ScalarType dtype,
                         const std::vector<int64_t>& shape) -> absl::StatusOr<torch::Tensor> {
    auto it = tensors.find(name);
    if (it == tensors.end()) return Invalid("missing tensor '", name, "'");
    torch::Tensor t = it->second;
    tensors.erase(it);
    if (t.scalar_type() != dtype)
      return Invalid("tensor '", name, "' has dtype ", c10::toString(t.scalar_type()));
    if (!shape.empty() && t.sizes().vec() != shape) {
      return Invalid("tensor '", name, "' has shape ", c10::str(t.sizes()), ", expected ",
                     c10::str(shape));
    }
    if (!t.isfinite().all().item<bool>())
      return Invalid("tensor '", name, "' holds non-finite values");
    return t;
  };
  const int64_t h = config.num_heads, d = config.head_dim();
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string prefix = absl::StrCat("layers.", i, ".");
    if (config.attention == AttentionKind::kLinear) {
      auto s = take(prefix + "s", torch::kFloat32, {1, h, d, d});
      if (!s.ok()) return s.status();
      auto z = take(prefix + "z", torch::kFloat32, {1, h, d});
      if (!z.ok()) return z.status();
      session.model.linear.push_back({s->to(device), z->to(device)});
    } else {
      auto k = take(prefix + "k", torch::kFloat32, {1, h, session.consumed, d});
      if (!k.ok()) return k.status();
      auto v = take(prefix + "v", torch::kFloat32, {1, h, session.consumed, d});
      if (!v.ok()) return v.status();
      session.model.kv.push_back({k->to(device), v->to(device)});
    }
    if (config.short_conv > 0) {
      auto conv =
          take(prefix + "conv", torch::kFloat32, {1, config.short_conv - 1, 3 * config.d_model});
      if (!conv.ok()) return conv.status();
      session.model.conv.push_back(conv->to(device));
    }
  }
  for (const char* name : {"pending", "seen"}) {
    auto ids = take(name, torch::kInt64, {});
    if (!ids.ok()) return ids.status();
    if (ids->dim() != 1) return Invalid("tensor '", name, "' is not a list");
    auto* data = ids->data_ptr<int64_t>();
    std::vector<int64_t> list(data, data + ids->numel());
    for (int64_t id : list) {
      if (id < 0 || id >= config.vocab_size)
        return Invalid("token id ", id, " in '", name, "' is outside the vocabulary");
    }
    (std::string(name) == "pending" ? session.pending : session.seen) = std::move(list);
  }
  if (!tensors.empty()) return Invalid("unexpected tensor '", tensors.begin()->first, "'");
  if (session.pending.empty() && session.consumed > 0) {
    return Invalid("a session with text must hold its last token as pending");
  }
  session.model.positions = torch::full({1}, session.consumed,
                                        torch::TensorOptions().dtype(torch::kInt64).device(device));
  return session;
}

}  // namespace recur
