// recur-eval: scores a checkpoint on a data set's validation or test split in the three ways of
// train/evaluation.h (fresh windows as training validates, sliding windows, the context carried
// through each row as the recurrent form reads), and breaks the last down by context length.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/program.h"
#include "base/torch_runtime.h"
#include "model/checkpoint.h"
#include "model/weight_format.h"
#include "train/corpus.h"
#include "train/evaluation.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint directory written by recur-train (required)");
ABSL_FLAG(std::string, weights, "fp32",
          "How the linear layers' weights are held: fp32, bf16, bf16-output, int8 or auto (as "
          "recur-server; to measure what serving in each costs in perplexity)");
ABSL_FLAG(std::string, dataset, "text",
          "ptb, wikitext2, enwik8 or text: the data the checkpoint was trained on");
ABSL_FLAG(std::string, data_dir, "", "Data directory (ptb, wikitext2) or file (enwik8, text)");
ABSL_FLAG(std::string, split, "test", "valid or test");
ABSL_FLAG(int64_t, seq_len, 128, "Window length (the training window is the natural choice)");
ABSL_FLAG(int64_t, stride, 0, "Sliding windows' stride (0: half the window)");
ABSL_FLAG(int64_t, batch_size, 16, "Rows the split is cut into");
ABSL_FLAG(std::string, context, "all", "fresh, sliding, carried or all");

namespace {

std::string Describe(double nats, bool byte_level) { return recur::DescribeLoss(nats, byte_level); }

std::string BucketName(const recur::ContextBucket& b) {
  return b.end < 0 ? absl::StrFormat("%d+", b.begin) : absl::StrFormat("%d-%d", b.begin, b.end - 1);
}

}  // namespace

int main(int argc, char** argv) {
  recur::InitProgram(
      argc, argv,
      "Scores a checkpoint on a data set's validation or test split.\n"
      "Example: recur-eval --checkpoint runs/ptb --dataset ptb --data_dir ../shared/datasets/ptb "
      "--seq_len 256");
  if (auto s = recur::ApplyThreadsFlag(); !s.ok()) return recur::Fail(s);

  const std::string split = absl::GetFlag(FLAGS_split);
  const std::string context = absl::GetFlag(FLAGS_context);
  if (absl::GetFlag(FLAGS_checkpoint).empty()) return recur::Fail("--checkpoint is required");
  if (split != "valid" && split != "test")
    return recur::Fail("--split must be valid or test, not '" + split + "'");
  if (context != "fresh" && context != "sliding" && context != "carried" && context != "all") {
    return recur::Fail("--context must be fresh, sliding, carried or all, not '" + context + "'");
  }
  const int64_t seq_len = absl::GetFlag(FLAGS_seq_len);
  const int64_t stride = absl::GetFlag(FLAGS_stride) > 0 ? absl::GetFlag(FLAGS_stride)
                                                         : std::max<int64_t>(1, seq_len / 2);
  if (seq_len <= 0) return recur::Fail("--seq_len must be positive");
  if (stride > seq_len) return recur::Fail("--stride must not exceed --seq_len");
  if (absl::GetFlag(FLAGS_batch_size) <= 0) return recur::Fail("--batch_size must be positive");
  auto device = recur::DeviceFlag();
  if (!device.ok()) return recur::Fail(device.status());

  auto checkpoint = recur::LoadCheckpoint(absl::GetFlag(FLAGS_checkpoint), *device);
  if (!checkpoint.ok()) return recur::Fail(checkpoint.status());
  auto weights = recur::ParseWeightFormat(absl::GetFlag(FLAGS_weights), *device);
  if (!weights.ok()) return recur::Fail(weights.status());
  if (auto s = recur::SetWeightFormat(checkpoint->model, *weights); !s.ok()) return recur::Fail(s);
  auto corpus = recur::LoadCorpus(absl::GetFlag(FLAGS_dataset), absl::GetFlag(FLAGS_data_dir));
  if (!corpus.ok()) return recur::Fail(corpus.status());
  // Word ids are only meaningful under the vocabulary the model was trained with.
  if (corpus->tokenizer->ToJson() != checkpoint->tokenizer->ToJson()) {
    return recur::Fail(
        absl::StrCat("the checkpoint's vocabulary (", checkpoint->tokenizer->kind(), ", ",
                     checkpoint->tokenizer->vocab_size(),
                     " tokens) is not this data set's; was it trained on another one?"));
  }
  const torch::Tensor& stream = split == "valid" ? corpus->valid : corpus->test;

  recur::EvaluationOptions options;
  options.rows = absl::GetFlag(FLAGS_batch_size);
  options.seq_len = seq_len;
  options.device = *device;
  const bool byte_level = corpus->byte_level;
  std::printf("%s on the %s %s split: %lld tokens in %lld rows\n",
              absl::GetFlag(FLAGS_checkpoint).c_str(), corpus->name.c_str(), split.c_str(),
              static_cast<long long>(stream.numel()), static_cast<long long>(options.rows));
  auto report = [&](const std::string& how, const recur::Evaluation& e) {
    std::printf("  %-44s %s\n", how.c_str(), Describe(e.mean_loss(), byte_level).c_str());
  };
  if (context == "fresh" || context == "all") {
    report(absl::StrFormat("fresh windows of %d", seq_len),
           recur::Score(checkpoint->model, stream, options));
  }
  if (context == "sliding" || context == "all") {
    options.stride = stride;
    report(absl::StrFormat("sliding windows of %d, stride %d", seq_len, stride),
           recur::Score(checkpoint->model, stream, options));
  }
  if (context == "carried" || context == "all") {
    options.carry_context = true;
    for (int64_t start = 64; start < stream.numel(); start *= 2)
      options.bucket_starts.push_back(start);
    const auto carried = recur::Score(checkpoint->model, stream, options);
    report("context carried through each row", carried);
    std::printf("\n  carried, by context length:\n  %-12s %10s  %s\n", "context", "tokens",
                recur::LossFigureName(byte_level));
    for (const auto& bucket : carried.buckets) {
      if (bucket.tokens == 0) continue;
      const double mean = bucket.mean_loss();
      std::printf("  %-12s %10lld  %.3f\n", BucketName(bucket).c_str(),
                  static_cast<long long>(bucket.tokens), recur::LossFigure(mean, byte_level));
    }
  }
  return 0;
}
