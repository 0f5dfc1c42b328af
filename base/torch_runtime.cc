#include "base/torch_runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

// OpenBLAS's name for the kernels it chose ("Prescott", "SkylakeX", ...); empty with another BLAS.
std::string BlasCoreName() {
  using GetCoreName = char* (*)();
  auto get = reinterpret_cast<GetCoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = get != nullptr ? get() : nullptr;
  return name != nullptr ? name : "";
}

}  // namespace

std::string BlasKernelAdvice(absl::string_view core_name, bool cpu_has_avx512, bool coretype_set) {
  if (coretype_set || !cpu_has_avx512 || core_name != "Prescott") return "";
  return "OpenBLAS does not recognise this AVX-512 CPU and runs its Prescott (SSE3) kernels: "
         "matrix products run several times slower than they can. Start recur with "
         "OPENBLAS_CORETYPE=SkylakeX (or Cooperlake) set to use its AVX-512 kernels "
         "(docs/performance.md).";
}

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
  const std::string advice = BlasKernelAdvice(BlasCoreName(), __builtin_cpu_supports("avx512f"),
                                              std::getenv("OPENBLAS_CORETYPE") != nullptr);
  if (!advice.empty()) std::fprintf(stderr, "warning: %s\n", advice.c_str());
  return SetTorchThreads(absl::GetFlag(FLAGS_threads), reserved_cores);
}

absl::StatusOr<c10::Device> DeviceFlag() { return ParseDevice(absl::GetFlag(FLAGS_device)); }

}  // namespace recur
