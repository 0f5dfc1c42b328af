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
}  // namespace

LinearAttentionState LinearAttentionState::Zeros(int64_t batch, int64_t heads, int64_t d,
                                                 int64_t dv, const torch::Device& device) {
  auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  return {torch::zeros({batch, heads, d, dv}, options), torch::zeros({batch, heads, d}, options)};
}

torch::Tensor EluFeatureMap(const torch::Tensor& x) { return F::elu(x) + 1.0; }

torch::Tensor LinearAttentionNaive(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, double eps) {
  const int64_t n = q.size(-2);
  auto scores = torch::matmul(EluFeatureMap(q), EluFeatureMap(k).transpose(-1, -2));  // [B,H,N,N]
  auto causal = torch::ones({n, n}, q.options().dtype(torch::kBool)).tril();
  scores = scores.masked_fill(causal.logical_not(), 0.0);
  auto numerator = torch::matmul(scores, v);
  auto denominator = scores.sum(-1, /*keepdim=*/true) + eps;
  return numerator / denominator;
}

torch::Tensor LinearAttentionChunkwise(const torch::Tensor& q, const torch::Tensor& k,
                                       const torch::Tensor& v, int64_t chunk_size, double eps,
                                       LinearAttentionState* state) {
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
  fq = fq.view({b, h, chunks, c, d});
  fk = fk.view({b, h, chunks, c, d});
  fv = fv.view({b, h, chunks, c, dv});

  // Each chunk's contribution to the state, and the state entering each chunk (exclusive prefix
  // sum over chunks): one d×dv matrix per chunk boundary, never one per token.
  auto chunk_s = torch::matmul(fk.transpose(-1, -2), fv);  // [B,H,nc,d,dv]
  auto chunk_z = fk.sum(-2);                                // [B,H,nc,d]
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
                                  const torch::Tensor& v, double eps,
                                  LinearAttentionState* state) {
  TORCH_CHECK(state != nullptr, "LinearAttentionStep needs a state");
  const auto accum = AccumulationType(q);
  auto fq = EluFeatureMap(q.to(accum));  // [B,H,d]
  auto fk = EluFeatureMap(k.to(accum));
  auto fv = v.to(accum);
  // S ← S + φ(k) vᵀ,  z ← z + φ(k), in place so a pooled state needs no copy.
  state->s.add_(fk.unsqueeze(-1) * fv.unsqueeze(-2));
  state->z.add_(fk);
  auto numerator = torch::matmul(fq.unsqueeze(-2), state->s).squeeze(-2);  // [B,H,dv]
  auto denominator = (state->z * fq).sum(-1, /*keepdim=*/true) + eps;
  return (numerator / denominator).to(q.scalar_type());
}

}  // namespace recur
