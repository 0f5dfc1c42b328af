#include "model/transformer.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "model/linear_attention.h"
#include "model/positional_encoding.h"
#include "model/short_convolution.h"
#include "model/softmax_attention.h"

namespace recur {

namespace F = torch::nn::functional;
using torch::indexing::Slice;

namespace {
constexpr char kShortConvolutionName[] = "conv";
constexpr char kDecayLogitName[] = "decay_logit";

}  // namespace

bool IsShortConvolutionWeight(const std::string& parameter_name) {
  return absl::EndsWith(parameter_name, absl::StrCat("attention.", kShortConvolutionName));
}

AttentionLayerImpl::AttentionLayerImpl(const ModelConfig& c) : config(c) {
  qkv = register_module("qkv", LinearLayer(c.d_model, 3 * c.d_model));
  if (c.short_conv > 0) {
    conv = register_parameter(kShortConvolutionName, torch::zeros({c.short_conv, 3 * c.d_model}));
  }
  out = register_module("out", LinearLayer(c.d_model, c.d_model));
  if (c.state_decay == StateDecay::kMultiscale) {
    decay = register_buffer("decay", MultiScaleDecay(c.num_heads, torch::kCPU));
  } else if (c.state_decay == StateDecay::kLearned) {
    decay_logit = register_parameter(kDecayLogitName,
                                     torch::logit(MultiScaleDecay(c.num_heads, torch::kCPU)));
  }
}

torch::Tensor AttentionLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& positions,
                                          LinearAttentionState* linear, KeyValueCache* kv,
                                          torch::Tensor* conv_tail) {
  const int64_t b = x.size(0), n = x.size(1), h = config.num_heads, d = config.head_dim();
  auto projected = qkv(x);  // [B, N, 3D]
  if (conv.defined()) projected = CausalShortConvolution(projected, conv, conv_tail);
  // [B, N, 3D] → three [B, H, N, d].
  auto parts = projected.view({b, n, 3, h, d}).permute({2, 0, 3, 1, 4});
  auto q = parts[0], k = parts[1], v = parts[2];

  torch::Tensor y;
  if (config.attention == AttentionKind::kLinear) {
    const torch::Tensor gamma = decay_logit.defined() ? torch::sigmoid(decay_logit) : decay;
    if (linear != nullptr && n == 1) {
      y = LinearAttentionStep(q.squeeze(2), k.squeeze(2), v.squeeze(2), config.epsilon, linear,
                              gamma)
              .unsqueeze(2);
    } else {
      y = LinearAttentionChunkwise(q, k, v, config.chunk_size, config.epsilon, linear, gamma);
    }
  } else {
    y = kv != nullptr ? CachedSoftmaxAttention(q, k, v, positions, kv)
                      : CausalSoftmaxAttention(q, k, v);
  }
  return out(y.transpose(1, 2).reshape({b, n, h * d}));
}

TransformerBlockImpl::TransformerBlockImpl(const ModelConfig& c) {
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  attention = register_module("attention", AttentionLayer(c));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  ff_in = register_module("ff_in", LinearLayer(c.d_model, c.d_ff));
  ff_out = register_module("ff_out", LinearLayer(c.d_ff, c.d_model));
  dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& positions,
                                            LinearAttentionState* linear, KeyValueCache* kv,
                                            torch::Tensor* conv_tail) {
  auto h = x + dropout(attention(norm1(x), positions, linear, kv, conv_tail));
  return h + dropout(ff_out(dropout(F::gelu(ff_in(norm2(h))))));
}

torch::Tensor EmbeddingDropout(const torch::Tensor& weight, double p) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "embedding dropout must be in [0, 1), got ", p);
  if (p == 0.0) return weight;
  auto keep = torch::empty({weight.size(0), 1}, weight.options()).bernoulli_(1.0 - p);
  return weight * keep / (1.0 - p);
}

TransformerLMImpl::TransformerLMImpl(const ModelConfig& config) : config_(config) {
  auto status = config.Validate();
  TORCH_CHECK(status.ok(), "invalid model config: ", std::string(status.message()));
  embedding = register_module("embedding", torch::nn::Embedding(config.vocab_size, config.d_model));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_layers; ++i) blocks->push_back(TransformerBlock(config));
  final_norm = register_module("final_norm",
                               torch::nn::LayerNorm(torch::nn::LayerNormOptions({config.d_model})));
  if (!config.tie_embeddings) {
    lm_head =
        register_module("lm_head", LinearLayer(config.d_model, config.vocab_size, /*bias=*/false));
  }
  dropout = register_module("dropout", torch::nn::Dropout(config.dropout));

  // GPT-2 style initialisation, the embedding included (std 0.02). A tied output scores h·E[j],
  // and at the start h (norm √D) still points mostly along the read token's embedding, so that
  // token scores about 0.02·D·cos: 5 at D = 256 at most, and the first loss is ≈ ln V. The
  // embedding used to start at std 1/√D (to match the unit-size positional encoding after the
  // √D scale), which gave that token a logit near √D and a first loss of 13.5 nats for bytes.
  constexpr double kEmbeddingStd = 0.02;
  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config.num_layers));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    auto& p = item.value();
    if (name == "embedding.weight") {
      p.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(config.d_model)));
    } else if (IsShortConvolutionWeight(name)) {
      // The identity (all weight on the current position): training starts from the model without
      // the convolution and learns how far back to look.
      p.zero_();
      p[config.short_conv - 1].fill_(1.0);
    } else if (absl::EndsWith(name, kDecayLogitName)) {
      continue;  // a learned decay starts as the multiscale one, set by its layer
    } else if (p.dim() == 2) {
      const bool residual_out = name.find("attention.out.weight") != std::string::npos ||
                                name.find("ff_out.weight") != std::string::npos;
      p.normal_(0.0, residual_out ? residual_std : 0.02);
    } else if (name == "final_norm.weight" && config.tie_embeddings) {
      // Random signs, ±1. A tied output scores h·E[j], and at the start h (norm √D) points along
      // the embedding of the token just read, which the residual stream still mostly is: with unit
      // gains that token scored about √D and the first loss sat far above ln V (13.5 nats against
      // 5.55 for bytes at D = 256). Random signs leave h its size (so the logits can grow as fast)
      // but turn it away from E[t]: every logit then starts about N(0, 1), and the first loss
      // about ln V + ½.
      p.bernoulli_(0.5).mul_(2.0).sub_(1.0);
    } else if (name.find("norm") != std::string::npos && absl::EndsWith(name, "weight")) {
      p.fill_(1.0);
    } else {
      p.zero_();
    }
  }
}

