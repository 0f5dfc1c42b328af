#include "train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"
#include "tests/train/fresh_window_loss.h"
#include "train/evaluation.h"

namespace recur {
namespace {

using testing::TempDir;

// A small, learnable byte corpus: repeated short sentences.
std::string Text() {
  std::string text;
  const char* lines[] = {"the cat sat on the mat.\n", "a dog ran in the park.\n",
                         "birds sing at dawn.\n"};
  for (int i = 0; i < 400; ++i) text += lines[(i * 7) % 3];
  return text;
}

std::vector<torch::Tensor> CloneParameters(const TransformerLM& model) {
  std::vector<torch::Tensor> copies;
  for (const auto& p : model->parameters()) copies.push_back(p.detach().clone());
  return copies;
}

ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 257;
  c.d_model = 32;
  c.num_layers = 1;
  c.num_heads = 2;
  c.d_ff = 64;
  c.chunk_size = 16;
  return c;
}

TEST(TrainerTest, LearnsWritesBestCheckpointAndMetrics) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options;
  options.batch_size = 8;
  options.seq_len = 32;
  options.lr = 3e-3;
  options.warmup = 5;
  options.max_steps = 60;
  options.eval_every = 20;
  options.progress = false;
  options.out = dir.Join("ckpt");
  options.metrics_log = dir.Join("metrics.jsonl");
  auto result = Train(TinyConfig(), corpus, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps, 60);
  // Uniform over 257 symbols is 5.55 nats; the repeated sentences are far more predictable.
  EXPECT_LT(result->best_valid_loss, 3.0);
  EXPECT_TRUE(std::isfinite(result->test_loss));

  auto checkpoint = LoadCheckpoint(options.out);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_DOUBLE_EQ(checkpoint->provenance.valid_loss, result->best_valid_loss);
  // The saved model reproduces the recorded validation loss.
  EXPECT_NEAR(FreshWindowLoss(checkpoint->model, corpus.valid, 8, 32, torch::kCPU),
              result->best_valid_loss, 1e-5);

  std::ifstream log(options.metrics_log);
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("final", false)) {
      EXPECT_EQ(j["steps"], 60);
      EXPECT_DOUBLE_EQ(j["best_valid_loss"].get<double>(), result->best_valid_loss);
      EXPECT_TRUE(j.contains("test_bpc") && j.contains("peak_memory_bytes"));
      continue;
    }
    for (const char* key : {"step", "epoch", "train_loss", "valid_loss", "valid_bpc", "lr",
                            "tokens_per_second", "elapsed_seconds", "peak_memory_bytes"}) {
      EXPECT_TRUE(j.contains(key)) << key;
    }
    ++lines;
  }
  EXPECT_EQ(lines, 3);
}

TEST(TrainerTest, SameSeedSameResult) {
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options;
  options.batch_size = 4;
  options.seq_len = 16;
  options.max_steps = 10;
  options.progress = false;
  auto a = Train(TinyConfig(), corpus, options);
  auto b = Train(TinyConfig(), corpus, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->best_valid_loss, b->best_valid_loss);
}

TEST(TrainerTest, BadSettingsAreErrors) {
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options;
  options.batch_size = 100000;
  EXPECT_FALSE(Train(TinyConfig(), corpus, options).ok());
  ModelConfig wrong_vocab = TinyConfig();
  wrong_vocab.vocab_size = 100;
  EXPECT_FALSE(Train(wrong_vocab, corpus, TrainOptions{}).ok());
}

TrainOptions ResumeOptions() {
  TrainOptions options;
  options.batch_size = 4;
  options.seq_len = 16;
  options.lr = 2e-3;
  options.warmup = 3;
  options.max_steps = 20;
  options.eval_every = 5;
  options.ema_decay = 0.9;  // so the weights' average must be restored too
  options.progress = false;
  return options;
}

ModelConfig DropoutConfig() {
  ModelConfig c = TinyConfig();
  c.dropout = 0.2;   // so the random generator must be restored too
  c.short_conv = 3;  // and, with the context carried, the convolution's last inputs
  return c;
}

// Trains DropoutConfig() for `steps` steps with ResumeOptions(), saving the resumable state to
// `dir`/state.
void TrainToState(const TempDir& dir, const Corpus& corpus, int64_t steps) {
  TrainOptions first = ResumeOptions();
  first.max_steps = steps;
  first.state_dir = dir.Join("state");
  ASSERT_TRUE(Train(DropoutConfig(), corpus, first).ok());
}

