#include "base/program.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"

namespace recur {

namespace {

constexpr absl::string_view kVersion = "recur " RECUR_VERSION;  // base/CMakeLists.txt

std::string& ProgramName() {
  static std::string name = "recur";
  return name;
}

// Flags a user of the binary sets: those its main file defines, and the shared ones of base/.
// Abseil's own and the libraries' flags stay out of --help.
bool IsProgramFlag(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  return absl::EndsWith(file, "_main.cc") || absl::EndsWith(file, "base/torch_runtime.cc");
}

// `text` wrapped at word boundaries to lines of at most `width` columns (a longer word stays
// whole), the first line indented by `first`, the rest by `rest` spaces.
std::string Wrap(absl::string_view text, size_t width, size_t first, size_t rest) {
  std::string out(first, ' ');
  size_t column = first;
  bool line_start = true;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line_start && column + 1 + word.size() > width) {
      absl::StrAppend(&out, "\n", std::string(rest, ' '));
      column = rest;
      line_start = true;
    }
    if (!line_start) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
    line_start = false;
  }
  return out;
}

// The usage, then each flag as Abseil lists them: "--name (help); default: value;".
void PrintHelp(absl::string_view usage) {
  std::map<std::string, const absl::CommandLineFlag*> flags;  // sorted by name
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsProgramFlag(*flag)) flags.emplace(std::string(name), flag);
  }
  std::cout << usage << "\n\n  Flags:\n";
  for (const auto& [name, flag] : flags) {
    const std::string value = flag->DefaultValue();
    const std::string shown =
        flag->IsOfType<std::string>() ? absl::StrCat("\"", value, "\"") : value;
    std::cout << Wrap(absl::StrCat("--", name, " (", flag->Help(), "); default: ", shown, ";"), 100,
                      4, 6)
              << "\n";
  }
  std::cout << "\n  --help lists these flags; --version prints " << kVersion << ".\n";
}

// Whether `arg` asks for `name` (--name or -name, with no value).
bool Asks(absl::string_view arg, absl::string_view name) {
  return arg == absl::StrCat("--", name) || arg == absl::StrCat("-", name);
}

}  // namespace

std::vector<char*> ParseProgramFlags(int argc, char** argv, absl::string_view usage) {
  if (argc > 0) {
    const std::string path = argv[0];
    ProgramName() = path.substr(path.find_last_of('/') + 1);
  }
  absl::SetProgramUsageMessage(usage);
  // --help and --version are answered here, exiting 0: asking for help is not a failure (Abseil's
  // own handling exits 1 after it). Only arguments before a "--" count.
  for (int i = 1; i < argc && absl::string_view(argv[i]) != "--"; ++i) {
    const absl::string_view arg = argv[i];
    if (Asks(arg, "help") || Asks(arg, "helpfull") || Asks(arg, "helpshort") || arg == "-h") {
      PrintHelp(usage);
      std::exit(0);
    }
    if (Asks(arg, "version")) {
      std::cout << kVersion << "\n";
      std::exit(0);
    }
  }
  return absl::ParseCommandLine(argc, argv);
}

void InitProgram(int argc, char** argv, absl::string_view usage) {
  ParseProgramFlags(argc, argv, usage);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
}

int Fail(absl::string_view message) {
  std::fprintf(stderr, "%s: %.*s\n", ProgramName().c_str(), static_cast<int>(message.size()),
               message.data());
  return 1;
}

int Fail(const absl::Status& status) { return Fail(status.message()); }

int FailWithCode(const absl::Status& status) {
  return Fail(absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message()));
}

}  // namespace recur
