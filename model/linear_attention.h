#ifndef RECUR_MODEL_LINEAR_ATTENTION_H_
#define RECUR_MODEL_LINEAR_ATTENTION_H_

// Causal linear attention (Katharopoulos et al. 2020) in its three forms. They compute the same
// function; tests hold them equal. Shapes: q, k [B, H, N, d]; v [B, H, N, dv]. The feature map
// φ(x) = elu(x) + 1 is applied inside every form, so callers pass raw projections.
//
// The recurrent state of one head is S = Σ φ(k) vᵀ (d×dv) and z = Σ φ(k) (d). It is always kept in
// float32 (z grows with the position and would overflow half precision).
//
// Every form optionally takes `decay`, a per-head γ ∈ (0, 1] ([H], float): the state then forgets
// geometrically, S ← γ S + φ(k) vᵀ and z ← γ z + φ(k), so key j weighs γ^(i−j) at query i (as in
// RetNet, Sun et al. 2023). An undefined tensor means γ = 1, the paper's form. γ may require
// gradients (a learned decay): the naive and chunkwise forms differentiate through it.

#include <torch/types.h>

namespace recur {

// The running sums carried across chunks and decode steps, per batch row and head.
struct LinearAttentionState {
  torch::Tensor s;  // [B, H, d, dv] float32
  torch::Tensor z;  // [B, H, d] float32

  static LinearAttentionState Zeros(int64_t batch, int64_t heads, int64_t d, int64_t dv,
                                    const torch::Device& device);
};

// φ(x) = elu(x) + 1: positive, so the normaliser never vanishes.
torch::Tensor EluFeatureMap(const torch::Tensor& x);

// The O(N²) reference: y_i = Σ_{j≤i} w_ij v_j / (Σ_{j≤i} w_ij + ε), w_ij = γ^(i−j) φ(q_i)·φ(k_j).
torch::Tensor LinearAttentionNaive(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, double eps,
                                   const torch::Tensor& decay = {});

// The chunkwise-parallel form: O(N·C·d + N·d²) time as batched matrix products. Continues from
// `state` when it is non-null (and leaves the state after the last token there); starts from zero
// otherwise. Any chunk size works, including one that does not divide N. Differentiable.
torch::Tensor LinearAttentionChunkwise(const torch::Tensor& q, const torch::Tensor& k,
                                       const torch::Tensor& v, int64_t chunk_size, double eps,
                                       LinearAttentionState* state = nullptr,
                                       const torch::Tensor& decay = {});

// One recurrent step: q, k [B, H, d], v [B, H, dv]. Updates `state` in place, returns y [B, H, dv].
torch::Tensor LinearAttentionStep(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, double eps, LinearAttentionState* state,
                                  const torch::Tensor& decay = {});

// γ_h = 1 − 2^(−5−h) for heads h = 0 … H−1 (RetNet's multi-scale decay: horizons of 32, 64, 128 …
// tokens), as float32 on `device`.
torch::Tensor MultiScaleDecay(int64_t heads, const torch::Device& device);

}  // namespace recur

#endif  // RECUR_MODEL_LINEAR_ATTENTION_H_
