// recur-generate: generates text from a checkpoint with the model library directly (no server).

#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/program.h"
#include "base/sampling_defaults.h"
#include "base/torch_runtime.h"
#include "model/checkpoint.h"
#include "model/generation.h"
#include "model/utf8.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint directory written by recur-train");
ABSL_FLAG(std::string, prompt, "", "Text to continue (required)");
ABSL_FLAG(int64_t, max_tokens, 200, "Tokens to generate");
ABSL_FLAG(double, temperature, recur::kCliTemperature, "Sampling temperature (0: greedy)");
ABSL_FLAG(int64_t, top_k, recur::kCliTopK, "Sample from the k most likely tokens (0: all)");
ABSL_FLAG(double, top_p, recur::kCliTopP, "Nucleus sampling mass in (0, 1]");
ABSL_FLAG(double, repetition_penalty, recur::kCliRepetitionPenalty,
          "Penalty > 1 for tokens already seen");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "Sampling seed: the same seed gives the same text (default: random, reported on stderr)");

int main(int argc, char** argv) {
  recur::InitProgram(argc, argv,
                     "Continues a prompt with a trained checkpoint, streaming the text to stdout.\n"
                     "Example: recur-generate --checkpoint runs/demo --prompt 'The '");
  if (auto s = recur::ApplyThreadsFlag(); !s.ok()) return recur::Fail(s);

  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (absl::GetFlag(FLAGS_checkpoint).empty()) return recur::Fail("--checkpoint is required");
  if (prompt.empty()) return recur::Fail("--prompt is required");
  if (!recur::IsValidUtf8(prompt)) return recur::Fail("--prompt is not valid UTF-8");
  auto device = recur::DeviceFlag();
  if (!device.ok()) return recur::Fail(device.status());

  auto checkpoint = recur::LoadCheckpoint(absl::GetFlag(FLAGS_checkpoint), *device);
  if (!checkpoint.ok()) return recur::Fail(checkpoint.status());

  recur::GenerationOptions options;
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.sampling.temperature = absl::GetFlag(FLAGS_temperature);
  options.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  options.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  options.sampling.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  options.sampling.seed = absl::GetFlag(FLAGS_seed).value_or(recur::RandomSeed());
  options.stop_at_document_end = checkpoint->tokenizer.get();
  if (options.max_tokens <= 0) return recur::Fail("--max_tokens must be positive");
  if (auto s = options.sampling.Validate(); !s.ok()) return recur::Fail(s);

  const recur::Tokenizer& tokenizer = *checkpoint->tokenizer;
  auto ids = tokenizer.Encode(prompt);
  if (ids.empty()) return recur::Fail("the prompt encodes to no tokens");

  std::fputs(prompt.c_str(), stdout);
  recur::Utf8StreamDecoder decoder;
  int64_t previous = ids.back();
  recur::Generate(checkpoint->model, ids, options, [&](int64_t id) {
    std::fputs(decoder.Push(tokenizer.Piece(id, previous)).c_str(), stdout);
    std::fflush(stdout);
    previous = id;
    return true;
  });
  std::fputs(decoder.Flush().c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "seed %llu\n", static_cast<unsigned long long>(options.sampling.seed));
  return 0;
}
