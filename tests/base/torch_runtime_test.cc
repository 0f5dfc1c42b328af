#include "base/torch_runtime.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
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

// Whether this process runs Debian's pthreads build of OpenBLAS, told from the libraries it has
// mapped rather than by asking OpenBLAS (what the code under test does).
bool MapsOpenBlasPthread() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/openblas-pthread/") != std::string::npos) return true;
  }
  return false;
}

TEST_F(TorchThreadsTest, AutomaticCountLeavesTheCoresToOpenBlasWhenItRunsItsOwnThreads) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (MapsOpenBlasPthread()) {
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

TEST(BlasKernelAdviceTest, WarnsOnlyWhenOpenBlasRunsSse3KernelsOnAnAvx512Cpu) {
  const std::string advice = BlasKernelAdvice("Prescott", /*cpu_has_avx512=*/true, false);
  EXPECT_NE(advice.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << advice;
  EXPECT_EQ(BlasKernelAdvice("Prescott", /*cpu_has_avx512=*/false, false), "");
  EXPECT_EQ(BlasKernelAdvice("SkylakeX", true, false), "");
  EXPECT_EQ(BlasKernelAdvice("Prescott", true, /*coretype_set=*/true), "") << "the operator chose";
  EXPECT_EQ(BlasKernelAdvice("", true, false), "") << "another BLAS";
}

}  // namespace
}  // namespace recur
