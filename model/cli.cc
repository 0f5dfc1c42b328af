#include "model/cli.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <dlfcn.h>

#include <algorithm>
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

namespace {

// Whether the BLAS library LibTorch calls runs its own threads: OpenBLAS says so through
// openblas_get_parallel() (0: sequential, 1: its own pthreads, 2: OpenMP, shared with LibTorch's
// pool). Looked up at run time, as the BLAS is whichever the system's alternatives point at.
bool BlasKeepsItsOwnThreads() {
  using GetParallel = int (*)();
  auto get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  return get_parallel != nullptr && get_parallel() == 1;
}

}  // namespace

int AutomaticTorchThreads(int reserved_cores) {
  if (BlasKeepsItsOwnThreads()) return 1;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores - reserved_cores);
}

absl::Status SetTorchThreads(int threads, int reserved_cores) {
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be 0 (automatic) or positive, got ", threads));
  }
  at::set_num_threads(threads > 0 ? threads : AutomaticTorchThreads(reserved_cores));
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
