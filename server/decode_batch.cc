#include "server/decode_batch.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

namespace recur {

namespace {

// The state's tensors in one fixed order (key/value caches excluded: never kept in place).
std::vector<torch::Tensor*> Tensors(ModelState& state) {
  std::vector<torch::Tensor*> out;
  for (auto& layer : state.linear) {
    out.push_back(&layer.s);
    out.push_back(&layer.z);
  }
  for (auto& tail : state.conv) out.push_back(&tail);
  out.push_back(&state.positions);
  return out;
}

std::vector<const torch::Tensor*> Tensors(const ModelState& state) {
  std::vector<const torch::Tensor*> out;
  for (torch::Tensor* t : Tensors(const_cast<ModelState&>(state))) out.push_back(t);
  return out;
}

}  // namespace

void DecodeBatch::Reserve(int64_t rows, const ModelState& like) {
  if (rows <= capacity_) return;
  const int64_t doubled = std::max<int64_t>(2 * capacity_, 8);
  const int64_t capacity = std::max(rows, std::min(doubled, max_rows_));
  ModelState grown = like;  // the layout; every tensor replaced below
  std::vector<torch::Tensor*> target = Tensors(grown);
  const std::vector<const torch::Tensor*> shape = Tensors(like);
  std::vector<torch::Tensor*> old = Tensors(buffer_);
  for (size_t i = 0; i < target.size(); ++i) {
    std::vector<int64_t> sizes = shape[i]->sizes().vec();
    sizes[0] = capacity;
    *target[i] = torch::empty(sizes, shape[i]->options());
    if (size_ > 0) target[i]->narrow(0, 0, size_).copy_(old[i]->narrow(0, 0, size_));
  }
  buffer_ = std::move(grown);
  capacity_ = capacity;
}

void DecodeBatch::RefreshViews() {
  if (capacity_ == 0) {
    views_ = rows_ = ModelState();
    return;
  }
  views_ = buffer_;
  for (torch::Tensor* t : Tensors(views_)) *t = t->narrow(0, 0, size_);
  rows_ = views_;
}

void DecodeBatch::Join(const std::vector<const ModelState*>& states) {
  if (states.empty()) return;
  if (size_ == 0) in_place_ = states.front()->kv.empty();
  if (!in_place_) {
    std::vector<const ModelState*> parts;
    if (size_ > 0) parts.push_back(&rows_);
    parts.insert(parts.end(), states.begin(), states.end());
    rows_ = ConcatStates(parts);
    size_ = rows_.batch_size();
    return;
  }
  Reserve(size_ + static_cast<int64_t>(states.size()), *states.front());
  std::vector<torch::Tensor*> target = Tensors(buffer_);
  for (const ModelState* state : states) {
    const std::vector<const torch::Tensor*> source = Tensors(*state);
    for (size_t i = 0; i < target.size(); ++i) target[i]->narrow(0, size_, 1).copy_(*source[i]);
    ++size_;
  }
  RefreshViews();
}

std::vector<int64_t> DecodeBatch::Leave(const std::vector<int64_t>& rows,
                                        const std::vector<ModelState*>& into) {
  std::vector<int64_t> order(size_);
  std::iota(order.begin(), order.end(), 0);
  if (rows.empty()) return order;
  if (!in_place_) {
    std::vector<bool> leaving(size_, false);
    for (size_t i = 0; i < rows.size(); ++i) {
      *into[i] = SelectRows(rows_, {rows[i]});
      leaving[rows[i]] = true;
    }
    std::vector<int64_t> keep;
    for (int64_t r = 0; r < size_; ++r) {
      if (!leaving[r]) keep.push_back(r);
    }
    rows_ = keep.empty() ? ModelState() : SelectRows(rows_, keep);
    size_ = static_cast<int64_t>(keep.size());
    return keep;
  }
  // Highest row first, so the last row, which fills each hole, is never one still to leave.
  std::vector<size_t> by_row(rows.size());
  std::iota(by_row.begin(), by_row.end(), 0);
  std::sort(by_row.begin(), by_row.end(), [&](size_t a, size_t b) { return rows[a] > rows[b]; });
  std::vector<torch::Tensor*> buffers = Tensors(buffer_);
  for (size_t i : by_row) {
    const int64_t row = rows[i], last = size_ - 1;
    *into[i] = SelectRows(views_, {row});  // one row's allocation, once per request
    if (row != last) {
      for (torch::Tensor* t : buffers) t->narrow(0, row, 1).copy_(t->narrow(0, last, 1));
      order[row] = order[last];
    }
    order.pop_back();
    --size_;
  }
  // The views kept the old length while rows left; every row read was below it.
  RefreshViews();
  return order;
}

void DecodeBatch::Clear() {
  size_ = 0;
  if (in_place_) {
    RefreshViews();
  } else {
    rows_ = ModelState();
  }
}

void DecodeBatch::Commit() {
  if (!in_place_) return;
  std::vector<torch::Tensor*> stepped = Tensors(rows_);
  std::vector<torch::Tensor*> views = Tensors(views_);
  for (size_t i = 0; i < views.size(); ++i) {
    if (!stepped[i]->is_same(*views[i])) views[i]->copy_(*stepped[i]);
  }
  rows_ = views_;
}

}  // namespace recur
