#ifndef RECUR_SERVER_DECODE_BATCH_H_
#define RECUR_SERVER_DECODE_BATCH_H_

// The rows of the engine's batched decode step (server/engine.h).
//
// Linear attention, whose state has a constant size, keeps the batch in place: one buffer per
// state tensor, `capacity` rows long (allocated when the batch first outgrows it, doubling up to
// `max_rows`, and kept: the memory of the busiest moment's decoding sessions), of
// which the first size() are live. A joining session's state is copied into the next free row; a
// leaving row is copied out to its session and the last row moves into its place. So a join or a
// leave copies one row, and a step neither allocates state nor copies the batch:
// TransformerLM::Step updates S and z in place through views of the buffers, and Commit() writes
// back the few small tensors Step replaces instead (positions, convolution tails).
//
// Softmax attention's key/value caches grow with the text and differ in capacity from row to
// row, so that batch is rebuilt on every join and leave (ConcatStates / SelectRows).

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "model/model_state.h"

namespace recur {

class DecodeBatch {
 public:
  // `max_rows`: the most rows the batch will hold (the engine's slots), which caps the buffers.
  explicit DecodeBatch(int64_t max_rows) : max_rows_(max_rows) {}

  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Appends each state (a batch of one, all of one layout) as a new last row, in order.
  void Join(const std::vector<const ModelState*>& states);
  // Takes `rows` (distinct, any order) out of the batch, row rows[i] into *into[i]. The rows left
  // may move: returns, for each row of the batch now, the row it was.
  std::vector<int64_t> Leave(const std::vector<int64_t>& rows,
                             const std::vector<ModelState*>& into);
  // Forgets every row (after a failed step, whose state is unknown).
  void Clear();

  // The live rows as one batch, for TransformerLM::Step; then Commit().
  ModelState& Rows() { return rows_; }
  void Commit();

 private:
  void Reserve(int64_t rows, const ModelState& like);
  void RefreshViews();

  const int64_t max_rows_;
  bool in_place_ = true;
  int64_t size_ = 0;
  int64_t capacity_ = 0;
  ModelState buffer_;  // in place: capacity_ rows
  ModelState views_;   // in place: the first size_ rows of buffer_
  ModelState rows_;    // what Step sees: views_ (in place), or the whole batch (softmax)
};

}  // namespace recur

#endif  // RECUR_SERVER_DECODE_BATCH_H_
