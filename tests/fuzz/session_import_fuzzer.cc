// Session import (server/session_codec.h) on arbitrary bytes: INVALID_ARGUMENT or a session whose
// every count is within the bounds the server relies on, never a crash.

#include <torch/torch.h>

#include "server/session_codec.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// The small models a session may claim to come from: each attention kind, with and without a
// short convolution.
recur::ModelConfig Config(int which) {
  recur::ModelConfig config;
  config.vocab_size = 20;
  config.d_model = 8;
  config.num_layers = 2;
  config.num_heads = 2;
  config.d_ff = 16;
  config.attention =
      which % 2 == 0 ? recur::AttentionKind::kLinear : recur::AttentionKind::kSoftmax;
  config.short_conv = which / 2 == 0 ? 0 : 3;
  if (config.short_conv > 0) config.positional_encoding = recur::PositionalEncoding::kNone;
  return config;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const recur::ModelConfig config = Config(input.ConsumeIntegralInRange(0, 3));
  const std::string bytes = recur::fuzz::SafetensorsBytes(input);
  auto session = recur::DecodeSession(bytes, config, torch::kCPU);
  if (!session.ok()) {
    recur::fuzz::Require(session.status().message().size() < 4096);
    return 0;
  }
  recur::fuzz::Require(session->consumed >= 0 && session->consumed <= recur::kMaxSessionTokens);
  recur::fuzz::Require(static_cast<int64_t>(session->pending.size()) <= recur::kMaxPendingTokens);
  recur::fuzz::Require(static_cast<int64_t>(session->seen.size()) <= config.vocab_size);
  recur::fuzz::Require(session->tokens() >= session->consumed);
  // What was accepted exports to bytes that import again.
  auto again = recur::EncodeSession(*session, config);
  recur::fuzz::Require(again.ok() && recur::DecodeSession(*again, config, torch::kCPU).ok());
  return 0;
}
