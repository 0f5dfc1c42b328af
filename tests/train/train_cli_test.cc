// recur-train's command line: --help, and bad flag values ending in a clear message, exit 1 and no
// output files.

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;

CommandResult Train(const std::string& args) { return RunCommand(std::string(RECUR_TRAIN_BINARY) + " " + args); }

TEST(TrainCliTest, HelpListsTheTrainersFlagsAndSucceeds) {
  auto help = Train("--help");
  ASSERT_EQ(help.exit_code, 0) << help.err;
  for (const char* flag : {"--dataset", "--data_dir", "--attention", "--time_budget", "--resume", "--device"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
  EXPECT_THAT(help.out, Not(HasSubstr("--flagfile")));
}

TEST(TrainCliTest, BadValuesAreClearErrorsAndWriteNothing) {
  TempDir dir;
  {
    std::ofstream text(dir.Join("data.txt"));
    for (int i = 0; i < 50; ++i) text << "some text to train on, line " << i << "\n";
  }
  const std::string out = dir.Join("model");
  const std::string common = " --out " + out + " --max_steps 2 --threads 1";
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"--dataset text --data " + dir.Join("data.txt") + " --attention sparse", "sparse"},
           {"--dataset imagenet --data_dir " + dir.path().string(), "imagenet"},
           {"--dataset ptb --data_dir " + dir.Join("missing"), "missing"},
           {"--dataset text --data " + dir.Join("data.txt") + " --device tpu", "tpu"},
           {"--dataset text --data " + dir.Join("data.txt") + " --d_model 30 --heads 4", "heads"},
           {"--dataset text --data " + dir.Join("data.txt") + " --resume " + dir.Join("missing.state"), "resume"},
       }) {
    auto result = Train(c.args + common);
    EXPECT_EQ(result.exit_code, 1) << c.args;
    EXPECT_THAT(result.err, HasSubstr("recur-train: ")) << c.args;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.args;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.args;
    EXPECT_FALSE(std::filesystem::exists(out + ".state")) << c.args;
  }
}

}  // namespace
}  // namespace recur
