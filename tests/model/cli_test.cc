#include "model/cli.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>

namespace recur {
namespace {

// Restores the suite's thread count (test_main sets it) whatever a test sets.
class TorchThreadsTest : public ::testing::Test {
 protected:
  void TearDown() override { at::set_num_threads(saved_); }
  const int saved_ = at::get_num_threads();
};

TEST_F(TorchThreadsTest, AutomaticCountLeavesTheCoresToOpenBlasWhenItRunsItsOwnThreads) {
  using GetParallel = int (*)();
  auto get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (get_parallel != nullptr && get_parallel() == 1) {
    // Debian's LibTorch on libopenblas0-pthread, this project's CPU setup.
    EXPECT_EQ(AutomaticTorchThreads(), 1);
    EXPECT_EQ(AutomaticTorchThreads(/*reserved_cores=*/1), 1);
  } else {
    EXPECT_EQ(AutomaticTorchThreads(), std::max(cores, 1));
    EXPECT_EQ(AutomaticTorchThreads(/*reserved_cores=*/1), std::max(cores - 1, 1));
  }
  EXPECT_EQ(AutomaticTorchThreads(/*reserved_cores=*/cores + 8), 1);  // never below one
}

TEST_F(TorchThreadsTest, ZeroMeansAutomaticAndNegativeIsAnError) {
  ASSERT_TRUE(SetTorchThreads(0).ok());
  EXPECT_EQ(at::get_num_threads(), AutomaticTorchThreads());
  ASSERT_TRUE(SetTorchThreads(0, /*reserved_cores=*/1).ok());
  EXPECT_EQ(at::get_num_threads(), AutomaticTorchThreads(/*reserved_cores=*/1));
  ASSERT_TRUE(SetTorchThreads(3).ok());
  EXPECT_EQ(at::get_num_threads(), 3);
  const absl::Status negative = SetTorchThreads(-1);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("--threads"), std::string::npos);
  EXPECT_EQ(at::get_num_threads(), 3);  // unchanged by the bad value
}

}  // namespace
}  // namespace recur