// (step, validation loss) of each evaluation a metrics log holds, and then -1 and the test loss
// for each summary line.
std::vector<std::pair<int64_t, double>> LoggedEvaluations(const std::string& path) {
  std::vector<std::pair<int64_t, double>> evaluations;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("final", false)) {
      evaluations.emplace_back(-1, j.at("test_loss").get<double>());
    } else {
      evaluations.emplace_back(j.at("step").get<int64_t>(), j.at("valid_loss").get<double>());
    }
  }
  return evaluations;
}

// N steps straight vs N/2, resume, N/2: identical weights, bit for bit. The split falls in the
// middle of an epoch, so with the context carried the saved recurrent state must be restored too.
class SplitResumeTest : public ::testing::TestWithParam<bool> {};

TEST_P(SplitResumeTest, SplitRunEqualsStraightRun) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options = ResumeOptions();
  options.carry_context = GetParam();
  TrainOptions straight_options = options;
  straight_options.metrics_log = dir.Join("straight.jsonl");
  auto straight = Train(DropoutConfig(), corpus, straight_options);
  ASSERT_TRUE(straight.ok()) << straight.status();

  TrainOptions first = options;
  first.stop_after_steps = 10;
  first.state_dir = dir.Join("state");
  first.metrics_log = dir.Join("split.jsonl");
  auto half = Train(DropoutConfig(), corpus, first);
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ(half->steps, 10);
  {
    // What a kill after the save can leave behind: a line past the saved step and a torn one;
    // and lines no run of ours writes (fields of the wrong type), which must not stop the resume.
    std::ofstream log(first.metrics_log, std::ios::app);
    log << R"({"step":"7"})"
        << "\n"
        << R"({"step":3,"final":"yes"})"
        << "\n"
        << R"({"step":15,"valid_loss":1.0})"
        << "\n"
        << R"({"step":1)";
  }

  torch::manual_seed(999);  // disturb the generator: resume must restore it
  TrainOptions second = options;
  second.resume = dir.Join("state");
  second.metrics_log = first.metrics_log;
  auto resumed = Train(DropoutConfig(), corpus, second);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->steps, 20);
  for (const auto& p : straight->final_params) {
    EXPECT_TRUE(torch::equal(resumed->final_params[p.key()], p.value())) << p.key();
  }
  EXPECT_EQ(resumed->best_valid_loss, straight->best_valid_loss);
  EXPECT_EQ(resumed->test_loss, straight->test_loss);
  // The split run's log reads as the straight run's: evaluations at 5, 10, 15, 20, one summary.
  const auto logged = LoggedEvaluations(straight_options.metrics_log);
  ASSERT_EQ(logged.size(), 5u);
  EXPECT_EQ(LoggedEvaluations(first.metrics_log), logged);
}

INSTANTIATE_TEST_SUITE_P(FreshAndCarried, SplitResumeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "carried" : "fresh"; });

TEST(CarriedContextTest, ChangesTrainingAndNeedsLinearAttention) {
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options = ResumeOptions();
  auto fresh = Train(DropoutConfig(), corpus, options);
  options.carry_context = true;
  auto carried = Train(DropoutConfig(), corpus, options);
  ASSERT_TRUE(fresh.ok() && carried.ok());
  // Only the first window of each row reads the same context both ways.
  EXPECT_FALSE(torch::equal(fresh->final_params["blocks.0.attention.qkv.weight"],
                            carried->final_params["blocks.0.attention.qkv.weight"]));
  EXPECT_NE(fresh->best_valid_loss, carried->best_valid_loss);

  ModelConfig softmax = DropoutConfig();
  softmax.attention = AttentionKind::kSoftmax;
  EXPECT_THAT(std::string(Train(softmax, corpus, options).status().message()),
              ::testing::HasSubstr("needs linear attention"));
}

