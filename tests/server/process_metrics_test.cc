#include "server/process_metrics.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>

namespace recur {
namespace {

std::map<std::string, double> Values() {
  std::map<std::string, double> values;
  for (const auto& family : CollectProcessMetrics()) {
    EXPECT_EQ(family.metric.size(), 1u) << family.name;
    const auto& m = family.metric.front();
    values[family.name] =
        family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
  }
  return values;
}

// Each series against what the kernel says through another door: getrusage, getrlimit, the clock,
// and a descriptor opened and closed in between.
TEST(ProcessMetricsTest, SeriesAgreeWithTheKernel) {
  auto before = Values();
  ASSERT_EQ(before.size(), 6u);
  rusage usage{};
  ASSERT_EQ(getrusage(RUSAGE_SELF, &usage), 0);
  EXPECT_GT(before["process_resident_memory_bytes"], 1 << 20);
  EXPECT_LE(before["process_resident_memory_bytes"], usage.ru_maxrss * 1024.0 + (1 << 20));
  EXPECT_GE(before["process_virtual_memory_bytes"], before["process_resident_memory_bytes"]);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(before["process_max_fds"], static_cast<double>(limit.rlim_cur));
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(before["process_start_time_seconds"], now + 1);
  EXPECT_GT(before["process_start_time_seconds"], now - 3600);

  const int fd = open("/proc/self/stat", O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Values()["process_open_fds"], before["process_open_fds"] + 1);
  close(fd);
  EXPECT_EQ(Values()["process_open_fds"], before["process_open_fds"]);

  // CPU time grows with work (the clock ticks are 10 ms: spin for 50 ms of CPU).
  const double cpu = before["process_cpu_seconds_total"];
  const auto start = std::chrono::steady_clock::now();
  volatile double sink = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200)) sink += 1;
  EXPECT_GT(Values()["process_cpu_seconds_total"], cpu);
}

}  // namespace
}  // namespace recur
