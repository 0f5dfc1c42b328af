#include "model/linear_attention.h"

#include <torch/torch.h>

namespace recur {

namespace F = torch::nn::functional;
using torch::indexing::Slice;

namespace {
// Sums accumulate in float32 for half-precision and float32 inputs, and in float64 for float64
// inputs (the precision the reference tests use).
torch::ScalarType AccumulationType(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// The chunkwise form with a per-head decay γ (log_gamma [H, 1]). fq, fk, fv: [B, H, nc·C, ·] after
// the feature map, padded with zero rows past the n real tokens. Query i of a chunk sees the state
// entering the chunk decayed by γ^(i+1), key j of a chunk reaches the chunk's end decayed by
// γ^(C−1−j), and the state entering chunk t is Σ_{u<t} γ^(C(t−1−u)) (chunk u's sum) + γ^(C·t) S₀:
// a product with an nc×nc matrix per head rather than a cumulative sum.
torch::Tensor DecayedChunkwise(const torch::Tensor& fq, const torch::Tensor& fk,
                               const torch::Tensor& fv, const torch::Tensor& log_gamma, int64_t n,
                               int64_t c, double eps, LinearAttentionState* state) {
  const int64_t b = fq.size(0), h = fq.size(1), d = fq.size(3), dv = fv.size(3);
  const int64_t chunks = fq.size(2) / c;
  auto q = fq.view({b, h, chunks, c, d});
  auto k = fk.view({b, h, chunks, c, d});
  auto v = fv.view({b, h, chunks, c, dv});

  auto position = torch::arange(c, fq.options());  // [C]
  auto query_decay = torch::exp(log_gamma * (position + 1)).view({1, h, 1, c, 1});
  auto key_decay = torch::exp(log_gamma * (c - 1 - position)).view({1, h, 1, c, 1});
  auto distance = position.unsqueeze(1) - position.unsqueeze(0);  // i − j, [C, C]
  auto intra = torch::exp(log_gamma.unsqueeze(-1) * distance.clamp_min(0))
                   .masked_fill(distance < 0, 0.0)
                   .view({1, h, 1, c, c});
  auto a = torch::matmul(q, k.transpose(-1, -2)) * intra;  // [B,H,nc,C,C]

  auto decayed_k = k * key_decay;
  auto chunk_s = torch::matmul(decayed_k.transpose(-1, -2), v);  // [B,H,nc,d,dv]
  auto chunk_z = decayed_k.sum(-2);                              // [B,H,nc,d]
  auto chunk_index = torch::arange(chunks, fq.options());
  auto gap = chunk_index.unsqueeze(1) - 1 - chunk_index.unsqueeze(0);  // t − 1 − u, [nc, nc]
  auto carry = torch::exp(log_gamma.unsqueeze(-1) * (c * gap.clamp_min(0)))
                   .masked_fill(gap < 0, 0.0)
                   .unsqueeze(0);  // [1,H,nc,nc]
  auto prev_s =
      torch::matmul(carry, chunk_s.reshape({b, h, chunks, d * dv})).view({b, h, chunks, d, dv});
  auto prev_z = torch::matmul(carry, chunk_z);
  if (state != nullptr) {
    auto entry = torch::exp(log_gamma * (c * chunk_index));  // γ^(C·t), [H, nc]
    prev_s = prev_s + entry.view({1, h, chunks, 1, 1}) * state->s.unsqueeze(2);
    prev_z = prev_z + entry.view({1, h, chunks, 1}) * state->z.unsqueeze(2);
  }

  auto numerator = query_decay * torch::matmul(q, prev_s) + torch::matmul(a, v);
  auto denominator = query_decay.squeeze(-1) * torch::matmul(q, prev_z.unsqueeze(-1)).squeeze(-1) +
                     a.sum(-1) + eps;
  auto y = (numerator / denominator.unsqueeze(-1)).view({b, h, chunks * c, dv});
  if (y.size(2) > n) y = y.index({Slice(), Slice(), Slice(0, n)});

  if (state != nullptr) {
    // After the last real token: S = γ^n S₀ + Σ_j γ^(n−1−j) φ(k_j) v_jᵀ (padded keys are zero).
    auto index = torch::arange(chunks * c, fq.options());
    auto weight = torch::exp(log_gamma * (n - 1 - index).clamp_min(0)).view({1, h, -1, 1});
    auto weighted_k = fk * weight;
    auto total = torch::exp(log_gamma.squeeze(1) * static_cast<double>(n));  // [H]
    state->s =
        total.view({1, h, 1, 1}) * state->s + torch::matmul(weighted_k.transpose(-1, -2), fv);
    state->z = total.view({1, h, 1}) * state->z + weighted_k.sum(-2);
  }
  return y;
}
}  // namespace

LinearAttentionState LinearAttentionState::Zeros(int64_t batch, int64_t heads, int64_t d,
                                                 int64_t dv, const torch::Device& device) {
  auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  return {torch::zeros({batch, heads, d, dv}, options), torch::zeros({batch, heads, d}, options)};
}

torch::Tensor EluFeatureMap(const torch::Tensor& x) { return F::elu(x) + 1.0; }

torch::Tensor MultiScaleDecay(int64_t heads, const torch::Device& device) {
  auto h = torch::arange(heads, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return 1.0 - torch::pow(2.0, -5.0 - h);
}

torch::Tensor LinearAttentionNaive(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, double eps, const torch::Tensor& decay) {
  const int64_t n = q.size(-2);
  auto scores = torch::matmul(EluFeatureMap(q), EluFeatureMap(k).transpose(-1, -2));  // [B,H,N,N]
  if (decay.defined()) {
    auto position = torch::arange(n, scores.options());
    auto distance = (position.unsqueeze(1) - position.unsqueeze(0)).clamp_min(0);  // i − j
    auto log_gamma = decay.to(scores.scalar_type()).log().view({-1, 1, 1});        // [H,1,1]
    scores = scores * torch::exp(log_gamma * distance);
  }
  auto causal = torch::ones({n, n}, q.options().dtype(torch::kBool)).tril();
  scores = scores.masked_fill(causal.logical_not(), 0.0);
  auto numerator = torch::matmul(scores, v);
  auto denominator = scores.sum(-1, /*keepdim=*/true) + eps;
  return numerator / denominator;
}

torch::Tensor LinearAttentionChunkwise(const torch::Tensor& q, const torch::Tensor& k,
                                       const torch::Tensor& v, int64_t chunk_size, double eps,
                                       LinearAttentionState* state, const torch::Tensor& decay) {
  TORCH_CHECK(chunk_size > 0, "chunk_size must be positive");
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), dv = v.size(3);
  const auto out_dtype = q.scalar_type();
  if (n == 0) return torch::zeros({b, h, 0, dv}, v.options());

  // Never below float32, whatever the activations: the sums grow with the position.
  const auto accum = AccumulationType(q);
  auto fq = EluFeatureMap(q.to(accum));
  auto fk = EluFeatureMap(k.to(accum));
  auto fv = v.to(accum);

  // Pad N up to a multiple of C. Padded keys get φ = 0 so they add nothing to any sum; padded
  // queries produce outputs that are dropped.
  const int64_t c = std::min(chunk_size, n);
  const int64_t chunks = (n + c - 1) / c;
  const int64_t pad = chunks * c - n;
  if (pad > 0) {
    fq = F::pad(fq, F::PadFuncOptions({0, 0, 0, pad}));
    fk = F::pad(fk, F::PadFuncOptions({0, 0, 0, pad}));
    fv = F::pad(fv, F::PadFuncOptions({0, 0, 0, pad}));
  }
  if (decay.defined()) {
    return DecayedChunkwise(fq, fk, fv, decay.to(accum).log().view({h, 1}), n, c, eps, state)
        .to(out_dtype);
  }
  fq = fq.view({b, h, chunks, c, d});
  fk = fk.view({b, h, chunks, c, d});
  fv = fv.view({b, h, chunks, c, dv});

  // Each chunk's contribution to the state, and the state entering each chunk (exclusive prefix
  // sum over chunks): one d×dv matrix per chunk boundary, never one per token.
  auto chunk_s = torch::matmul(fk.transpose(-1, -2), fv);  // [B,H,nc,d,dv]
  auto chunk_z = fk.sum(-2);                               // [B,H,nc,d]
  auto incl_s = chunk_s.cumsum(2);
  auto incl_z = chunk_z.cumsum(2);
  auto prev_s = incl_s - chunk_s;
  auto prev_z = incl_z - chunk_z;
  if (state != nullptr) {
    prev_s = prev_s + state->s.unsqueeze(2);
    prev_z = prev_z + state->z.unsqueeze(2);
  }

  // Inside a chunk: A = tril(Q Kᵀ), diagonal included.
  auto causal = torch::ones({c, c}, fq.options().dtype(torch::kBool)).tril();
  auto a = torch::matmul(fq, fk.transpose(-1, -2)).masked_fill(causal.logical_not(), 0.0);

  auto numerator = torch::matmul(fq, prev_s) + torch::matmul(a, fv);  // [B,H,nc,C,dv]
  auto denominator = torch::matmul(fq, prev_z.unsqueeze(-1)).squeeze(-1) + a.sum(-1) + eps;
  auto y = (numerator / denominator.unsqueeze(-1)).view({b, h, chunks * c, dv});
  if (pad > 0) y = y.index({Slice(), Slice(), Slice(0, n)});

  if (state != nullptr) {
    state->s = state->s + incl_s.select(2, chunks - 1);
    state->z = state->z + incl_z.select(2, chunks - 1);
  }
  return y.to(out_dtype);
}

torch::Tensor LinearAttentionStep(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, double eps, LinearAttentionState* state,
                                  const torch::Tensor& decay) {
  TORCH_CHECK(state != nullptr, "LinearAttentionStep needs a state");
  const auto accum = AccumulationType(q);
  auto fq = EluFeatureMap(q.to(accum));  // [B,H,d]
  auto fk = EluFeatureMap(k.to(accum));
  auto fv = v.to(accum);
  if (decay.defined()) {
    auto gamma = decay.to(state->s.scalar_type());
    state->s.mul_(gamma.view({1, -1, 1, 1}));
    state->z.mul_(gamma.view({1, -1, 1}));
  }
  // S ← S + φ(k) vᵀ,  z ← z + φ(k), in place so a pooled state needs no copy.
  state->s.add_(fk.unsqueeze(-1) * fv.unsqueeze(-2));
  state->z.add_(fk);
  auto numerator = torch::matmul(fq.unsqueeze(-2), state->s).squeeze(-2);  // [B,H,dv]
  auto denominator = (state->z * fq).sum(-1, /*keepdim=*/true) + eps;
  return (numerator / denominator).to(q.scalar_type());
}

}  // namespace recur
