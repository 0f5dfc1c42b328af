#include "base/torch_runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(int32_t, threads, 0,
          "CPU threads for LibTorch (0: automatic: one per core, recur-server leaving one to gRPC; "
          "just one when OpenBLAS runs its own threads)");
ABSL_FLAG(std::string, device, "cpu",
          "cpu or cuda: where the model (and a server's sessions) live");

namespace recur {

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
    return absl::InvalidArgumentError(
        absl::StrCat("--threads must be 0 (automatic) or positive, got ", threads));
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
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", name, "' (expected cpu or cuda)"));
}

absl::Status ApplyThreadsFlag(int reserved_cores) {
  return SetTorchThreads(absl::GetFlag(FLAGS_threads), reserved_cores);
}

absl::StatusOr<c10::Device> DeviceFlag() { return ParseDevice(absl::GetFlag(FLAGS_device)); }

}  // namespace recur
