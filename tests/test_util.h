#ifndef RECUR_TESTS_TEST_UTIL_H_
#define RECUR_TESTS_TEST_UTIL_H_

#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "model/config.h"
#include "model/transformer.h"

namespace recur::testing {

// A small model for numerical tests: 2 layers, D = 32, 4 heads, d_ff = 64, and a chunk size of
// 8 that does not divide the sequence lengths the tests use.
inline ModelConfig SmallModelConfig(AttentionKind kind, int64_t vocab_size) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.d_model = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.d_ff = 64;
  c.attention = kind;
  c.chunk_size = 8;
  return c;
}

// Random taps for every short convolution of `model`. They start as the identity, under which a
// form that mishandled the convolution's state would go unnoticed.
inline void RandomizeShortConvolutions(TransformerLM& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (IsShortConvolutionWeight(p.key())) p.value().normal_(0.0, 0.5);
  }
}

// Random per-head rates for every learned state decay (they start at the multiscale values, which
// a model that ignored the trained ones would also produce).
inline void RandomizeLearnedDecays(TransformerLM& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    if (absl::EndsWith(p.key(), "decay_logit")) p.value().uniform_(0.5, 4.0);  // γ in (0.62, 0.98)
  }
}

// CUDA when RECUR_TEST_DEVICE=cuda and a GPU is present, the CPU otherwise.
inline torch::Device TestDevice() {
  const char* env = std::getenv("RECUR_TEST_DEVICE");
  if (env != nullptr && std::string(env) == "cuda" && torch::cuda::is_available()) {
    return torch::kCUDA;
  }
  return torch::kCPU;
}

// max |a - b| / max |b|: the relative error of `a` against the reference `b`.
inline double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  auto ref = b.to(torch::kCPU, torch::kFloat64);
  auto diff = (a.to(torch::kCPU, torch::kFloat64) - ref).abs().max().item<double>();
  return diff / std::max(ref.abs().max().item<double>(), 1e-30);
}

// A fresh directory under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("recur-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string Join(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string out, err;
};

// Runs `command` through the shell and captures its exit code, stdout and stderr.
inline CommandResult RunCommand(const std::string& command) {
  TempDir dir;
  const int status =
      std::system((command + " > " + dir.Join("out") + " 2> " + dir.Join("err")).c_str());
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir.Join("out")),
          slurp(dir.Join("err"))};
}

}  // namespace recur::testing

#endif  // RECUR_TESTS_TEST_UTIL_H_
