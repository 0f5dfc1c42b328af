#ifndef RECUR_BASE_TORCH_RUNTIME_H_
#define RECUR_BASE_TORCH_RUNTIME_H_

// What the LibTorch binaries share at start-up: the --threads and --device flags (defined once,
// in torch_runtime.cc) and their meaning. LibTorch starts with one thread here: every binary sets
// the count explicitly.

#include <c10/core/Device.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

// The LibTorch thread count that --threads 0 stands for: one per core (less `reserved_cores`), or
// just one when the BLAS library keeps its own pool of a thread per core (OpenBLAS built with
// pthreads, Debian's libopenblas0-pthread). Matrix products, most of the work, then use every core
// anyway, and LibTorch's OpenMP threads would only busy-wait beside OpenBLAS's and take the cores
// from them (docs/performance.md: 1.45x faster training steps on 2 cores with one thread).
int AutomaticTorchThreads(int reserved_cores = 0);

// threads > 0: that many; 0: AutomaticTorchThreads(reserved_cores); negative: an error naming
// --threads.
absl::Status SetTorchThreads(int threads, int reserved_cores = 0);

// "cpu" or "cuda"; an error if the name is unknown or CUDA is asked for but absent.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// A warning for the operator when OpenBLAS runs `core_name` kernels that leave this CPU's vector
// units idle: OpenBLAS 0.3.21 (Debian 12) does not recognise recent AVX-512 CPUs and falls back
// to Prescott's SSE3 kernels, which made training steps 3x slower than its AVX-512 ones on such a
// machine (docs/performance.md). Empty when the kernels fit, or when OPENBLAS_CORETYPE was set
// (`coretype_set`: the operator chose).
std::string BlasKernelAdvice(absl::string_view core_name, bool cpu_has_avx512, bool coretype_set);

// SetTorchThreads with the --threads flag (recur-server reserves a core for gRPC), and the
// BlasKernelAdvice for this process on stderr.
absl::Status ApplyThreadsFlag(int reserved_cores = 0);
// ParseDevice of the --device flag.
absl::StatusOr<c10::Device> DeviceFlag();

}  // namespace recur

#endif  // RECUR_BASE_TORCH_RUNTIME_H_
