#ifndef RECUR_MODEL_MODEL_STATE_H_
#define RECUR_MODEL_MODEL_STATE_H_

#include <torch/types.h>

#include <vector>

#include "model/linear_attention.h"
#include "model/softmax_attention.h"

namespace recur {

// Everything a TransformerLM remembers about a batch of sequences after the text so far: per layer
// the linear-attention sums (constant size) or the softmax key/value cache (grows with the text),
// and each row's position. Lives on one torch::Device.
struct ModelState {
  std::vector<LinearAttentionState> linear;  // one per layer, for linear attention
  std::vector<KeyValueCache> kv;             // one per layer, for softmax attention
  // One per layer when the model has a short convolution: its last K−1 q/k/v inputs [B, K−1, 3D].
  std::vector<torch::Tensor> conv;
  torch::Tensor positions;  // [B] int64: tokens consumed per row

  int64_t batch_size() const { return positions.size(0); }
  torch::Device device() const { return positions.device(); }

  // Bytes of attention state (S and z, or the key/value cache, and any short-convolution inputs):
  // what a server accounts per slot.
  int64_t Bytes() const;

  // A deep copy, e.g. to fork a session.
  ModelState Clone() const;
};

// The rows of several states stacked into one batch, in order (how a server joins sessions into
// one decode step). Key/value caches are padded to the largest capacity; the padding lies past
// every row's position, so it is never attended to. All states must have the same layout.
ModelState ConcatStates(const std::vector<const ModelState*>& states);

// The given rows of `state`, in order (how a session leaves a batch). Key/value caches are
// trimmed to the furthest position among the rows taken.
ModelState SelectRows(const ModelState& state, const std::vector<int64_t>& rows);

}  // namespace recur

#endif  // RECUR_MODEL_MODEL_STATE_H_
