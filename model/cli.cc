#include "model/cli.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cstdio>
#include <thread>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace recur {

void InitProgram(int argc, char** argv, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  // --help lists the flags defined in the binaries' own main files, not Abseil's or glog's.
  config.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "_main.cc"); };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [] { return std::string("recur 0.1.0\n"); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  absl::ParseCommandLine(argc, argv);
  // glog's own flags would clash with Abseil's parser: configure it in code.
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
}

void SetTorchThreads(int threads) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads > 0 ? threads : std::max(cores, 1));
}

absl::StatusOr<c10::Device> ParseDevice(absl::string_view name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "cuda") {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError("--device cuda, but no CUDA device is available");
    }
    return c10::Device(c10::kCUDA);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", name, "' (expected cpu or cuda)"));
}

int Fail(absl::string_view program, absl::string_view message) {
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(message.size()), message.data());
  return 1;
}

}  // namespace recur
