#ifndef RECUR_SERVER_ROW_PARALLEL_H_
#define RECUR_SERVER_ROW_PARALLEL_H_

// Runs a loop over a decode batch's rows on the engine's thread and on helper threads together.
// Sampling is the engine's largest cost after the model (a few passes over each row's logits,
// tens of microseconds a row at 33,278 words) and runs while the model's threads are idle, so on
// a machine with two cores the second one halves it. LibTorch's own pool is not used: the server
// gives LibTorch one thread where OpenBLAS runs its own (base/torch_runtime.h).
//
// Rows are handed out one at a time from a shared counter, so a slow row (a top-p rejection) does
// not leave the other thread idle. ForEach returns when every row is done; `body` must be safe to
// call for different rows at once.

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace recur {

class RowParallel {
 public:
  // `helpers` threads besides the caller's (0: the loop runs on the caller alone).
  explicit RowParallel(int helpers);
  ~RowParallel();

  RowParallel(const RowParallel&) = delete;
  RowParallel& operator=(const RowParallel&) = delete;

  // Calls body(i) for every i in [0, rows), on the caller and the helpers; one caller at a time.
  void ForEach(int64_t rows, absl::FunctionRef<void(int64_t)> body);

  int helpers() const { return static_cast<int>(threads_.size()); }

 private:
  void Help();
  // Takes rows from next_ until none is left.
  void TakeRows(absl::FunctionRef<void(int64_t)> body, int64_t rows);

  absl::Mutex mu_;
  // The loop being run: set by ForEach, read by the helpers; generation_ counts loops so that a
  // helper joins each one once.
  const absl::FunctionRef<void(int64_t)>* body_ ABSL_GUARDED_BY(mu_) = nullptr;
  int64_t rows_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int busy_helpers_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> next_{0};
  std::vector<std::thread> threads_;
};

}  // namespace recur

#endif  // RECUR_SERVER_ROW_PARALLEL_H_
