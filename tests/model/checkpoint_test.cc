#include "model/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <utility>
#include <vector>

#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace recur {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::TestDevice;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

class CheckpointTest : public ::testing::TestWithParam<AttentionKind> {
 protected:
  void SetUp() override {
    torch::manual_seed(21);
    config_.vocab_size = 257;
    config_.d_model = 32;
    config_.num_layers = 2;
    config_.num_heads = 2;
    config_.d_ff = 48;
    config_.attention = GetParam();
    model_ = TransformerLM(config_);
    dir_ = tmp_.Join("ckpt");
    Provenance provenance;
    provenance.dataset = "unit-test";
    provenance.steps = 42;
    provenance.valid_loss = 1.25;
    ASSERT_TRUE(SaveCheckpoint(dir_, model_, tokenizer_, provenance).ok());
  }
  std::string Message() {
    auto loaded = LoadCheckpoint(dir_);
    EXPECT_FALSE(loaded.ok());
    return std::string(loaded.status().message());
  }
  // Rewrites model.safetensors with `mutate` applied to its JSON header.
  void EditHeader(const std::function<void(nlohmann::json&)>& mutate) {
    const std::string path = dir_ + "/model.safetensors";
    std::string bytes = ReadFile(path);
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    auto header = nlohmann::json::parse(bytes.substr(8, n));
    mutate(header);
    const std::string json = header.dump();
    const uint64_t length = json.size();
    WriteFile(path,
              std::string(reinterpret_cast<const char*>(&length), 8) + json + bytes.substr(8 + n));
  }

  TempDir tmp_;
  ModelConfig config_;
  ByteTokenizer tokenizer_;
  TransformerLM model_{nullptr};
  std::string dir_;
};

TEST_P(CheckpointTest, RoundTripGivesBitIdenticalLogits) {
  auto loaded = LoadCheckpoint(dir_, TestDevice());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.ToJson(), config_.ToJson());
  EXPECT_EQ(loaded->tokenizer->kind(), "byte");
  EXPECT_EQ(loaded->provenance.dataset, "unit-test");
  EXPECT_EQ(loaded->provenance.steps, 42);
  EXPECT_DOUBLE_EQ(loaded->provenance.valid_loss, 1.25);
  EXPECT_FALSE(loaded->provenance.created.empty());

  torch::NoGradGuard no_grad;
  model_->eval();
  auto tokens = torch::randint(0, 257, {2, 19}, torch::kInt64);
  auto expected = model_->Forward(tokens);
  auto actual = loaded->model->Forward(tokens.to(TestDevice())).to(torch::kCPU);
  if (TestDevice().is_cpu()) {
    EXPECT_TRUE(torch::equal(actual, expected));
  } else {
    EXPECT_LE(testing::RelativeError(actual, expected), 1e-5);
  }
  for (const auto& p : model_->named_parameters()) {
    EXPECT_TRUE(torch::equal(loaded->model->named_parameters()[p.key()].to(torch::kCPU), p.value()))
        << p.key();
  }
}

TEST_P(CheckpointTest, OverwriteIsAtomicAndLeavesNoTemporaries) {
  ASSERT_TRUE(SaveCheckpoint(dir_, model_, tokenizer_, {}).ok());
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp_.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "ckpt");
  }
  EXPECT_EQ(entries, 1);
  EXPECT_TRUE(LoadCheckpoint(dir_).ok());
}

TEST_P(CheckpointTest, TruncatedWeightsAreAnError) {
  const std::string path = dir_ + "/model.safetensors";
  std::string bytes = ReadFile(path);
  WriteFile(path, bytes.substr(0, bytes.size() - 100));
  EXPECT_THAT(Message(), HasSubstr("model.safetensors"));
  WriteFile(path, bytes.substr(0, 5));
  EXPECT_THAT(Message(), HasSubstr("shorter than the 8-byte header length"));
  WriteFile(path, bytes.substr(0, 200));
  EXPECT_THAT(Message(), HasSubstr("does not fit"));
}

TEST_P(CheckpointTest, WrongShapeIsAnError) {
  EditHeader([](nlohmann::json& h) { h["final_norm.weight"]["shape"] = {16, 2}; });
  EXPECT_THAT(Message(), HasSubstr("'final_norm.weight' has shape [16, 2], expected [32]"));
}

TEST_P(CheckpointTest, HeaderWithLyingOffsetsIsAnError) {
  EditHeader([](nlohmann::json& h) { h["final_norm.weight"]["data_offsets"][1] = 999999999; });
  EXPECT_THAT(Message(), HasSubstr("lie outside"));
}

