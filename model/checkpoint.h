#ifndef RECUR_MODEL_CHECKPOINT_H_
#define RECUR_MODEL_CHECKPOINT_H_

// A checkpoint is a directory (docs/checkpoint.md):
//   config.json        format name and version, the architecture, the tokenizer kind, provenance
//   tokenizer.json     the vocabulary
//   model.safetensors  the weights, named as TransformerLM::named_parameters() names them
// Saving is atomic: the files are written to a temporary sibling directory which is then renamed
// into place, so a reader never sees a half-written checkpoint. Loading checks everything and
// fails with a message that names the file and the problem.

#include <torch/types.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"
#include "model/tokenizer.h"
#include "model/transformer.h"

namespace recur {

inline constexpr char kCheckpointFormat[] = "recur-checkpoint";
inline constexpr int kCheckpointVersion = 1;

// Where a checkpoint came from.
struct Provenance {
  std::string dataset;  // e.g. "ptb", or the text file's path
  int64_t steps = 0;    // optimizer steps taken
  double valid_loss = std::numeric_limits<double>::quiet_NaN();  // nats per token; NaN if unknown
  std::string created;  // UTC time, ISO 8601; filled in by SaveCheckpoint when empty
};

struct Checkpoint {
  ModelConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;
  TransformerLM model{nullptr};
  Provenance provenance;
};

absl::Status SaveCheckpoint(const std::string& directory, const TransformerLM& model,
                            const Tokenizer& tokenizer, const Provenance& provenance);

// Writes the three files into an existing directory, non-atomically: for callers that publish a
// directory holding more than a checkpoint (e.g. the trainer's resumable state).
absl::Status WriteCheckpointFiles(const std::filesystem::path& directory,
                                  const TransformerLM& model, const Tokenizer& tokenizer,
                                  const Provenance& provenance);

// Loads onto `device`, in eval mode.
absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& directory,
                                          const torch::Device& device = torch::kCPU);

}  // namespace recur

#endif  // RECUR_MODEL_CHECKPOINT_H_
