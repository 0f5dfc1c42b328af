#include "server/write_thread.h"

#include <utility>

namespace recur {

WriteThread::WriteThread() : thread_([this] { Run(); }) {}

WriteThread::~WriteThread() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void WriteThread::Schedule(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

bool WriteThread::HasWork() const { return stopping_ || !tasks_.empty(); }

void WriteThread::Run() {
  std::deque<absl::AnyInvocable<void() &&>> batch;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WriteThread::HasWork));
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      batch.swap(tasks_);
    }
    // Everything queued so far runs without the lock: a step's 64 writes cost one wake-up.
    for (auto& task : batch) std::move(task)();
    batch.clear();
  }
}

}  // namespace recur
