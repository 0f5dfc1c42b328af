#ifndef RECUR_TRAIN_EVALUATION_H_
#define RECUR_TRAIN_EVALUATION_H_

// Scoring a model on a whole token stream. The stream is cut into `rows` equal rows (as training
// batches it) and read in windows of `seq_len` columns, in one of three ways; every token but each
// row's first is scored exactly once in all three.
//   fresh windows    side by side, each from an empty context, as training sees text: a token's
//                    context is what precedes it in its window (what validation uses).
//   sliding windows  windows start every `stride` columns and each scores only its last `stride`
//                    tokens (the first window scores all), so every token after the first window
//                    has at least seq_len - stride tokens of context: the usual protocol for
//                    fixed-context transformers, at seq_len / stride times the cost.
//   carried context  side by side, with the model's state carried from one window to the next, so
//                    every token is predicted from everything before it in its row: how the
//                    server's sessions read text, and how recurrent models are usually scored.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace recur {

struct EvaluationOptions {
  int64_t rows = 16;
  int64_t seq_len = 128;
  int64_t stride = 0;          // 0 or seq_len: fresh windows; less: sliding windows
  bool carry_context = false;  // carried context (stride is then ignored)
  torch::Device device = torch::kCPU;
  // Boundaries of the context-length buckets reported, ascending from 0; the last bucket is open.
  std::vector<int64_t> bucket_starts = {0};
};

// The tokens whose context (tokens before them that the model saw) is in [begin, end).
struct ContextBucket {
  int64_t begin = 0;
  int64_t end = 0;  // -1: unbounded
  int64_t tokens = 0;
  double loss_sum = 0;  // nats

  double mean_loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

struct Evaluation {
  int64_t tokens = 0;   // tokens scored: all but each row's first and the < rows left over
  double loss_sum = 0;  // nats
  std::vector<ContextBucket> buckets;

  double mean_loss() const { return tokens > 0 ? loss_sum / tokens : 0.0; }
};

Evaluation Score(TransformerLM& model, const torch::Tensor& stream,
                 const EvaluationOptions& options);

// A loss in nats per token as the figure users read: bits per character for byte-level data,
// perplexity for word-level data. The one place the conversion is written.
double LossFigure(double nats_per_token, bool byte_level);
// That figure's name in logs and tables: "bpc" or "ppl".
const char* LossFigureName(bool byte_level);

// "ppl 123.4" for word-level data, "bpc 1.234" for byte-level.
std::string DescribeLoss(double nats_per_token, bool byte_level);

}  // namespace recur

#endif  // RECUR_TRAIN_EVALUATION_H_
