#include "server/row_parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace recur {
namespace {

// Every row runs exactly once per loop, loop after loop, whatever the number of helpers and rows.
TEST(RowParallelTest, EveryRowRunsOnceInEveryLoop) {
  for (int helpers : {0, 1, 3}) {
    RowParallel parallel(helpers);
    EXPECT_EQ(parallel.helpers(), helpers);
    for (int64_t rows : {0, 1, 2, 7, 64, 300}) {
      for (int loop = 0; loop < 20; ++loop) {
        std::vector<std::atomic<int>> runs(rows);
        parallel.ForEach(rows, [&](int64_t i) { runs[i].fetch_add(1); });
        for (int64_t i = 0; i < rows; ++i) {
          ASSERT_EQ(runs[i].load(), 1) << helpers << " helpers, row " << i << " of " << rows;
        }
      }
    }
  }
}

// A helper really takes rows: with rows slow enough for it to wake, two threads run them, and
// ForEach returns only after the last row is done.
TEST(RowParallelTest, TheHelperTakesRowsAndForEachWaitsForThem) {
  RowParallel parallel(1);
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> done{0};
  parallel.ForEach(40, [&](int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    done.fetch_add(1);
  });
  EXPECT_EQ(done.load(), 40);
  EXPECT_EQ(threads.size(), 2u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 1u);
}

TEST(RowParallelTest, DestroyedWithoutALoopOrAfterManyItJoins) {
  { RowParallel idle(2); }
  RowParallel busy(2);
  std::atomic<int64_t> sum{0};
  for (int loop = 0; loop < 1000; ++loop) busy.ForEach(3, [&](int64_t i) { sum += i; });
  EXPECT_EQ(sum.load(), 3000);
}

}  // namespace
}  // namespace recur
