#include "model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace recur {
namespace {

using ::testing::HasSubstr;

TEST(ModelConfigTest, DefaultIsValidAndRoundTrips) {
  ModelConfig c;
  c.attention = AttentionKind::kSoftmax;
  c.dropout = 0.25;
  c.embedding_dropout = 0.1;
  ASSERT_TRUE(c.Validate().ok());
  auto back = ModelConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), c.ToJson());
  EXPECT_EQ(back->attention, AttentionKind::kSoftmax);
}

TEST(ModelConfigTest, ImpossibleShapesNameTheField) {
  auto message = [](auto edit) {
    ModelConfig c;
    edit(c);
    return std::string(c.Validate().message());
  };
  EXPECT_THAT(message([](ModelConfig& c) { c.d_model = 0; }),
              HasSubstr("d_model must be positive"));
  EXPECT_THAT(message([](ModelConfig& c) { c.num_heads = 3; }),
              HasSubstr("divisible by num_heads"));
  EXPECT_THAT(message([](ModelConfig& c) { c.vocab_size = -1; }), HasSubstr("vocab_size"));
  EXPECT_THAT(message([](ModelConfig& c) { c.dropout = 1.0; }), HasSubstr("dropout"));
  EXPECT_THAT(message([](ModelConfig& c) { c.embedding_dropout = -0.1; }),
              HasSubstr("embedding_dropout"));
  EXPECT_THAT(message([](ModelConfig& c) { c.chunk_size = 0; }), HasSubstr("chunk_size"));
  EXPECT_THAT(message([](ModelConfig& c) { c.short_conv = -1; }), HasSubstr("short_conv"));
  EXPECT_THAT(message([](ModelConfig& c) { c.short_conv = 17; }), HasSubstr("short_conv"));
  EXPECT_THAT(message([](ModelConfig& c) {
                c.d_model = 33;
                c.num_heads = 3;
              }),
              HasSubstr("even"));
  EXPECT_THAT(message([](ModelConfig& c) {
                c.state_decay = StateDecay::kMultiscale;
                c.attention = AttentionKind::kSoftmax;
              }),
              HasSubstr("linear attention only"));
  EXPECT_THAT(message([](ModelConfig& c) {
                c.state_decay = StateDecay::kLearned;
                c.attention = AttentionKind::kSoftmax;
              }),
              HasSubstr("linear attention only"));
}

TEST(ModelConfigTest, UnknownNamesOfTheArchitecturalChoicesNameTheField) {
  auto message = [](const char* field, const char* value) {
    auto json = nlohmann::json::parse(ModelConfig().ToJson());
    json[field] = value;
    return std::string(ModelConfig::FromJson(json.dump()).status().message());
  };
  EXPECT_THAT(message("feature_map", "relu"), HasSubstr("feature_map"));
  EXPECT_THAT(message("positional_encoding", "learned"), HasSubstr("positional_encoding"));
  EXPECT_THAT(message("state_decay", "exponential"), HasSubstr("unknown state_decay"));
  EXPECT_THAT(message("state_decay", "exponential"),
              HasSubstr("(expected 'none', 'multiscale' or 'learned')"));
  EXPECT_THAT(message("attention", "sparse"), HasSubstr("unknown attention kind 'sparse'"));
}

TEST(ModelConfigTest, EveryChoiceRoundTripsThroughItsName) {
  for (auto kind : {AttentionKind::kLinear, AttentionKind::kSoftmax}) {
    EXPECT_EQ(*ParseAttentionKind(AttentionKindName(kind)), kind);
  }
  for (auto e : {PositionalEncoding::kSinusoidal, PositionalEncoding::kNone}) {
    EXPECT_EQ(*ParsePositionalEncoding(PositionalEncodingName(e)), e);
  }
  for (auto d : {StateDecay::kNone, StateDecay::kMultiscale, StateDecay::kLearned}) {
    EXPECT_EQ(*ParseStateDecay(StateDecayName(d)), d);
  }
  EXPECT_EQ(FeatureMapName(FeatureMap::kEluPlusOne), "elu+1");
  EXPECT_EQ(StateDecayName(StateDecay::kMultiscale), "multiscale");
  EXPECT_EQ(PositionalEncodingName(PositionalEncoding::kNone), "none");
}

