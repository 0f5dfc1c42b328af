#include "server/session_codec.h"

#include <limits>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using ::testing::HasSubstr;

// Each attention kind, without and with a short convolution (whose last inputs travel too).
class SessionCodecTest : public ::testing::TestWithParam<std::tuple<AttentionKind, int64_t>> {
 protected:
  SessionCodecTest() {
    config_.vocab_size = 50;
    config_.d_model = 16;
    config_.num_layers = 2;
    config_.num_heads = 2;
    config_.d_ff = 32;
    config_.attention = std::get<0>(GetParam());
    config_.short_conv = std::get<1>(GetParam());
    torch::manual_seed(1);
    model_ = TransformerLM(config_);
    model_->eval();
    testing::RandomizeShortConvolutions(model_);
  }

  SessionState Session(int64_t length) {
    torch::NoGradGuard no_grad;
    SessionState session;
    session.model = model_->NewState(1, torch::kCPU);
    model_->Prefill(torch::randint(0, 50, {1, length}, torch::kInt64), &session.model);
    session.consumed = length;
    session.pending = {7};
    session.seen = TokenSet(config_.vocab_size);
    for (int64_t id : {1, 7, 3}) session.seen.Insert(id);
    return session;
  }

  ModelConfig config_;
  TransformerLM model_{nullptr};
};

TEST_P(SessionCodecTest, RoundTripContinuesIdentically) {
  torch::NoGradGuard no_grad;
  SessionState session = Session(13);
  auto bytes = EncodeSession(session, config_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto decoded = DecodeSession(*bytes, config_, torch::kCPU);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->consumed, 13);
  EXPECT_EQ(decoded->pending, session.pending);
  EXPECT_EQ(decoded->seen, session.seen);
  auto next = torch::tensor({7}, torch::kInt64);
  auto a = model_->Step(next, &session.model);
  auto b = model_->Step(next, &decoded->model);
  EXPECT_TRUE(torch::equal(a, b));
}

// A file of --session_dir names its session and owner; an export over the API names neither.
TEST_P(SessionCodecTest, LabelsTravelOnlyWhenGiven) {
  const SessionLabels given{"s-00112233445566778899aabbccddeeff", "alice"};
  SessionLabels read;
  ASSERT_TRUE(
      DecodeSession(*EncodeSession(Session(3), config_, given), config_, torch::kCPU, &read).ok());
  EXPECT_EQ(read.id, given.id);
  EXPECT_EQ(read.tenant, given.tenant);
  ASSERT_TRUE(DecodeSession(*EncodeSession(Session(3), config_), config_, torch::kCPU, &read).ok());
  EXPECT_TRUE(read.id.empty() && read.tenant.empty());
}

