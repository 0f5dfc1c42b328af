#ifndef RECUR_MODEL_TRANSFORMER_H_
#define RECUR_MODEL_TRANSFORMER_H_

// The decoder-only language model shared by recur-train and recur-server: token embedding scaled
// by √D plus sinusoidal positions (or none), pre-LayerNorm blocks (attention, its q, k, v
// optionally through a short convolution, then a GELU feed-forward), a final LayerNorm and a tied
// or untied output layer.
//
// Three entry points compute the same function:
//   Forward  — training: all positions at once (chunkwise linear attention or masked softmax).
//   Prefill  — a prompt into a ModelState (chunkwise), returning the last position's logits.
//   Step     — one token per row of a batch of states (the recurrent form), returning logits.

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "model/config.h"
#include "model/linear_layer.h"
#include "model/model_state.h"

namespace recur {

// Multi-head causal attention of either kind, with q/k/v and output projections.
struct AttentionLayerImpl : torch::nn::Module {
  explicit AttentionLayerImpl(const ModelConfig& config);

  // x: [B, N, D]. Without a state: training (no memory kept). With one: continues each row from
  // `positions` ([B] int64), updating `linear` or `kv` (whichever the kind uses) and `conv_tail`
  // (when the config has a short convolution).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions = {},
                        LinearAttentionState* linear = nullptr, KeyValueCache* kv = nullptr,
                        torch::Tensor* conv_tail = nullptr);

  ModelConfig config;
  LinearLayer qkv{nullptr};
  torch::Tensor conv;  // [K, 3D] short-convolution weights over q, k, v; undefined without one
  // [H] each head's state decay γ with state_decay "multiscale" (a buffer: follows the module's
  // device, not saved); undefined otherwise.
  torch::Tensor decay;
  // [H] logit of each head's γ with state_decay "learned" (a parameter, saved with the others).
  torch::Tensor decay_logit;
  LinearLayer out{nullptr};
};
TORCH_MODULE(AttentionLayer);

// Whether a name from named_parameters() is a short convolution's taps: they start as the
// identity and take no weight decay, unlike the other matrices.
bool IsShortConvolutionWeight(const std::string& parameter_name);

struct TransformerBlockImpl : torch::nn::Module {
  explicit TransformerBlockImpl(const ModelConfig& config);

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions = {},
                        LinearAttentionState* linear = nullptr, KeyValueCache* kv = nullptr,
                        torch::Tensor* conv_tail = nullptr);

  torch::nn::LayerNorm norm1{nullptr};
  AttentionLayer attention{nullptr};
  torch::nn::LayerNorm norm2{nullptr};
  LinearLayer ff_in{nullptr};
  LinearLayer ff_out{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(TransformerBlock);

// Embedding dropout: `weight` [V, D] with each row (word type) zeroed with probability p and the
// rest scaled by 1 / (1 - p), so a dropped word is missing at every one of its occurrences.
torch::Tensor EmbeddingDropout(const torch::Tensor& weight, double p);

struct TransformerLMImpl : torch::nn::Module {
  // `config` must be valid (ModelConfig::Validate); an invalid one throws.
  explicit TransformerLMImpl(const ModelConfig& config);

  // tokens: [B, N] int64 → logits [B, N, V]. Every sequence starts at position 0.
  torch::Tensor Forward(const torch::Tensor& tokens);
  torch::Tensor forward(const torch::Tensor& tokens) { return Forward(tokens); }

  // A zero state for `batch` sequences on `device` (position 0, nothing seen).
  ModelState NewState(int64_t batch, const torch::Device& device) const;

  // Feeds tokens [B, N] (N ≥ 1) after what `state` has seen; returns the logits after the last
  // one, [B, V]. Prefill(a) then Prefill(b) equals Prefill(a + b).
  torch::Tensor Prefill(const torch::Tensor& tokens, ModelState* state);

  // As Prefill, but returns the logits at every position, [B, N, V]: scoring a long text in
  // pieces with the context carried over (Continue(a) then Continue(b) scores a + b).
  torch::Tensor Continue(const torch::Tensor& tokens, ModelState* state);

  // Feeds one token per row, tokens [B]; returns logits [B, V]. The recurrent form.
  torch::Tensor Step(const torch::Tensor& tokens, ModelState* state);

  const ModelConfig& config() const { return config_; }
  int64_t ParameterCount() const;

  torch::nn::Embedding embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
  LinearLayer lm_head{nullptr};  // null when the embedding is tied
  torch::nn::Dropout dropout{nullptr};

 private:
  // Runs the stack on tokens [B, N] at positions [B, N]; with a state, continues it.
  torch::Tensor Hidden(const torch::Tensor& tokens, const torch::Tensor& positions,
                       ModelState* state);
  // Hidden for tokens [B, N] after what `state` has seen; advances the state.
  torch::Tensor HiddenAfter(const torch::Tensor& tokens, ModelState* state, const char* caller);
  torch::Tensor Logits(const torch::Tensor& hidden);
  // The input embedding of tokens, with embedding dropout when training.
  torch::Tensor Embed(const torch::Tensor& tokens);

  ModelConfig config_;
};
TORCH_MODULE(TransformerLM);

}  // namespace recur

#endif  // RECUR_MODEL_TRANSFORMER_H_
