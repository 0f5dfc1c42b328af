#include "server/write_thread.h"

#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace recur {
namespace {

TEST(WriteThreadTest, RunsTasksInTheOrderTheyWereScheduled) {
  std::vector<int> order;  // written only on the write thread, read after it joined
  {
    WriteThread writer;
    for (int i = 0; i < 1000; ++i) writer.Schedule([&order, i] { order.push_back(i); });
  }
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(order[i], i);
}

TEST(WriteThreadTest, RunsTasksOnAThreadOfItsOwn) {
  WriteThread writer;
  std::thread::id ran_on;
  absl::Notification done;
  writer.Schedule([&] {
    ran_on = std::this_thread::get_id();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST(WriteThreadTest, ATaskMayScheduleAnother) {
  absl::Notification second;
  WriteThread writer;
  writer.Schedule([&] { writer.Schedule([&] { second.Notify(); }); });
  EXPECT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(WriteThreadTest, TasksScheduledFromManyThreadsAllRun) {
  absl::Mutex mu;
  int ran = 0;
  {
    WriteThread writer;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 500; ++i) {
          writer.Schedule([&] {
            absl::MutexLock lock(&mu);
            ++ran;
          });
        }
      });
    }
    for (auto& thread : threads) thread.join();
  }
  EXPECT_EQ(ran, 2000);
}

}  // namespace
}  // namespace recur