TEST(ResumeTest, CorruptStateIsAClearErrorAndWritesNothing) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainToState(dir, corpus, 4);

  const std::string optimizer = dir.Join("state") + "/optimizer.safetensors";
  std::string bytes;
  {
    std::ifstream in(optimizer, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(optimizer, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);

  TrainOptions second = ResumeOptions();
  second.resume = dir.Join("state");
  second.out = dir.Join("out");
  auto result = Train(DropoutConfig(), corpus, second);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()),
              ::testing::HasSubstr("optimizer.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir.Join("out")));

  second.resume = dir.Join("missing");
  EXPECT_FALSE(Train(DropoutConfig(), corpus, second).ok());
}

// A state with some but not all of the best (or averaged) weights, or one of the wrong shape, is
// refused with the parameter's name rather than resumed from a mix.
TEST(ResumeTest, IncompleteOrMisshapenSavedWeightsAreRefused) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainToState(dir, corpus, 6);  // past the first evaluation, so best weights are saved
  const std::string optimizer = dir.Join("state") + "/optimizer.safetensors";
  auto saved = ReadSafetensors(optimizer);
  ASSERT_TRUE(saved.ok()) << saved.status();
  ASSERT_TRUE(saved->tensors.count("best.blocks.0.attention.conv"));
  ASSERT_TRUE(saved->tensors.count("ema.blocks.0.attention.conv"));

  auto resume_with = [&](const std::function<void(std::map<std::string, torch::Tensor>&)>& edit) {
    std::map<std::string, torch::Tensor> tensors = saved->tensors;
    edit(tensors);
    NamedTensors named(tensors.begin(), tensors.end());
    EXPECT_TRUE(WriteSafetensors(optimizer, named).ok());
    TrainOptions second = ResumeOptions();
    second.resume = dir.Join("state");
    return std::string(Train(DropoutConfig(), corpus, second).status().message());
  };
  EXPECT_THAT(resume_with([](auto& t) { t.erase("best.blocks.0.attention.conv"); }),
              ::testing::HasSubstr("best weights for 'blocks.0.attention.conv' are missing"));
  EXPECT_THAT(
      resume_with([](auto& t) {
        t["ema.blocks.0.attention.conv"] = torch::zeros({2, 2});
      }),
      ::testing::HasSubstr("averaged weights for 'blocks.0.attention.conv' have the wrong shape"));
  EXPECT_EQ(resume_with([](auto&) {}), "");  // the untouched state still resumes
}

TEST(ResumeTest, TheOptimizerStateIsSavedByParameterNameAndAMissingFileIsNotFound) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainToState(dir, corpus, 4);
  const std::string optimizer = dir.Join("state") + "/optimizer.safetensors";
  auto saved = ReadSafetensors(optimizer);
  ASSERT_TRUE(saved.ok()) << saved.status();
  for (const char* name : {"exp_avg.embedding.weight", "exp_avg_sq.blocks.0.attention.conv",
                           "step.blocks.0.attention.qkv.weight"}) {
    EXPECT_TRUE(saved->tensors.count(name)) << name;
  }
  EXPECT_FALSE(saved->tensors.count("exp_avg.0")) << "named, not numbered";

  // Version 1 numbered the tensors in parameters() order: such a state still resumes, to the
  // same weights as the named one.
  TrainOptions second = ResumeOptions();
  second.resume = dir.Join("state");
  auto from_named = Train(DropoutConfig(), corpus, second);
  ASSERT_TRUE(from_named.ok()) << from_named.status();
  TransformerLM model(DropoutConfig());
  const auto named = model->named_parameters();
  std::map<std::string, torch::Tensor> numbered;
  for (const auto& [key, tensor] : saved->tensors) {
    std::string renamed = key;
    for (size_t i = 0; i < named.size(); ++i) {
      for (const char* prefix : {"exp_avg.", "exp_avg_sq.", "step."}) {
        if (key == prefix + named[i].key()) renamed = prefix + std::to_string(i);
      }
    }
    numbered[renamed] = tensor;
  }
  ASSERT_TRUE(WriteSafetensors(optimizer, NamedTensors(numbered.begin(), numbered.end())).ok());
  const std::string trainer_json = dir.Join("state") + "/trainer.json";
  auto json = nlohmann::json::parse(std::ifstream(trainer_json));
  json["version"] = 1;
  std::ofstream(trainer_json, std::ios::trunc) << json.dump();
  auto from_numbered = Train(DropoutConfig(), corpus, second);
  ASSERT_TRUE(from_numbered.ok()) << from_numbered.status();
  for (const auto& p : from_named->final_params) {
    EXPECT_TRUE(torch::equal(p.value(), from_numbered->final_params[p.key()])) << p.key();
  }

  std::filesystem::remove(optimizer);
  auto missing = Train(DropoutConfig(), corpus, second);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_THAT(std::string(missing.status().message()),
              ::testing::HasSubstr("optimizer.safetensors"));
}

