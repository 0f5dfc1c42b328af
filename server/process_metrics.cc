#include "server/process_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace recur {

namespace {

// /proc/self/stat's fields after the command name (which may hold spaces and parentheses, so it
// is cut at the last ')'): element 0 is field 3, the state.
std::vector<std::string> StatFields() {
  std::ifstream file("/proc/self/stat");
  std::string line;
  if (!std::getline(file, line)) return {};
  const size_t end_of_name = line.rfind(')');
  if (end_of_name == std::string::npos) return {};
  return absl::StrSplit(line.substr(end_of_name + 1), ' ', absl::SkipEmpty());
}

std::optional<double> Field(const std::vector<std::string>& fields, size_t stat_field) {
  const size_t index = stat_field - 3;
  double value = 0;
  if (index >= fields.size() || !absl::SimpleAtod(fields[index], &value)) return std::nullopt;
  return value;
}

// The machine's boot time (Unix seconds), /proc/stat's btime.
std::optional<double> BootTime() {
  std::ifstream file("/proc/stat");
  std::string key;
  double value = 0;
  while (file >> key) {
    if (key == "btime" && file >> value) return value;
    file.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::optional<double> OpenDescriptors() {
  std::error_code error;
  std::filesystem::directory_iterator it("/proc/self/fd", error);
  if (error) return std::nullopt;
  double count = 0;
  for (const auto& entry : it) {
    (void)entry;
    ++count;
  }
  return count - 1;  // the iterator's own descriptor
}

void Add(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help,
         prometheus::MetricType type, std::optional<double> value) {
  if (!value.has_value()) return;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = *value;
  } else {
    metric.gauge.value = *value;
  }
  out.push_back({name, help, type, {metric}});
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  using prometheus::MetricType;
  const std::vector<std::string> stat = StatFields();
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  auto scaled = [](std::optional<double> v, double by) {
    return v.has_value() ? std::optional<double>(*v * by) : std::nullopt;
  };
  std::optional<double> cpu;
  if (auto user = Field(stat, 14), system = Field(stat, 15); user && system) {
    cpu = (*user + *system) / ticks;
  }
  std::optional<double> start;
  if (auto boot = BootTime(), since_boot = Field(stat, 22); boot && since_boot) {
    start = *boot + *since_boot / ticks;
  }
  std::optional<double> max_fds;
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    max_fds = static_cast<double>(limit.rlim_cur);
  }

  std::vector<prometheus::MetricFamily> out;
  Add(out, "process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
      scaled(Field(stat, 24), page));
  Add(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
      Field(stat, 23));
  Add(out, "process_cpu_seconds_total", "User and system CPU time spent in seconds.",
      MetricType::Counter, cpu);
  Add(out, "process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
      OpenDescriptors());
  Add(out, "process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
      max_fds);
  Add(out, "process_start_time_seconds", "Start time of the process since the Unix epoch.",
      MetricType::Gauge, start);
  return out;
}

}  // namespace recur
