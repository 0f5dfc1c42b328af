// recur-train: trains a TransformerLM and writes the best checkpoint by validation loss.

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/program.h"
#include "base/status.h"
#include "base/torch_runtime.h"
#include "model/config.h"
#include "train/corpus.h"
#include "train/evaluation.h"
#include "train/trainer.h"
#include "train/training_state.h"

ABSL_FLAG(std::string, dataset, "text", "ptb, wikitext2, enwik8 or text");
ABSL_FLAG(std::string, data_dir, "",
          "Data location: the directory with ptb.{train,valid,test}.txt or "
          "wiki.{train,valid,test}.tokens; for enwik8 and text, a file or a directory of files");
ABSL_FLAG(std::string, data, "", "Alias of --data_dir, for a text file or directory");
ABSL_FLAG(std::string, attention, "linear", "linear or softmax");
ABSL_FLAG(int64_t, layers, 4, "Transformer blocks");
ABSL_FLAG(int64_t, heads, 4, "Attention heads per block");
ABSL_FLAG(int64_t, d_model, 256, "Model width");
ABSL_FLAG(int64_t, d_ff, 1024, "Feed-forward width");
ABSL_FLAG(double, dropout, 0.1, "Dropout probability");
ABSL_FLAG(double, embedding_dropout, 0.0,
          "Probability of dropping a whole word type from the input embedding for a step");
ABSL_FLAG(int64_t, short_conv, 0,
          "Width of a causal depthwise convolution over each layer's q, k, v (e.g. 4; 0: none)");
ABSL_FLAG(std::string, positional_encoding, "sinusoidal",
          "sinusoidal (added to the embedding) or none (e.g. with --short_conv)");
ABSL_FLAG(std::string, state_decay, "none",
          "Linear attention: none (the paper's summed state), multiscale (head h's state decays "
          "by 1 - 2^(-5-h) per token) or learned (starts as multiscale, each head's rate trained)");
ABSL_FLAG(int64_t, chunk_size, 64, "Chunk length of the chunkwise linear-attention form");
ABSL_FLAG(bool, tie_embeddings, true, "Share the input embedding with the output layer");
ABSL_FLAG(int64_t, seq_len, 128, "Training window length (tokens)");
ABSL_FLAG(int64_t, batch_size, 16,
          "Sequences per step (with data-parallel ranks: the global batch, split evenly)");
ABSL_FLAG(bool, carry_context, false,
          "Linear attention: carry each row's state from window to window, in training and in "
          "evaluation (the recurrent way), instead of starting every window afresh");
ABSL_FLAG(double, lr, 1e-3, "Peak learning rate (AdamW)");
ABSL_FLAG(int64_t, warmup, 100, "Linear warm-up steps, then cosine decay to lr/10");
ABSL_FLAG(double, weight_decay, 0.01, "AdamW weight decay on weight matrices");
ABSL_FLAG(
    double, ema_decay, 0,
    "Also keep a moving average of the weights with this decay per step (e.g. 0.999; 0: off), "
    "validated beside them; the better of the two is kept");
ABSL_FLAG(double, clip, 1.0, "Gradient-norm clip (0: off)");
ABSL_FLAG(int64_t, epochs, 1, "Passes over the training split (when --max_steps is 0)");
ABSL_FLAG(int64_t, max_steps, 0, "Stop after this many steps (0: use --epochs)");
ABSL_FLAG(double, time_budget, 0, "Stop after this many seconds of training (0: no limit)");
ABSL_FLAG(int64_t, eval_every, 0, "Validate every N steps (0: each epoch and at the end)");
ABSL_FLAG(uint64_t, seed, 1, "Random seed");
ABSL_FLAG(std::string, out, "", "Checkpoint directory to write (the best by validation)");
ABSL_FLAG(std::string, resume, "",
          "Continue the run saved in this state directory (written to <out>.state at each "
          "evaluation): model, optimizer, random generator and data position");
ABSL_FLAG(int64_t, stop_after_steps, 0,
          "End this invocation at this step, saving the state; the schedule still follows "
          "--max_steps/--epochs (train in pieces with --resume)");
ABSL_FLAG(bool, evaluate, true,
          "Validate and test (false: measure training throughput and memory only; --out then "
          "receives the final weights)");
ABSL_FLAG(std::string, metrics_log, "",
          "Append one JSON line per evaluation to this file (default: <out>.metrics.jsonl)");

