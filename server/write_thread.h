#ifndef RECUR_SERVER_WRITE_THREAD_H_
#define RECUR_SERVER_WRITE_THREAD_H_

// One thread that runs queued tasks in order. The Generate streams start their writes here, so
// that the engine's thread hands a step's text to 64 streams without paying for gRPC's write path
// (serialisation, the transport's lock, sendmsg) 64 times before it can start the next step: the
// writes overlap the next step instead of delaying it.

#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace recur {

class WriteThread {
 public:
  WriteThread();
  // Runs every task already queued, then joins.
  ~WriteThread();

  WriteThread(const WriteThread&) = delete;
  WriteThread& operator=(const WriteThread&) = delete;

  // Queues `task`; tasks run one at a time, in the order they were scheduled.
  void Schedule(absl::AnyInvocable<void() &&> task);

 private:
  void Run();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace recur

#endif  // RECUR_SERVER_WRITE_THREAD_H_
