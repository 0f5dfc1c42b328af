#ifndef RECUR_MODEL_PROGRAM_FLAGS_H_
#define RECUR_MODEL_PROGRAM_FLAGS_H_

// Command-line parsing shared by every recur binary, the LibTorch-free client included: Abseil
// flags with a --help that lists only the binary's own flags, and --version.

#include <vector>

#include "absl/strings/string_view.h"

namespace recur {

// Parses the command line (exits on --help, --version or a bad flag) and returns the positional
// arguments, argv[0] first.
std::vector<char*> ParseProgramFlags(int argc, char** argv, absl::string_view usage);

}  // namespace recur

#endif  // RECUR_MODEL_PROGRAM_FLAGS_H_