namespace {

// The architecture the flags ask for (a resumed run takes its saved one instead).
absl::StatusOr<recur::ModelConfig> ConfigFromFlags(int64_t vocab_size) {
  recur::ModelConfig config;
  RECUR_ASSIGN_OR_RETURN(config.attention,
                         recur::ParseAttentionKind(absl::GetFlag(FLAGS_attention)));
  RECUR_ASSIGN_OR_RETURN(config.positional_encoding,
                         recur::ParsePositionalEncoding(absl::GetFlag(FLAGS_positional_encoding)));
  RECUR_ASSIGN_OR_RETURN(config.state_decay,
                         recur::ParseStateDecay(absl::GetFlag(FLAGS_state_decay)));
  config.vocab_size = vocab_size;
  config.d_model = absl::GetFlag(FLAGS_d_model);
  config.num_layers = absl::GetFlag(FLAGS_layers);
  config.num_heads = absl::GetFlag(FLAGS_heads);
  config.d_ff = absl::GetFlag(FLAGS_d_ff);
  config.dropout = absl::GetFlag(FLAGS_dropout);
  config.embedding_dropout = absl::GetFlag(FLAGS_embedding_dropout);
  config.short_conv = absl::GetFlag(FLAGS_short_conv);
  config.chunk_size = absl::GetFlag(FLAGS_chunk_size);
  config.tie_embeddings = absl::GetFlag(FLAGS_tie_embeddings);
  RECUR_RETURN_IF_ERROR(config.Validate());
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  recur::InitProgram(
      argc, argv,
      "Trains a linear- or softmax-attention language model and writes a checkpoint.\n"
      "Example: recur-train --dataset ptb --data_dir ../shared/datasets/ptb --out runs/ptb");

  if (auto s = recur::ApplyThreadsFlag(); !s.ok()) return recur::Fail(s);

  recur::TrainOptions options;
  auto device = recur::DeviceFlag();
  if (!device.ok()) return recur::Fail(device.status());
  options.device = *device;

  std::string path = absl::GetFlag(FLAGS_data_dir);
  if (path.empty()) path = absl::GetFlag(FLAGS_data);
  auto data_parallel = recur::DataParallel::FromEnvironment(options.device.type());
  if (!data_parallel.ok()) return recur::Fail(data_parallel.status());
  options.data_parallel = data_parallel->get();
  if (options.data_parallel != nullptr)
    options.device = options.data_parallel->device();  // one GPU per rank

  auto corpus = recur::LoadCorpus(absl::GetFlag(FLAGS_dataset), path);
  if (!corpus.ok()) return recur::Fail(corpus.status());

  options.resume = absl::GetFlag(FLAGS_resume);
  auto config = options.resume.empty() ? ConfigFromFlags(corpus->tokenizer->vocab_size())
                                       : recur::ReadTrainingStateConfig(options.resume);
  if (!config.ok()) {
    return recur::Fail(options.resume.empty() ? config.status()
                                              : recur::Annotate(config.status(), "cannot resume"));
  }

  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.seq_len = absl::GetFlag(FLAGS_seq_len);
  options.carry_context = absl::GetFlag(FLAGS_carry_context);
  options.lr = absl::GetFlag(FLAGS_lr);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  options.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  options.clip = absl::GetFlag(FLAGS_clip);
  options.ema_decay = absl::GetFlag(FLAGS_ema_decay);
  options.epochs = absl::GetFlag(FLAGS_epochs);
  options.max_steps = absl::GetFlag(FLAGS_max_steps);
  options.time_budget = absl::GetFlag(FLAGS_time_budget);
  options.eval_every = absl::GetFlag(FLAGS_eval_every);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.out = absl::GetFlag(FLAGS_out);
  options.metrics_log = absl::GetFlag(FLAGS_metrics_log);
  options.stop_after_steps = absl::GetFlag(FLAGS_stop_after_steps);
  options.evaluate = absl::GetFlag(FLAGS_evaluate);
  if (!options.out.empty()) options.state_dir = options.out + ".state";
  if (options.metrics_log.empty() && !options.out.empty())
    options.metrics_log = options.out + ".metrics.jsonl";
  const bool leader = options.data_parallel == nullptr || options.data_parallel->rank() == 0;
  options.progress = leader;

  if (options.out.empty() && leader) {
    std::fprintf(stderr, "recur-train: no --out given: the trained model will not be saved\n");
  }

  auto result = recur::Train(*config, *corpus, options);
  if (!result.ok()) return recur::Fail(result.status());
  if (!leader) return 0;
  std::printf("trained %lld steps in %.1f s (%.0f tokens/s)\n",
              static_cast<long long>(result->steps), result->seconds, result->tokens_per_second);
  if (options.evaluate)
    std::printf("best validation: %s   test: %s\n",
                recur::DescribeLoss(result->best_valid_loss, corpus->byte_level).c_str(),
                recur::DescribeLoss(result->test_loss, corpus->byte_level).c_str());
  if (!options.out.empty()) {
    std::printf("checkpoint: %s (resumable state: %s)\n", options.out.c_str(),
                options.state_dir.c_str());
  }
  return 0;
}