int64_t TransformerLMImpl::ParameterCount() const {
  int64_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

ModelState TransformerLMImpl::NewState(int64_t batch, const torch::Device& device) const {
  ModelState state;
  const int64_t h = config_.num_heads, d = config_.head_dim();
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (config_.attention == AttentionKind::kLinear) {
      state.linear.push_back(LinearAttentionState::Zeros(batch, h, d, d, device));
    } else {
      state.kv.push_back(KeyValueCache::Empty(batch, h, d, device));
    }
  }
  for (int64_t i = 0; config_.short_conv > 0 && i < config_.num_layers; ++i) {
    state.conv.push_back(torch::zeros({batch, config_.short_conv - 1, 3 * config_.d_model},
                                      torch::TensorOptions().device(device)));
  }
  state.positions =
      torch::zeros({batch}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return state;
}

torch::Tensor TransformerLMImpl::Hidden(const torch::Tensor& tokens, const torch::Tensor& positions,
                                        ModelState* state) {
  const double scale = std::sqrt(static_cast<double>(config_.d_model));
  auto x = Embed(tokens) * scale;
  if (config_.positional_encoding == PositionalEncoding::kSinusoidal)
    x = x + SinusoidalEncoding(positions, config_.d_model);
  x = dropout(x);
  torch::Tensor start = state != nullptr ? state->positions : torch::Tensor();
  for (size_t i = 0; i < blocks->size(); ++i) {
    LinearAttentionState* linear =
        state != nullptr && !state->linear.empty() ? &state->linear[i] : nullptr;
    KeyValueCache* kv = state != nullptr && !state->kv.empty() ? &state->kv[i] : nullptr;
    torch::Tensor* conv_tail = state != nullptr && !state->conv.empty() ? &state->conv[i] : nullptr;
    x = blocks[i]->as<TransformerBlock>()->forward(x, start, linear, kv, conv_tail);
  }
  return final_norm(x);
}

torch::Tensor TransformerLMImpl::Embed(const torch::Tensor& tokens) {
  if (!is_training() || config_.embedding_dropout == 0.0) return embedding(tokens);
  // Only the input side: a tied output layer keeps scoring every word.
  return F::embedding(tokens, EmbeddingDropout(embedding->weight, config_.embedding_dropout));
}

torch::Tensor TransformerLMImpl::Logits(const torch::Tensor& hidden) {
  return config_.tie_embeddings ? torch::matmul(hidden, embedding->weight.t()) : lm_head(hidden);
}

torch::Tensor TransformerLMImpl::Forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "Forward expects tokens [B, N], got ", tokens.sizes());
  // [1, N]: every row starts at 0, so one row of encodings broadcasts over the batch.
  auto positions =
      torch::arange(tokens.size(1), tokens.options().dtype(torch::kInt64)).unsqueeze(0);
  return Logits(Hidden(tokens, positions, nullptr));
}

torch::Tensor TransformerLMImpl::HiddenAfter(const torch::Tensor& tokens, ModelState* state,
                                             const char* caller) {
  TORCH_CHECK(state != nullptr, caller, " needs a state");
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) >= 1, caller, " expects tokens [B, N>=1], got ",
              tokens.sizes());
  TORCH_CHECK(tokens.size(0) == state->batch_size(), caller, ": ", tokens.size(0),
              " rows of tokens for a state of ", state->batch_size());
  const int64_t n = tokens.size(1);
  auto positions =
      state->positions.unsqueeze(1) + torch::arange(n, state->positions.options()).unsqueeze(0);
  auto hidden = Hidden(tokens, positions, state);
  state->positions = state->positions + n;
  return hidden;
}

torch::Tensor TransformerLMImpl::Prefill(const torch::Tensor& tokens, ModelState* state) {
  return Logits(HiddenAfter(tokens, state, "Prefill").index({Slice(), -1}));
}

torch::Tensor TransformerLMImpl::Continue(const torch::Tensor& tokens, ModelState* state) {
  return Logits(HiddenAfter(tokens, state, "Continue"));
}

torch::Tensor TransformerLMImpl::Step(const torch::Tensor& tokens, ModelState* state) {
  TORCH_CHECK(tokens.dim() == 1, "Step expects tokens [B], got ", tokens.sizes());
  return Prefill(tokens.unsqueeze(1), state);
}

}  // namespace recur
