#ifndef RECUR_BASE_TORCH_RUNTIME_H_
#define RECUR_BASE_TORCH_RUNTIME_H_

// What the LibTorch binaries share at start-up: the --threads and --device flags (defined once,
// in torch_runtime.cc) and their meaning. LibTorch starts with one thread here: every binary sets
// the count explicitly.

#include <c10/core/Device.h>

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

// SetTorchThreads with the --threads flag (recur-server reserves a core for gRPC).
absl::Status ApplyThreadsFlag(int reserved_cores = 0);
// ParseDevice of the --device flag.
absl::StatusOr<c10::Device> DeviceFlag();

}  // namespace recur

#endif  // RECUR_BASE_TORCH_RUNTIME_H_
