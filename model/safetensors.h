#ifndef RECUR_MODEL_SAFETENSORS_H_
#define RECUR_MODEL_SAFETENSORS_H_

// The safetensors format (https://github.com/huggingface/safetensors), written and read here:
// an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to its dtype,
// shape and [begin, end) byte offsets into the data that follows, then the raw little-endian data.
// Files written here load with Python's `safetensors.torch.load_file`.

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // on the CPU
  std::map<std::string, std::string> metadata;   // the optional "__metadata__" strings
};

// Writes `tensors` (any device; copied to the CPU) to `path`, in the order given.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// The same bytes WriteSafetensors writes, in memory (e.g. a session's state sent over the wire).
absl::StatusOr<std::string> EncodeSafetensors(
    const NamedTensors& tensors, const std::map<std::string, std::string>& metadata = {});

// Reads and validates a whole file: header length within the file, JSON well-formed, known
// dtypes, offsets that match the shapes, stay inside the data and do not overlap.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

// Validates and reads safetensors bytes held in memory; `source` names them in errors.
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes, absl::string_view source);

}  // namespace recur

#endif  // RECUR_MODEL_SAFETENSORS_H_
