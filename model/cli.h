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

// threads > 0: that many; 0: one per core; negative: an error naming --threads.
absl::Status SetTorchThreads(int threads);

// "cpu" or "cuda"; an error if the name is unknown or CUDA is asked for but absent.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// Prints "<program>: <message>" to stderr and returns 1, for `return Fail(...)` in main.
int Fail(absl::string_view program, absl::string_view message);

}  // namespace recur

#endif  // RECUR_MODEL_CLI_H_
