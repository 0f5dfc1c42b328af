#include "model/model_state.h"

#include <torch/torch.h>

#include <algorithm>

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
  for (const auto& c : in.conv) out.conv.push_back(fn(c));
  out.positions = fn(in.positions);
  return out;
}
}  // namespace

int64_t ModelState::Bytes() const {
  int64_t bytes = 0;
  for (const auto& l : linear) bytes += TensorBytes(l.s) + TensorBytes(l.z);
  for (const auto& c : kv) bytes += TensorBytes(c.k) + TensorBytes(c.v);
  for (const auto& c : conv) bytes += TensorBytes(c);
  return bytes;
}

ModelState ModelState::Clone() const {
  return Map(*this, [](const torch::Tensor& t) { return t.clone(); });
}

ModelState ConcatStates(const std::vector<const ModelState*>& states) {
  TORCH_CHECK(!states.empty(), "ConcatStates needs at least one state");
  if (states.size() == 1) return *states[0];
  const ModelState& first = *states[0];
  auto gather = [&states](auto member) {
    std::vector<torch::Tensor> parts;
    for (const ModelState* state : states) parts.push_back(member(*state));
    return torch::cat(parts, 0);
  };
  ModelState out;
  for (size_t l = 0; l < first.linear.size(); ++l) {
    out.linear.push_back({gather([l](const ModelState& s) { return s.linear[l].s; }),
                          gather([l](const ModelState& s) { return s.linear[l].z; })});
  }
  for (size_t l = 0; l < first.kv.size(); ++l) {
    int64_t capacity = 0;
    for (const ModelState* state : states) capacity = std::max(capacity, state->kv[l].capacity());
    auto padded = [capacity](const torch::Tensor& t) {
      return t.size(2) == capacity ? t : torch::constant_pad_nd(t, {0, 0, 0, capacity - t.size(2)});
    };
    out.kv.push_back({gather([&](const ModelState& s) { return padded(s.kv[l].k); }),
                      gather([&](const ModelState& s) { return padded(s.kv[l].v); })});
  }
  for (size_t l = 0; l < first.conv.size(); ++l) {
    out.conv.push_back(gather([l](const ModelState& s) { return s.conv[l]; }));
  }
  out.positions = gather([](const ModelState& s) { return s.positions; });
  return out;
}

ModelState SelectRows(const ModelState& state, const std::vector<int64_t>& rows) {
  auto index = torch::tensor(rows, torch::TensorOptions().dtype(torch::kInt64)).to(state.device());
  ModelState out;
  for (const auto& l : state.linear)
    out.linear.push_back({l.s.index_select(0, index), l.z.index_select(0, index)});
  for (const auto& c : state.conv) out.conv.push_back(c.index_select(0, index));
  out.positions = state.positions.index_select(0, index);
  if (!state.kv.empty()) {
    const int64_t length = rows.empty() ? 0 : out.positions.max().item<int64_t>();
    for (const auto& c : state.kv) {
      out.kv.push_back({c.k.index_select(0, index).narrow(2, 0, length).contiguous(),
                        c.v.index_select(0, index).narrow(2, 0, length).contiguous()});
    }
  }
  return out;
}

}  // namespace recur
