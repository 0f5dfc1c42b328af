#include "model/checkpoint.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/files.h"
#include "base/status.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace fs = std::filesystem;

namespace {

constexpr char kConfigFile[] = "config.json";
constexpr char kTokenizerFile[] = "tokenizer.json";
constexpr char kWeightsFile[] = "model.safetensors";

absl::Status CheckpointError(const fs::path& dir, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("checkpoint ", dir.string(), ": ", what));
}

// The config's parameter count against the values the file holds, before the model is built: a
// config.json that needs far more memory than its weights (num_layers 10^9, say) is refused
// without allocating what it describes. Within twice the file's values the model is built, and the
// tensor-by-tensor comparison names what is missing or unexpected.
absl::Status CheckWeightsFitTheConfig(const fs::path& dir, const ModelConfig& config,
                                      const SafetensorsFile& weights) {
  int64_t values = 0;
  for (const auto& [name, tensor] : weights.tensors) values += tensor.numel();
  const int64_t expected = config.ParameterCount();
  if (expected <= 2 * values) return absl::OkStatus();
  return CheckpointError(
      dir,
      absl::StrCat("config.json describes a model of ",
                   expected == std::numeric_limits<int64_t>::max() ? std::string("more than 9.2e18")
                                                                   : absl::StrCat(expected),
                   " parameters but model.safetensors holds ", values, " values"));
}

}  // namespace

absl::Status WriteCheckpointFiles(const std::filesystem::path& directory,
                                  const TransformerLM& model, const Tokenizer& tokenizer,
                                  const Provenance& provenance) {
  const ModelConfig& config = model->config();
  if (config.vocab_size != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat("model vocab_size ", config.vocab_size,
                                                   " does not match the tokenizer's ",
                                                   tokenizer.vocab_size()));
  }
  nlohmann::ordered_json json;
  json["format"] = kCheckpointFormat;
  json["version"] = kCheckpointVersion;
  json["model"] = nlohmann::ordered_json::parse(config.ToJson());
  json["tokenizer"] = {{"kind", std::string(tokenizer.kind())},
                       {"vocab_size", tokenizer.vocab_size()}};
  nlohmann::ordered_json prov;
  prov["dataset"] = provenance.dataset;
  prov["steps"] = provenance.steps;
  if (std::isfinite(provenance.valid_loss)) prov["valid_loss"] = provenance.valid_loss;
  prov["created"] = provenance.created.empty()
                        ? absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone())
                        : provenance.created;
  prov["parameters"] = model->ParameterCount();
  json["provenance"] = prov;

  NamedTensors tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace_back(item.key(), item.value());
  RECUR_RETURN_IF_ERROR(WriteSafetensors((directory / kWeightsFile).string(), tensors,
                                         {{"format", "pt"}, {"producer", "recur"}}));
  RECUR_RETURN_IF_ERROR(WriteFileContents(directory / kTokenizerFile, tokenizer.ToJson() + "\n"));
  return WriteFileContents(directory / kConfigFile, json.dump(2) + "\n");
}

