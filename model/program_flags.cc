#include "model/program_flags.h"

#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/flags/internal/parse.h"
#include "absl/flags/internal/usage.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace recur {

std::vector<char*> ParseProgramFlags(int argc, char** argv, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  // --help lists the flags defined in the binaries' own main files, not Abseil's or glog's.
  config.contains_help_flags = [](absl::string_view file) { return absl::EndsWith(file, "_main.cc"); };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [] { return std::string("recur 0.1.0\n"); };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);

  namespace internal = absl::flags_internal;
  std::vector<char*> positional = internal::ParseCommandLineImpl(
      argc, argv, internal::ArgvListAction::kRemoveParsedArgs, internal::UsageFlagsAction::kIgnoreUsage,
      internal::OnUndefinedFlag::kAbortIfUndefined);
  // Abseil's own handling exits with status 1 after --help; asking for help is not a failure.
  const int handled = internal::HandleUsageFlags(std::cout, usage);
  if (handled >= 0) {
    std::cout.flush();
    std::exit(0);
  }
  return positional;
}

}  // namespace recur