TEST(ModelConfigTest, NoPositionalEncodingAllowsAnOddWidth) {
  ModelConfig c;
  c.positional_encoding = PositionalEncoding::kNone;
  c.d_model = 33;
  c.num_heads = 3;
  EXPECT_TRUE(c.Validate().ok()) << c.Validate();
}

TEST(ModelConfigTest, FromJsonRejectsMissingAndMistypedFields) {
  EXPECT_THAT(ModelConfig::FromJson("{}").status().message(), HasSubstr("lacks 'vocab_size'"));
  ModelConfig c;
  std::string json = c.ToJson();
  json.replace(json.find("\"d_model\":256"), 13, "\"d_model\":\"x\"");
  EXPECT_THAT(ModelConfig::FromJson(json).status().message(),
              HasSubstr("'d_model' has the wrong type"));
  EXPECT_THAT(ModelConfig::FromJson("nope").status().message(), HasSubstr("not a JSON object"));
}

// 257.5 words or 32.0 dimensions are not sizes: a config that says so was not written by recur.
TEST(ModelConfigTest, SizesMustBeIntegers) {
  for (const char* field : {"vocab_size", "d_model", "num_layers", "d_ff", "chunk_size"}) {
    auto json = nlohmann::json::parse(ModelConfig().ToJson());
    json[field] = json[field].get<double>() + 0.5;
    EXPECT_THAT(ModelConfig::FromJson(json.dump()).status().message(),
                HasSubstr(absl::StrCat("'", field, "' must be an integer")));
    json[field] = 32.0;
    EXPECT_FALSE(ModelConfig::FromJson(json.dump()).ok()) << field << " 32.0";
  }
}

// The count is computed without building the model, so an absurd config is priced, not allocated.
TEST(ModelConfigTest, AbsurdSizesGiveASaturatedParameterCount) {
  ModelConfig c;
  c.num_layers = int64_t{1} << 40;
  c.d_ff = int64_t{1} << 40;
  EXPECT_EQ(c.ParameterCount(), std::numeric_limits<int64_t>::max());
}

TEST(ModelConfigTest, LaterFieldsAreOptionalForOlderCheckpoints) {
  ModelConfig c;
  c.embedding_dropout = 0.2;
  c.short_conv = 4;
  c.positional_encoding = PositionalEncoding::kNone;
  c.state_decay = StateDecay::kMultiscale;
  auto json = nlohmann::json::parse(c.ToJson());
  EXPECT_EQ(ModelConfig::FromJson(json.dump())->short_conv, 4);
  EXPECT_EQ(ModelConfig::FromJson(json.dump())->state_decay, StateDecay::kMultiscale);
  json.erase("embedding_dropout");
  json.erase("short_conv");
  json.erase("state_decay");
  auto back = ModelConfig::FromJson(json.dump());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->embedding_dropout, 0.0);
  EXPECT_EQ(back->short_conv, 0);
  EXPECT_EQ(back->state_decay, StateDecay::kNone);
  EXPECT_EQ(back->positional_encoding, PositionalEncoding::kNone);
}

TEST(ModelConfigTest, StateBytesFollowTheFormula) {
  ModelConfig c;  // 4 layers, 4 heads, d = 64
  EXPECT_EQ(c.StateBytesPerSequence(), 4 * 4 * (64 * 64 + 64) * 4);
  EXPECT_EQ(c.KvCacheBytesPerToken(), 4 * 2 * 256 * 4);
  c.short_conv = 4;  // plus the last 3 q/k/v inputs of each layer
  EXPECT_EQ(c.StateBytesPerSequence(), 4 * 4 * (64 * 64 + 64) * 4 + 4 * 3 * 3 * 256 * 4);
  EXPECT_THAT(ParseAttentionKind("performer").status().message(), HasSubstr("unknown attention"));
}

}  // namespace
}  // namespace recur
