// The checkpoint loader (model/checkpoint.h) with a fuzzed config.json and tokenizer.json beside
// the weights of a small real model: an error naming the problem or a loaded model whose config
// matches its weights, never a crash or an allocation the weights file does not back.

#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model/checkpoint.h"
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

std::filesystem::path& Directory() {
  static std::filesystem::path directory;
  return directory;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  Directory() = std::filesystem::temp_directory_path() /
                ("recur-checkpoint-fuzzer-" + std::to_string(::getpid()));
  recur::ModelConfig config;
  config.vocab_size = 257;
  config.d_model = 8;
  config.num_layers = 1;
  config.num_heads = 2;
  config.d_ff = 16;
  torch::manual_seed(1);
  recur::TransformerLM model(config);
  if (!recur::SaveCheckpoint(Directory().string(), model, recur::ByteTokenizer(), {}).ok()) {
    __builtin_trap();
  }
  std::atexit([] {
    std::error_code ignored;
    std::filesystem::remove_all(Directory(), ignored);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string config = input.ConsumeRandomLengthString(4096);
  const std::string tokenizer = input.ConsumeRemainingBytesAsString();
  std::ofstream(Directory() / "config.json", std::ios::trunc) << config;
  std::ofstream(Directory() / "tokenizer.json", std::ios::trunc) << tokenizer;
  auto checkpoint = recur::LoadCheckpoint(Directory().string());
  if (checkpoint.ok()) {
    recur::fuzz::Require(checkpoint->model->ParameterCount() ==
                         checkpoint->config.ParameterCount());
    recur::fuzz::Require(checkpoint->tokenizer->vocab_size() == checkpoint->config.vocab_size);
  }
  // The two parsers behind it, on the raw text too.
  auto parsed = recur::ModelConfig::FromJson(config);
  if (parsed.ok()) {
    recur::fuzz::Require(recur::ModelConfig::FromJson(parsed->ToJson()).ok());
  }
  (void)recur::TokenizerFromJson(tokenizer);
  return 0;
}
