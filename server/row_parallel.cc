#include "server/row_parallel.h"

namespace recur {

RowParallel::RowParallel(int helpers) {
  for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { Help(); });
}

RowParallel::~RowParallel() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

void RowParallel::TakeRows(absl::FunctionRef<void(int64_t)> body, int64_t rows) {
  for (int64_t i = next_.fetch_add(1); i < rows; i = next_.fetch_add(1)) body(i);
}

void RowParallel::ForEach(int64_t rows, absl::FunctionRef<void(int64_t)> body) {
  if (threads_.empty() || rows <= 1) {
    for (int64_t i = 0; i < rows; ++i) body(i);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    next_.store(0);
    body_ = &body;
    rows_ = rows;
    ++generation_;
  }
  TakeRows(body, rows);
  // Every row is taken; wait for the helpers still running one, so that `body` outlives them.
  absl::MutexLock lock(&mu_);
  body_ = nullptr;
  mu_.Await(absl::Condition(+[](int* busy) { return *busy == 0; }, &busy_helpers_));
}

void RowParallel::Help() {
  // The last loop this helper joined: it joins each loop at most once.
  struct Waiter {
    RowParallel* self;
    uint64_t joined;
    bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
      return self->stopping_ || (self->body_ != nullptr && self->generation_ != joined);
    }
  } waiter{this, 0};
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(&waiter, &Waiter::Ready));
    if (stopping_) return;
    waiter.joined = generation_;
    const absl::FunctionRef<void(int64_t)> body = *body_;
    const int64_t rows = rows_;
    ++busy_helpers_;
    mu_.Unlock();
    TakeRows(body, rows);
    mu_.Lock();
    --busy_helpers_;
  }
}

}  // namespace recur
