#include "model/model_state.h"

#include <torch/torch.h>

namespace recur {

namespace {
int64_t TensorBytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

template <typename Fn>
ModelState Map(const ModelState& in, Fn fn) {
  ModelState out;
  for (const auto& l : in.linear) out.linear.push_back({fn(l.s), fn(l.z)});
  for (const auto& c : in.kv) out.kv.push_back({fn(c.k), fn(c.v)});
  out.positions = fn(in.positions);
  return out;
}
}  // namespace

int64_t ModelState::Bytes() const {
  int64_t bytes = 0;
  for (const auto& l : linear) bytes += TensorBytes(l.s) + TensorBytes(l.z);
  for (const auto& c : kv) bytes += TensorBytes(c.k) + TensorBytes(c.v);
  return bytes;
}

ModelState ModelState::Clone() const {
  return Map(*this, [](const torch::Tensor& t) { return t.clone(); });
}

ModelState ModelState::To(const torch::Device& device) const {
  return Map(*this, [&device](const torch::Tensor& t) { return t.to(device); });
}

}  // namespace recur