TEST_P(CheckpointTest, OverlappingOffsetsAreAnError) {
  EditHeader([](nlohmann::json& h) {
    auto a = h["final_norm.weight"]["data_offsets"];
    h["final_norm.bias"]["data_offsets"] = a;
  });
  EXPECT_THAT(Message(), HasSubstr("overlap"));
}

TEST_P(CheckpointTest, WrongDtypeIsAnError) {
  EditHeader([](nlohmann::json& h) { h["final_norm.weight"]["dtype"] = "I32"; });
  EXPECT_THAT(Message(), HasSubstr("dtype"));
}

TEST_P(CheckpointTest, MissingTensorIsAnError) {
  auto file = ReadSafetensors(dir_ + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  NamedTensors kept;
  for (auto& [name, t] : file->tensors) {
    if (name != "blocks.1.ff_in.bias") kept.emplace_back(name, t);
  }
  ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", kept).ok());
  EXPECT_THAT(Message(), HasSubstr("lacks tensor 'blocks.1.ff_in.bias'"));
}

TEST_P(CheckpointTest, UnexpectedTensorIsAnError) {
  auto file = ReadSafetensors(dir_ + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  NamedTensors all(file->tensors.begin(), file->tensors.end());
  all.emplace_back("blocks.9.extra", torch::zeros({3}));
  ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", all).ok());
  EXPECT_THAT(Message(), HasSubstr("unexpected tensor 'blocks.9.extra'"));
}

// A NaN or an infinity in the weights would stream garbage (the server sampled NUL bytes from NaN
// logits, recur-eval printed "bpc nan" and exited 0): refused at load, naming the tensor.
TEST_P(CheckpointTest, NonFiniteWeightsAreRefusedByName) {
  const std::string path = dir_ + "/model.safetensors";
  auto file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok());
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    NamedTensors tensors;
    for (const auto& [name, t] : file->tensors) {
      tensors.emplace_back(name, t.clone());
      if (name == "blocks.1.ff_in.weight") tensors.back().second[3][5] = bad;
    }
    ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
    EXPECT_THAT(Message(), HasSubstr("tensor 'blocks.1.ff_in.weight' holds non-finite values"));
  }
}