TEST(ResumeTest, OtherDataBatchingOrContextIsRefused) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainToState(dir, corpus, 2);
  TrainOptions second = ResumeOptions();
  second.resume = dir.Join("state");
  second.batch_size = 8;
  EXPECT_THAT(std::string(Train(DropoutConfig(), corpus, second).status().message()),
              ::testing::HasSubstr("batch_size"));
  second.batch_size = 4;
  second.carry_context = true;
  EXPECT_THAT(std::string(Train(DropoutConfig(), corpus, second).status().message()),
              ::testing::HasSubstr("--carry_context"));
  second.carry_context = false;
  second.ema_decay = 0.5;
  EXPECT_THAT(std::string(Train(DropoutConfig(), corpus, second).status().message()),
              ::testing::HasSubstr("--ema_decay"));
  second.ema_decay = ResumeOptions().ema_decay;
  Corpus other = ByteCorpus("text", Text() + Text());
  EXPECT_THAT(std::string(Train(DropoutConfig(), other, second).status().message()),
              ::testing::HasSubstr("cannot resume"));
}

TEST(WeightAveragingTest, AveragesTheWeightsAfterEveryStepWithoutChangingTraining) {
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options = ResumeOptions();
  options.max_steps = 2;
  options.eval_every = 100;
  options.ema_decay = 0.5;
  torch::manual_seed(options.seed);  // the trainer's start: the same seed, the same model
  const auto start = CloneParameters(TransformerLM(TinyConfig()));
  TrainOptions first_step_only = options;
  first_step_only.stop_after_steps = 1;
  auto one = Train(TinyConfig(), corpus, first_step_only);
  auto two = Train(TinyConfig(), corpus, options);
  options.ema_decay = 0;
  auto plain = Train(TinyConfig(), corpus, options);
  ASSERT_TRUE(one.ok() && two.ok() && plain.ok());
  ASSERT_TRUE(plain->ema_params.empty());
  ASSERT_EQ(two->ema_params.size(), start.size());

  size_t i = 0;
  for (const auto& p : two->final_params) {
    EXPECT_TRUE(torch::equal(p.value(), plain->final_params[p.key()]))
        << "averaging changed " << p.key();
    // Decays min(0.5, (1 + k) / (10 + k)) for updates k = 0, 1: 0.1, then 2/11.
    auto p0 = start[i].to(torch::kFloat64), p1 = one->final_params[p.key()].to(torch::kFloat64),
         p2 = p.value().to(torch::kFloat64);
    auto average = 0.1 * p0 + 0.9 * p1;
    average = (2.0 / 11.0) * average + (9.0 / 11.0) * p2;
    EXPECT_LE(testing::RelativeError(two->ema_params[i], average), 1e-6) << p.key();
    ++i;
  }
}

TEST(WeightAveragingTest, TheBetterOfTheWeightsAndTheirAverageIsKept) {
  TempDir dir;
  Corpus corpus = ByteCorpus("text", Text());
  TrainOptions options = ResumeOptions();
  options.batch_size = 8;
  options.seq_len = 32;
  options.lr = 3e-2;  // noisy steps, which an average smooths
  options.max_steps = 40;
  options.eval_every = 5;
  options.ema_decay = 0.8;
  options.out = dir.Join("ckpt");
  options.metrics_log = dir.Join("metrics.jsonl");
  auto result = Train(TinyConfig(), corpus, options);
  ASSERT_TRUE(result.ok()) << result.status();

  std::ifstream log(options.metrics_log);
  std::string line;
  double best = std::numeric_limits<double>::infinity();
  int average_won = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("final", false)) continue;
    ASSERT_TRUE(j.contains("valid_loss_ema") && j.contains("valid_bpc_ema"));
    const double own = j["valid_loss"].get<double>(), average = j["valid_loss_ema"].get<double>();
    average_won += average < own;
    best = std::min({best, own, average});
  }
  EXPECT_GT(average_won, 0)
      << "the averaged weights never scored better: this test no longer covers keeping them";
  EXPECT_DOUBLE_EQ(result->best_valid_loss, best);
  auto checkpoint = LoadCheckpoint(options.out);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_NEAR(FreshWindowLoss(checkpoint->model, corpus.valid, 8, 32, torch::kCPU), best, 1e-5);
}

TEST(WeightAveragingTest, DecayOutsideZeroToOneIsAnError) {
  TrainOptions options = ResumeOptions();
  options.ema_decay = 1.0;
  EXPECT_THAT(
      std::string(Train(TinyConfig(), ByteCorpus("text", Text()), options).status().message()),
      ::testing::HasSubstr("ema_decay"));
}

}  // namespace
}  // namespace recur
