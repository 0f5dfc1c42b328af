#include "train/sweep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/test_util.h"

namespace recur {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSweep[] = R"({
  "name": "demo",
  "base": {"dataset": "ptb", "data_dir": "${DATASETS}/ptb", "lr": 0.001, "layers": 2, "tie_embeddings": true},
  "grid": [{"flag": "seq_len", "values": [128, 1024], "full_values": [128, 1024, 4096]},
           {"flag": "attention", "values": ["linear", "softmax"]}],
  "exclude": [{"seq_len": 1024, "attention": "softmax"}],
  "full": {"layers": 8, "device": "cuda"}
})";

TEST(SweepTest, ExpandsTheGridWithBaseFlagsAndVariables) {
  auto sweep = ParseSweep(kSweep, /*full=*/false, {{"DATASETS", "/data"}});
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  ASSERT_EQ(sweep->runs.size(), 4u);
  EXPECT_EQ(sweep->runs[0].id, "seq_len=128,attention=linear");
  EXPECT_EQ(sweep->runs[1].id, "seq_len=128,attention=softmax");
  EXPECT_EQ(sweep->runs[3].id, "seq_len=1024,attention=softmax");
  EXPECT_FALSE(sweep->runs[2].excluded);
  EXPECT_TRUE(sweep->runs[3].excluded);
  const auto& flags = sweep->runs[2].flags;
  EXPECT_EQ(flags.at("data_dir"), "/data/ptb");
  EXPECT_EQ(flags.at("lr"), "0.001");
  EXPECT_EQ(flags.at("layers"), "2");
  EXPECT_EQ(flags.at("tie_embeddings"), "true");
  EXPECT_EQ(flags.at("seq_len"), "1024");
  EXPECT_EQ(flags.at("attention"), "linear");

  EXPECT_TRUE(sweep->axes[0].numeric);
  EXPECT_FALSE(sweep->axes[1].numeric);
}

TEST(SweepTest, WithFlagsMoveInStepWithTheAxis) {
  auto sweep = ParseSweep(R"({"name": "x", "grid": [{"flag": "seq_len", "values": [256, 4096],
                                                     "with": {"batch_size": [16, 1]}}]})",
                          false, {});
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->runs[0].flags.at("batch_size"), "16");
  EXPECT_EQ(sweep->runs[1].flags.at("batch_size"), "1");
  EXPECT_EQ(sweep->runs[1].id, "seq_len=4096");

  // At full size, "full_with" replaces "with".
  auto full = ParseSweep(R"({"name": "x", "grid": [{"flag": "seq_len", "values": [256, 4096],
                                                    "with": {"batch_size": [16, 1]}, "full_with": {}}]})",
                         /*full=*/true, {});
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->runs[1].flags.count("batch_size"), 0u);
}

TEST(SweepTest, FullSizeAppliesOverridesAndValues) {
  auto sweep = ParseSweep(kSweep, /*full=*/true, {});
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->runs.size(), 6u);
  EXPECT_EQ(sweep->runs[0].flags.at("layers"), "8");
  EXPECT_EQ(sweep->runs[0].flags.at("device"), "cuda");
}

TEST(SweepTest, BadFilesNameTheProblem) {
  EXPECT_THAT(ParseSweep("[]", false, {}).status().message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(
      ParseSweep(R"({"name": "x", "grid": [{"flag": "a", "values": [1, 2], "with": {"b": [1]}}]})",
                 false, {})
          .status()
          .message(),
      HasSubstr("one value per"));
  EXPECT_THAT(ParseSweep(R"({"name": "x", "grid": []})", false, {}).status().message(),
              HasSubstr("grid"));
  EXPECT_THAT(ParseSweep(R"({"name": "a/b", "grid": [{"flag": "lr", "values": [1]}]})", false, {})
                  .status()
                  .message(),
              HasSubstr("name"));
  EXPECT_THAT(
      ParseSweep(R"({"name": "x", "base": {"lr": [1]}, "grid": [{"flag": "lr", "values": [1]}]})",
                 false, {})
          .status()
          .message(),
      HasSubstr("scalar"));
}

TEST(SweepTest, SummaryAndReportFromMetricsLogs) {
  testing::TempDir dir;
  auto sweep = ParseSweep(R"({"name": "s", "grid": [{"flag": "batch_size", "values": [4, 16]}]})",
                          false, {});
  ASSERT_TRUE(sweep.ok());
  std::vector<RunSummary> runs;
  for (int i = 0; i < 2; ++i) {
    const std::string log = dir.Join("m" + std::to_string(i));
    std::ofstream(log)
        << R"({"step":10,"epoch":1,"epoch_progress":0.5,"valid_loss":5.0,"valid_ppl":148.4})"
           "\n"
        << R"({"final":true,"steps":20,"best_valid_ppl":)" << 120 + i
        << R"(,"test_ppl":130,"tokens_per_second":1000,"peak_memory_bytes":1048576,"peak_heap_bytes":2097152,"elapsed_seconds":9,"parameters":77})"
           "\n";
    runs.push_back(ReadRunSummary(log));
  }
  EXPECT_TRUE(runs[0].done);
  EXPECT_FALSE(runs[0].byte_level);
  EXPECT_EQ(runs[1].best_valid, 121);
  EXPECT_DOUBLE_EQ(runs[0].peak_heap_mb, 2.0);
  ASSERT_EQ(runs[0].curve.size(), 1u);
  EXPECT_DOUBLE_EQ(runs[0].curve[0].second, 148.4);
  EXPECT_FALSE(ReadRunSummary(dir.Join("missing")).done);

  auto script = WriteSweepReport(*sweep, runs, dir.path().string());
  ASSERT_TRUE(script.ok()) << script.status();
  std::ifstream csv(dir.Join("results.csv"));
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  EXPECT_EQ(header,
            "batch_size,steps,best_valid_ppl,test_ppl,tokens_per_second,peak_memory_mb,peak_heap_"
            "mb,seconds,parameters");
  EXPECT_EQ(first, "4,20,120.0000,130.0000,1000.0,1.0,2.0,9.0,77");
}

TEST(SweepTest, FindsTheStateAnInterruptedRunLeft) {
  testing::TempDir dir;
  EXPECT_EQ(InterruptedRunState(dir.Join("run")), "");
  std::filesystem::create_directories(dir.Join("run/model.state"));
  EXPECT_EQ(InterruptedRunState(dir.Join("run")), "");  // no trainer.json: not a saved state
  std::ofstream(dir.Join("run/model.state/trainer.json")) << "{}";
  EXPECT_EQ(InterruptedRunState(dir.Join("run")), dir.Join("run/model.state"));
}

}  // namespace
}  // namespace recur