absl::Status SaveCheckpoint(const std::string& directory, const TransformerLM& model,
                            const Tokenizer& tokenizer, const Provenance& provenance) {
  return WriteDirectoryAtomically(directory, [&](const fs::path& temp) {
    return WriteCheckpointFiles(temp, model, tokenizer, provenance);
  });
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& directory,
                                          const torch::Device& device) {
  const fs::path dir(directory);
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory not found: ", directory));
  }
  RECUR_ASSIGN_OR_RETURN(std::string config_text, ReadFileContents(dir / kConfigFile));
  auto json = nlohmann::json::parse(config_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object())
    return CheckpointError(dir, "config.json is not a JSON object");
  if (json.value("format", "") != kCheckpointFormat) {
    return CheckpointError(dir,
                           absl::StrCat("config.json format is not '", kCheckpointFormat, "'"));
  }
  if (!json.contains("version") || json["version"] != kCheckpointVersion) {
    return CheckpointError(dir,
                           absl::StrCat("unsupported checkpoint version ",
                                        json.value("version", nlohmann::json()).dump(),
                                        " (this build reads version ", kCheckpointVersion, ")"));
  }
  if (!json.contains("model")) return CheckpointError(dir, "config.json has no 'model' section");
  auto config = ModelConfig::FromJson(json["model"].dump());
  if (!config.ok())
    return CheckpointError(dir, absl::StrCat("config.json: ", config.status().message()));

  RECUR_ASSIGN_OR_RETURN(std::string tokenizer_text, ReadFileContents(dir / kTokenizerFile));
  auto tokenizer = TokenizerFromJson(tokenizer_text);
  if (!tokenizer.ok()) return CheckpointError(dir, tokenizer.status().message());
  const std::string declared_kind =
      json.contains("tokenizer") ? json["tokenizer"].value("kind", "") : "";
  if (declared_kind != (*tokenizer)->kind()) {
    return CheckpointError(dir,
                           absl::StrCat("config.json names tokenizer kind '", declared_kind,
                                        "' but tokenizer.json holds '", (*tokenizer)->kind(), "'"));
  }
  if ((*tokenizer)->vocab_size() != config->vocab_size) {
    return CheckpointError(
        dir, absl::StrCat("model vocab_size ", config->vocab_size, " but the tokenizer has ",
                          (*tokenizer)->vocab_size(), " tokens"));
  }

  auto weights = ReadSafetensors((dir / kWeightsFile).string());
  if (!weights.ok()) return Annotate(weights.status(), absl::StrCat("checkpoint ", dir.string()));
  RECUR_RETURN_IF_ERROR(CheckWeightsFitTheConfig(dir, *config, *weights));
  Checkpoint checkpoint;
  checkpoint.config = *config;
  checkpoint.tokenizer = std::move(*tokenizer);
  try {
    checkpoint.model = TransformerLM(*config);
  } catch (const c10::Error& e) {
    return CheckpointError(dir, e.what_without_backtrace());
  }
  {
    torch::NoGradGuard no_grad;
    auto params = checkpoint.model->named_parameters();
    for (const auto& item : params) {
      auto it = weights->tensors.find(item.key());
      if (it == weights->tensors.end()) {
        return CheckpointError(dir,
                               absl::StrCat("model.safetensors lacks tensor '", item.key(), "'"));
      }
      const auto& t = it->second;
      if (t.sizes() != item.value().sizes()) {
        std::ostringstream msg;
        msg << "tensor '" << item.key() << "' has shape " << t.sizes() << ", expected "
            << item.value().sizes();
        return CheckpointError(dir, msg.str());
      }
      if (t.scalar_type() != item.value().scalar_type()) {
        return CheckpointError(dir, absl::StrCat("tensor '", item.key(), "' has dtype ",
                                                 c10::toString(t.scalar_type()), ", expected ",
                                                 c10::toString(item.value().scalar_type())));
      }
      if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) {
        return CheckpointError(dir,
                               absl::StrCat("tensor '", item.key(), "' holds non-finite values"));
      }
      item.value().copy_(t);
    }
    for (const auto& [name, t] : weights->tensors) {
      if (!params.contains(name)) {
        return CheckpointError(
            dir, absl::StrCat("model.safetensors has unexpected tensor '", Excerpt(name), "'"));
      }
    }
  }
  checkpoint.model->to(device);
  checkpoint.model->eval();

  if (json.contains("provenance") && json["provenance"].is_object()) {
    const auto& p = json["provenance"];
    try {
      checkpoint.provenance.dataset = p.value("dataset", "");
      checkpoint.provenance.steps = p.value("steps", int64_t{0});
      checkpoint.provenance.valid_loss =
          p.value("valid_loss", std::numeric_limits<double>::quiet_NaN());
      checkpoint.provenance.created = p.value("created", "");
    } catch (const nlohmann::json::exception&) {
      return CheckpointError(dir, "config.json: a provenance field has the wrong type");
    }
  }
  return checkpoint;
}

}  // namespace recur