// A config that needs far more memory than the weights file holds is refused before the model is
// built (num_layers 10^9 used to grow to 7.8 GB before failing, d_ff 10^12 to throw from
// LibTorch); a smaller disagreement names the tensors.
TEST_P(CheckpointTest, AConfigThatDisagreesWithTheWeightsIsRefusedBeforeBuilding) {
  const auto original = nlohmann::json::parse(ReadFile(dir_ + "/config.json"));
  auto message = [&](const std::string& field, int64_t value) {
    auto json = original;
    json["model"][field] = value;
    WriteFile(dir_ + "/config.json", json.dump());
    return Message();
  };
  EXPECT_THAT(message("num_layers", 1'000'000'000),
              HasSubstr("parameters but model.safetensors holds"));
  EXPECT_THAT(message("d_ff", 1'000'000'000'000), HasSubstr("parameters but model.safetensors"));
  EXPECT_THAT(message("d_model", int64_t{1} << 40), HasSubstr("more than 9.2e18 parameters"));
  EXPECT_THAT(message("num_layers", 3), HasSubstr("lacks tensor 'blocks.2."));
  EXPECT_THAT(message("num_layers", 1), HasSubstr("unexpected tensor 'blocks.1."));
}

TEST_P(CheckpointTest, ANonIntegerVocabularySizeIsRefused) {
  auto json = nlohmann::json::parse(ReadFile(dir_ + "/config.json"));
  json["model"]["vocab_size"] = 257.5;
  WriteFile(dir_ + "/config.json", json.dump());
  EXPECT_THAT(Message(), HasSubstr("'vocab_size' must be an integer"));
}

TEST_P(CheckpointTest, UnknownVersionIsAnError) {
  auto json = nlohmann::json::parse(ReadFile(dir_ + "/config.json"));
  json["version"] = 99;
  WriteFile(dir_ + "/config.json", json.dump());
  EXPECT_THAT(Message(), HasSubstr("unsupported checkpoint version 99"));
}

TEST_P(CheckpointTest, MissingFilesAreErrors) {
  fs::remove(dir_ + "/tokenizer.json");
  EXPECT_THAT(Message(), HasSubstr("tokenizer.json"));
  fs::remove(dir_ + "/config.json");
  EXPECT_THAT(Message(), HasSubstr("config.json"));
  auto missing = LoadCheckpoint(tmp_.Join("nowhere"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_P(CheckpointTest, VocabularyMismatchIsAnError) {
  auto json = nlohmann::json::parse(ReadFile(dir_ + "/config.json"));
  json["model"]["vocab_size"] = 300;
  WriteFile(dir_ + "/config.json", json.dump());
  EXPECT_THAT(Message(), HasSubstr("vocab_size 300 but the tokenizer has 257"));
}

TEST_P(CheckpointTest, ImpossibleConfigIsAnError) {
  auto json = nlohmann::json::parse(ReadFile(dir_ + "/config.json"));
  json["model"]["num_heads"] = 3;
  WriteFile(dir_ + "/config.json", json.dump());
  EXPECT_THAT(Message(), HasSubstr("divisible by num_heads"));
  WriteFile(dir_ + "/config.json", "{not json");
  EXPECT_THAT(Message(), HasSubstr("not a JSON object"));
}

INSTANTIATE_TEST_SUITE_P(Kinds, CheckpointTest,
                         ::testing::Values(AttentionKind::kLinear, AttentionKind::kSoftmax),
                         [](const auto& info) {
                           return std::string(AttentionKindName(info.param));
                         });

// A learned decay is a parameter like any other: saved, loaded, and used by the loaded model.
TEST(LearnedDecayCheckpointTest, TrainedDecayRoundTrips) {
  torch::manual_seed(23);
  ModelConfig config = testing::SmallModelConfig(AttentionKind::kLinear, 257);
  config.state_decay = StateDecay::kLearned;
  TransformerLM model(config);
  testing::RandomizeLearnedDecays(model);
  TempDir tmp;
  ByteTokenizer tokenizer;
  ASSERT_TRUE(SaveCheckpoint(tmp.Join("ckpt"), model, tokenizer, {}).ok());
  auto loaded = LoadCheckpoint(tmp.Join("ckpt"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->config.state_decay, StateDecay::kLearned);
  const std::string name = "blocks.1.attention.decay_logit";
  EXPECT_TRUE(
      torch::equal(loaded->model->named_parameters()[name], model->named_parameters()[name]));
  torch::NoGradGuard no_grad;
  model->eval();
  auto tokens = torch::randint(0, 257, {2, 19}, torch::kInt64);
  EXPECT_TRUE(torch::equal(loaded->model->Forward(tokens), model->Forward(tokens)));
}

TEST(SafetensorsTest, RoundTripsDtypesShapesAndMetadata) {
  TempDir tmp;
  NamedTensors tensors{{"f32", torch::randn({3, 4})},
                       {"f64", torch::randn({2}, torch::kFloat64)},
                       {"i64", torch::arange(6, torch::kInt64).view({2, 3})},
                       {"bf16", torch::randn({5}).to(torch::kBFloat16)},
                       {"u8", torch::randint(0, 255, {7}, torch::kUInt8)},
                       {"empty", torch::zeros({0, 3})},
                       {"scalar", torch::tensor(3.5)}};
  ASSERT_TRUE(WriteSafetensors(tmp.Join("t.safetensors"), tensors, {{"k", "v"}}).ok());
  auto file = ReadSafetensors(tmp.Join("t.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("k"), "v");
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(file->tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(file->tensors.at(name), t)) << name;
  }
}

// The byte layout the format specifies: u64 header length, JSON, data; data 8-byte aligned.
TEST(SafetensorsTest, LayoutFollowsTheSpecification) {
  TempDir tmp;
  ASSERT_TRUE(
      WriteSafetensors(tmp.Join("t.safetensors"), {{"x", torch::tensor({1.0f, 2.0f})}}).ok());
  std::string bytes = ReadFile(tmp.Join("t.safetensors"));
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["x"]["dtype"], "F32");
  EXPECT_EQ(header["x"]["shape"], nlohmann::json({2}));
  EXPECT_EQ(header["x"]["data_offsets"], nlohmann::json({0, 8}));
  float values[2];
  std::memcpy(values, bytes.data() + 8 + n, 8);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
}

TEST(SafetensorsTest, GarbageIsAnErrorNotACrash) {
  TempDir tmp;
  std::mt19937 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    if (junk.size() >= 8 && trial % 2 == 0) {
      const uint64_t n = junk.size() - 8;
      std::memcpy(junk.data(), &n, 8);
    }
    WriteFile(tmp.Join("junk"), junk);
    EXPECT_FALSE(ReadSafetensors(tmp.Join("junk")).ok());
  }
}

}  // namespace
}  // namespace recur
