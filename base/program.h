#ifndef RECUR_BASE_PROGRAM_H_
#define RECUR_BASE_PROGRAM_H_

// Start-up shared by every recur binary, the LibTorch-free client included: Abseil flags with a
// --help that lists only the binary's own flags (and the shared ones of base/torch_runtime.h),
// --version, glog to stderr, and one way to fail from main.

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace recur {

// Parses the command line: prints the usage and the flags and exits 0 on --help (or -h,
// --helpfull), prints the version and exits 0 on --version, exits 1 with a message on a bad or
// unknown flag. Returns the positional arguments, argv[0] first.
std::vector<char*> ParseProgramFlags(int argc, char** argv, absl::string_view usage);

// ParseProgramFlags, then logging to stderr (glog, configured in code: its own flags would clash
// with Abseil's).
void InitProgram(int argc, char** argv, absl::string_view usage);

// Prints "<program>: <message>" to stderr (the program's name from argv[0], as ParseProgramFlags
// saw it) and returns 1, for `return Fail(...)` in main.
int Fail(absl::string_view message);
// Fail with the status's message.
int Fail(const absl::Status& status);
// Fail with "<CODE>: <message>", for errors that come from elsewhere (a server's answer).
int FailWithCode(const absl::Status& status);

}  // namespace recur

#endif  // RECUR_BASE_PROGRAM_H_