TEST_P(SessionCodecTest, CorruptOrForeignBytesAreInvalidArgument) {
  auto bytes = EncodeSession(Session(5), config_);
  ASSERT_TRUE(bytes.ok());
  auto error = [this](const std::string& data) {
    auto decoded = DecodeSession(data, config_, torch::kCPU);
    EXPECT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(decoded.status().message());
  };
  EXPECT_THAT(error(""), HasSubstr("shorter than"));
  EXPECT_THAT(error(bytes->substr(0, bytes->size() - 3)), HasSubstr("session bytes"));
  ModelConfig other = config_;
  other.d_ff = 64;
  auto foreign = EncodeSession(Session(5), other);
  EXPECT_THAT(error(*foreign), HasSubstr("different model"));
  SessionState bad = Session(5);
  bad.pending = {50};  // outside the vocabulary
  EXPECT_THAT(error(*EncodeSession(bad, config_)), HasSubstr("outside the vocabulary"));
  SessionState nan = Session(5);
  if (config_.attention == AttentionKind::kLinear) {
    nan.model.linear[0].s[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  } else {
    nan.model.kv[0].k[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  }
  EXPECT_THAT(error(*EncodeSession(nan, config_)), HasSubstr("non-finite"));
  if (config_.short_conv > 0) {
    SessionState short_tail = Session(5);
    short_tail.model.conv[1] = short_tail.model.conv[1].narrow(1, 0, 1);
    EXPECT_THAT(error(*EncodeSession(short_tail, config_)), HasSubstr("layers.1.conv' has shape"));
  }
}

// Every imported count is bounded: consumed = INT64_MAX used to be accepted, and GetSession then
// reported a negative token count.
TEST_P(SessionCodecTest, ImportedCountsAreBounded) {
  auto error = [this](const SessionState& session) {
    auto bytes = EncodeSession(session, config_);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    auto decoded = DecodeSession(*bytes, config_, torch::kCPU);
    EXPECT_FALSE(decoded.ok());
    return std::string(decoded.status().message());
  };
  if (config_.attention == AttentionKind::kLinear) {  // softmax's count is its cache's length
    SessionState huge = Session(5);
    huge.consumed = std::numeric_limits<int64_t>::max();
    EXPECT_THAT(error(huge), HasSubstr("'consumed'"));
    huge.consumed = kMaxSessionTokens + 1;
    EXPECT_THAT(error(huge), HasSubstr("'consumed'"));
  }
  SessionState long_pending = Session(5);
  long_pending.pending.assign(kMaxPendingTokens + 1, 3);
  EXPECT_THAT(error(long_pending), HasSubstr("'pending'"));
}

// `bytes` rewritten as version 1 wrote them: `seen` a list of token ids.
std::string AsVersion1(const std::string& bytes, const std::vector<int64_t>& seen) {
  auto file = ParseSafetensors(bytes, "test");
  EXPECT_TRUE(file.ok()) << file.status();
  NamedTensors tensors(file->tensors.begin(), file->tensors.end());
  for (auto& [name, tensor] : tensors) {
    if (name == "seen") tensor = torch::tensor(seen, torch::kInt64).view({-1});
  }
  file->metadata["version"] = "1";
  return *EncodeSafetensors(tensors, file->metadata);
}

// Version 2 keeps the repetition penalty's history as a bitmap of ceil(V/8) bytes, whatever the
// session's length; version 1's list of ids is still read.
TEST_P(SessionCodecTest, HistoryIsABitmapAndTheListFormatIsStillRead) {
  SessionState session = Session(5);
  auto bytes = EncodeSession(session, config_);
  ASSERT_TRUE(bytes.ok());
  auto file = ParseSafetensors(*bytes, "test");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->metadata.at("version"), "2");
  const torch::Tensor bits = file->tensors.at("seen");
  EXPECT_EQ(bits.scalar_type(), torch::kUInt8);
  EXPECT_EQ(bits.numel(), (config_.vocab_size + 7) / 8);
  EXPECT_EQ(bits[0].item<int>(), (1 << 1) | (1 << 3) | (1 << 7));

  auto old = DecodeSession(AsVersion1(*bytes, {7, 1, 3}), config_, torch::kCPU);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->seen, session.seen);
  auto repeated = DecodeSession(AsVersion1(*bytes, {1, 7, 1}), config_, torch::kCPU);
  EXPECT_THAT(repeated.status().message(), HasSubstr("token 1 twice"));

  // A bit past the vocabulary (50 tokens: bits 50..55 of the last byte are padding).
  NamedTensors tensors(file->tensors.begin(), file->tensors.end());
  for (auto& [name, tensor] : tensors) {
    if (name == "seen") tensor[6] = 1 << 3;
  }
  auto padded = DecodeSession(*EncodeSafetensors(tensors, file->metadata), config_, torch::kCPU);
  EXPECT_THAT(padded.status().message(), HasSubstr("outside the vocabulary"));
}

// Metadata is the client's text: an error quotes at most a short excerpt of it (a 100 kB echo
// used to overflow the client's metadata limits and hang a grpc-js channel).
TEST_P(SessionCodecTest, ErrorsQuoteAtMostAnExcerptOfTheInput) {
  const std::string junk(100'000, 'x');
  for (const char* key : {"format", "version", "consumed", "config"}) {
    std::map<std::string, std::string> metadata = {{"format", "recur-session"},
                                                   {"version", "1"},
                                                   {"consumed", "5"},
                                                   {"config", config_.ToJson()}};
    metadata[key] = junk;
    auto bytes = EncodeSafetensors({{"pending", torch::zeros({1}, torch::kInt64)}}, metadata);
    ASSERT_TRUE(bytes.ok());
    auto decoded = DecodeSession(*bytes, config_, torch::kCPU);
    ASSERT_FALSE(decoded.ok()) << key;
    EXPECT_LT(decoded.status().message().size(), 1000u) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, SessionCodecTest,
                         ::testing::Combine(::testing::Values(AttentionKind::kLinear,
                                                              AttentionKind::kSoftmax),
                                            ::testing::Values(int64_t{0}, int64_t{3})),
                         [](const auto& info) {
                           return absl::StrCat(AttentionKindName(std::get<0>(info.param)), "_conv",
                                               std::get<1>(info.param));
                         });

}  // namespace
}  // namespace recur
