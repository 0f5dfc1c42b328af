// recur-train's and recur-eval's command lines: --help, a real run, and bad flag values ending in a
// clear message, exit 1 and (for the trainer) no output files.

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunCommand;
using testing::TempDir;

CommandResult Train(const std::string& args) {
  return RunCommand(std::string(RECUR_TRAIN_BINARY) + " " + args);
}
CommandResult Eval(const std::string& args) {
  return RunCommand(std::string(RECUR_EVAL_BINARY) + " " + args);
}

TEST(TrainCliTest, HelpListsTheTrainersFlagsAndSucceeds) {
  auto help = Train("--help");
  ASSERT_EQ(help.exit_code, 0) << help.err;
  for (const char* flag :
       {"--dataset", "--data_dir", "--attention", "--time_budget", "--resume", "--device"}) {
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
           {"--dataset text --data " + dir.Join("data.txt") + " --resume " +
                dir.Join("missing.state"),
            "resume"},
           {"--dataset text --data " + dir.Join("data.txt") + " --threads -2", "--threads"},
           {"--dataset text --data " + dir.Join("data.txt") + " --time_budget -5", "time_budget"},
           {"--dataset text --data " + dir.Join("data.txt") + " --eval_every -1", "eval_every"},
           {"--dataset text --data " + dir.Join("data.txt") + " --clip -1", "clip"},
       }) {
    auto result = Train(common + " " + c.args);  // the case's flags last: they win
    EXPECT_EQ(result.exit_code, 1) << c.args;
    EXPECT_THAT(result.err, HasSubstr("recur-train: ")) << c.args;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.args;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.args;
    EXPECT_FALSE(std::filesystem::exists(out + ".state")) << c.args;
  }
}

// A small text file and the flags of a tiny model trained on it for `steps` steps.
std::string TinyRun(const TempDir& dir, int steps) {
  const std::string data = dir.Join("data.txt");
  std::ofstream text(data);
  for (int i = 0; i < 100; ++i) text << "a line of text to learn, number " << i % 7 << "\n";
  return "--dataset text --data " + data +
         " --d_model 32 --heads 2 --layers 1 --d_ff 64 --seq_len 16 --batch_size 4 --threads 1"
         " --max_steps " +
         std::to_string(steps);
}

TEST(TrainCliTest, WithoutEvaluationTheCheckpointHoldsTheFinalWeights) {
  TempDir dir;
  const std::string out = dir.Join("model");
  auto result = Train(TinyRun(dir, 2) + " --evaluate=false --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("checkpoint: " + out));
  auto checkpoint = LoadCheckpoint(out);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->provenance.steps, 2);
}

TEST(TrainCliTest, WithoutOutItSaysNothingWillBeSaved) {
  TempDir dir;
  auto result = Train(TinyRun(dir, 1));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.err, HasSubstr("no --out given"));
}

TEST(TrainCliTest, AResumedRunTakesItsArchitectureFromTheStateNotTheFlags) {
  TempDir dir;
  const std::string out = dir.Join("model");
  ASSERT_EQ(Train(TinyRun(dir, 2) + " --out " + out + " --stop_after_steps 1").exit_code, 0);
  // --d_model 30 with 4 heads is no architecture at all; resuming ignores it.
  auto resumed = Train(TinyRun(dir, 2) + " --out " + out + " --resume " + out +
                       ".state --d_model 30 --heads 4");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.err, HasSubstr("resuming from"));
}

TEST(EvalCliTest, ScoresACheckpointThreeWaysAndRefusesBadInput) {
  TempDir dir;
  const std::string data = dir.Join("data.txt");
  {
    std::ofstream text(data);
    for (int i = 0; i < 200; ++i) text << "a line of text to learn, number " << i % 7 << "\n";
  }
  const std::string model = dir.Join("model");
  auto trained = Train("--dataset text --data " + data + " --out " + model +
                       " --d_model 32 --heads 2 --layers 1 --d_ff 64 --seq_len 32 --batch_size 4 "
                       "--max_steps 5 --threads 1");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;

  const std::string common =
      " --checkpoint " + model + " --dataset text --data_dir " + data + " --threads 1";
  auto scored = Eval(common + " --seq_len 16 --batch_size 2");
  ASSERT_EQ(scored.exit_code, 0) << scored.err;
  EXPECT_THAT(scored.out, HasSubstr("fresh windows of 16 "));
  EXPECT_THAT(scored.out, HasSubstr("sliding windows of 16, stride 8 "));
  EXPECT_THAT(scored.out, HasSubstr("context carried through each row "));
  EXPECT_THAT(scored.out, HasSubstr("bpc "));
  EXPECT_THAT(scored.out, HasSubstr("64-127"));  // the by-context table

  // A word-level data set: its vocabulary is not the byte-level checkpoint's.
  std::filesystem::create_directory(dir.Join("ptb"));
  for (const char* split : {"train", "valid", "test"}) {
    std::ofstream(dir.Join("ptb/ptb." + std::string(split) + ".txt"))
        << " the cat sat \n the dog ran \n";
  }
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"--dataset text --data_dir " + data, "--checkpoint is required"},
           {common + " --split train", "--split must be valid or test"},
           {common + " --context sideways", "--context must be"},
           {common + " --seq_len 0", "--seq_len must be positive"},
           {common + " --seq_len 8 --stride 9", "--stride must not exceed --seq_len"},
           {" --checkpoint " + dir.Join("nothing") + " --dataset text --data_dir " + data,
            "nothing"},
           {" --checkpoint " + model + " --dataset ptb --data_dir " + dir.path().string(), "ptb"},
           {" --checkpoint " + model + " --dataset ptb --data_dir " + dir.Join("ptb"),
            "is not this data set's"},
       }) {
    auto result = Eval(c.args);
    EXPECT_EQ(result.exit_code, 1) << c.args;
    EXPECT_THAT(result.err, HasSubstr("recur-eval: ")) << c.args;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.args << "\n" << result.err;
  }
}

}  // namespace
}  // namespace recur
