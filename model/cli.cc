#include "model/cli.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "model/program_flags.h"

namespace recur {

void InitProgram(int argc, char** argv, absl::string_view usage) {
  ParseProgramFlags(argc, argv, usage);
  // glog's own flags would clash with Abseil's parser: configure it in code.
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
}

absl::Status SetTorchThreads(int threads) {
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be 0 (one per core) or positive, got ", threads));
  }
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(threads > 0 ? threads : std::max(cores, 1));
  return absl::OkStatus();
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
