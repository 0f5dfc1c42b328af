#ifndef RECUR_MODEL_CLI_H_
#define RECUR_MODEL_CLI_H_

// Start-up shared by the LibTorch binaries: Abseil flags with a --help that lists the binary's own
// flags, glog to stderr, and an explicit LibTorch thread count (it starts with one here).

#include <string>

#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

// Parses the command line (exits on --help or a bad flag) and sets up logging.
void InitProgram(int argc, char** argv, absl::string_view usage);

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

// Prints "<program>: <message>" to stderr and returns 1, for `return Fail(...)` in main.
int Fail(absl::string_view program, absl::string_view message);

}  // namespace recur

#endif  // RECUR_MODEL_CLI_H_
