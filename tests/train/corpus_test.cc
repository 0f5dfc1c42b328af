#include "train/corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "tests/test_util.h"
#include "train/batcher.h"

namespace recur {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(CorpusTest, WordLevelUsesTrainVocabularyEosAndUnk) {
  TempDir dir;
  WriteFile(dir.Join("ptb.train.txt"), " a b c \n b c a \n");
  WriteFile(dir.Join("ptb.valid.txt"), " a z \n");
  WriteFile(dir.Join("ptb.test.txt"), " c \n");
  auto corpus = LoadCorpus("ptb", dir.path().string());
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  EXPECT_FALSE(corpus->byte_level);
  EXPECT_EQ(corpus->tokenizer->vocab_size(), 5);  // <eos> a b c <unk>
  EXPECT_EQ(corpus->train.numel(), 8);
  const auto& word = static_cast<const WordTokenizer&>(*corpus->tokenizer);
  auto valid = std::vector<int64_t>(corpus->valid.data_ptr<int64_t>(),
                                    corpus->valid.data_ptr<int64_t>() + 3);
  EXPECT_EQ(valid, (std::vector<int64_t>{1, word.unk_id(), word.eos_id()}));
}

TEST(CorpusTest, WikiTextFileNames) {
  TempDir dir;
  for (const char* split : {"train", "valid", "test"}) {
    WriteFile(dir.Join(std::string("wiki.") + split + ".tokens"), " = Title = \n text here \n");
  }
  auto corpus = LoadCorpus("wikitext2", dir.path().string());
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  EXPECT_EQ(corpus->name, "wikitext2");
}

TEST(CorpusTest, MissingOrUnknownDataIsAClearError) {
  TempDir dir;
  EXPECT_THAT(LoadCorpus("ptb", dir.path().string()).status().message(),
              HasSubstr("ptb.train.txt"));
  EXPECT_THAT(LoadCorpus("imagenet", dir.path().string()).status().message(),
              HasSubstr("unknown dataset"));
  EXPECT_THAT(LoadCorpus("text", dir.Join("none.txt")).status().message(), HasSubstr("not found"));
  WriteFile(dir.Join("tiny.txt"), "short");
  EXPECT_THAT(LoadCorpus("text", dir.Join("tiny.txt")).status().message(), HasSubstr("at least"));
}

TEST(CorpusTest, TextDirectoryIsConcatenatedAndSplit90_5_5) {
  TempDir dir;
  WriteFile(dir.Join("b.txt"), std::string(1000, 'b'));
  WriteFile(dir.Join("a.txt"), std::string(1000, 'a'));
  WriteFile(dir.Join("a.dat"), std::string(500, 'x'));  // fortune index: skipped
  auto corpus = LoadCorpus("text", dir.path().string());
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  EXPECT_TRUE(corpus->byte_level);
  EXPECT_EQ(corpus->train.numel(), 1800);
  EXPECT_EQ(corpus->valid.numel(), 100);
  EXPECT_EQ(corpus->test.numel(), 100);
  EXPECT_EQ(corpus->train[0].item<int64_t>(), 'a');
  EXPECT_EQ(corpus->test[0].item<int64_t>(), 'b');
}

TEST(StreamBatcherTest, WindowsTileEachRowContiguously) {
  auto stream = torch::arange(103, torch::kInt64);
  StreamBatcher batcher(stream, 4, 10);  // rows of 25 tokens: 0..24, 25..49, ...
  EXPECT_EQ(batcher.num_windows(), 3);   // 24 targets per row: 10 + 10 + 4
  std::vector<int64_t> row0;
  for (int64_t w = 0; w < batcher.num_windows(); ++w) {
    auto [input, target] = batcher.Window(w);
    EXPECT_TRUE(torch::equal(target, input + 1));
    for (int64_t i = 0; i < input.size(1); ++i) row0.push_back(input[0][i].item<int64_t>());
    EXPECT_EQ(input[1][0].item<int64_t>(), 25 + w * 10);
  }
  std::vector<int64_t> expected(24);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(row0, expected);
}

}  // namespace
}  // namespace recur
