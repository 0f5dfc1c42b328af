#include "train/trainer.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace recur {
namespace {

using testing::TempDir;

// A small, learnable byte corpus: repeated short sentences.
std::string Text() {
  std::string text;
  const char* lines[] = {"the cat sat on the mat.\n", "a dog ran in the park.\n", "birds sing at dawn.\n"};
  for (int i = 0; i < 400; ++i) text += lines[(i * 7) % 3];
  return text;
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
  EXPECT_NEAR(Evaluate(checkpoint->model, corpus.valid, 8, 32, torch::kCPU), result->best_valid_loss, 1e-5);

  std::ifstream log(options.metrics_log);
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
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

}  // namespace
}  // namespace recur
