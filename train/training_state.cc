#include "train/training_state.h"

#include <torch/torch.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/files.h"
#include "base/status.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace fs = std::filesystem;

namespace {

constexpr char kOptimizerFile[] = "optimizer.safetensors";
constexpr char kTrainerFile[] = "trainer.json";
constexpr char kFormat[] = "recur-training-state";
// 2: the optimizer's tensors are named by parameter (exp_avg.<name>); 1 numbered them in
// parameters() order (exp_avg.<i>), which is still read.
constexpr int kVersion = 2;

// The key under which LibTorch's optimizers keep a parameter's state (Optimizer::state()). It is
// LibTorch's own convention, used only to reach that map; the saved file names parameters instead.
std::string OptimizerStateKey(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

absl::Status StateError(const std::string& dir, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("training state ", dir, ": ", what));
}

// One tensor per model parameter saved under `prefix` (the best or the averaged weights): empty
// when the state holds none, an error when it holds some but not all, or one of the wrong shape.
absl::StatusOr<std::vector<torch::Tensor>> ReadParameterSet(
    const std::string& directory, const std::map<std::string, torch::Tensor>& saved,
    const torch::OrderedDict<std::string, torch::Tensor>& named, const std::string& prefix,
    absl::string_view what) {
  std::vector<torch::Tensor> set;
  for (size_t i = 0; i < named.size(); ++i) {
    auto found = saved.find(prefix + named[i].key());
    if (found == saved.end()) {
      if (i == 0) return set;
      return StateError(directory, absl::StrCat(what, " for '", named[i].key(), "' are missing"));
    }
    if (found->second.sizes() != named[i].value().sizes()) {
      return StateError(directory,
                        absl::StrCat(what, " for '", named[i].key(), "' have the wrong shape"));
    }
    set.push_back(found->second.to(named[i].value().options()));
  }
  return set;
}

// The generators dropout draws from, by their names in the state: the CPU's, and the GPU's when
// the model trains there.
std::vector<std::pair<std::string, at::Generator>> DropoutGenerators(
    const std::vector<torch::Tensor>& params) {
  std::vector<std::pair<std::string, at::Generator>> generators;
  generators.emplace_back("rng.cpu", at::globalContext().defaultGenerator(c10::Device(c10::kCPU)));
  if (!params.empty() && params[0].is_cuda()) {
    generators.emplace_back("rng.cuda", at::globalContext().defaultGenerator(params[0].device()));
  }
  return generators;
}

}  // namespace

absl::Status SaveTrainingState(const std::string& directory, const TransformerLM& model,
                               const Tokenizer& tokenizer, torch::optim::AdamW& optimizer,
                               const TrainingState& state) {
  NamedTensors tensors;
  const auto params = model->parameters();
  const auto named = model->named_parameters();
  for (const auto& param : named) {
    auto it = optimizer.state().find(OptimizerStateKey(param.value()));
    if (it == optimizer.state().end()) continue;  // no step taken yet
    const auto& adam = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    tensors.emplace_back(absl::StrCat("exp_avg.", param.key()), adam.exp_avg());
    tensors.emplace_back(absl::StrCat("exp_avg_sq.", param.key()), adam.exp_avg_sq());
    tensors.emplace_back(absl::StrCat("step.", param.key()),
                         torch::tensor(adam.step(), torch::kInt64));
  }
  for (size_t i = 0; i < state.best_params.size() && i < named.size(); ++i) {
    tensors.emplace_back(absl::StrCat("best.", named[i].key()), state.best_params[i]);
  }
  for (size_t i = 0; i < state.ema_params.size() && i < named.size(); ++i) {
    tensors.emplace_back(absl::StrCat("ema.", named[i].key()), state.ema_params[i]);
  }
  for (auto& [name, generator] : DropoutGenerators(params)) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    tensors.emplace_back(name, generator.get_state());
  }
  if (state.carried.positions.defined()) {
    for (size_t i = 0; i < state.carried.linear.size(); ++i) {
      tensors.emplace_back(absl::StrCat("carried.s.", i), state.carried.linear[i].s);
      tensors.emplace_back(absl::StrCat("carried.z.", i), state.carried.linear[i].z);
    }
    for (size_t i = 0; i < state.carried.conv.size(); ++i) {
      tensors.emplace_back(absl::StrCat("carried.conv.", i), state.carried.conv[i]);
    }
    tensors.emplace_back("carried.positions", state.carried.positions);
  }

  const TrainingProgress& p = state.progress;
  nlohmann::ordered_json json;
  json["format"] = kFormat;
  json["version"] = kVersion;
  json["step"] = p.step;
  json["tokens"] = p.tokens;
  json["elapsed_seconds"] = p.elapsed_seconds;
  json["recent_loss"] = p.recent_loss;
  if (std::isfinite(p.best_valid_loss)) json["best_valid_loss"] = p.best_valid_loss;
  json["dataset"] = p.dataset;
  json["train_tokens"] = p.train_tokens;
  json["options"] =
      nlohmann::ordered_json::parse(state.options_json.empty() ? "{}" : state.options_json);

  Provenance provenance;
  provenance.dataset = p.dataset;
  provenance.steps = p.step;
  return WriteDirectoryAtomically(directory, [&](const fs::path& temp) -> absl::Status {
    RECUR_RETURN_IF_ERROR(WriteCheckpointFiles(temp, model, tokenizer, provenance));
    RECUR_RETURN_IF_ERROR(WriteSafetensors((temp / kOptimizerFile).string(), tensors));
    return WriteFileContents(temp / kTrainerFile, json.dump(2) + "\n");
  });
}

absl::StatusOr<ModelConfig> ReadTrainingStateConfig(const std::string& directory) {
  RECUR_ASSIGN_OR_RETURN(Checkpoint checkpoint, LoadCheckpoint(directory));
  return checkpoint.config;
}

namespace {

// trainer.json: the progress and the options; its format version.
absl::StatusOr<TrainingState> ReadProgress(const std::string& directory, int* version) {
  RECUR_ASSIGN_OR_RETURN(std::string text, ReadFileContents(fs::path(directory) / kTrainerFile));
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || json.value("format", "") != kFormat) {
    return StateError(directory, "trainer.json is not a recur training state");
  }
  *version = json.value("version", 0);
  if (*version != 1 && *version != kVersion) {
    return StateError(directory, absl::StrCat("unsupported version ", *version));
  }
  TrainingState state;
  try {
    TrainingProgress& p = state.progress;
    p.step = json.at("step").get<int64_t>();
    p.tokens = json.at("tokens").get<int64_t>();
    p.elapsed_seconds = json.at("elapsed_seconds").get<double>();
    p.recent_loss = json.at("recent_loss").get<double>();
    p.best_valid_loss = json.value("best_valid_loss", std::numeric_limits<double>::infinity());
    p.dataset = json.at("dataset").get<std::string>();
    p.train_tokens = json.at("train_tokens").get<int64_t>();
    state.options_json = json.value("options", nlohmann::json::object()).dump();
  } catch (const nlohmann::json::exception& e) {
    return StateError(directory, absl::StrCat("trainer.json: ", e.what()));
  }
  return state;
}

// AdamW's moments and step counts into `optimizer`, for the parameters that have them.
absl::Status RestoreOptimizer(const std::string& directory, int version,
                              const std::map<std::string, torch::Tensor>& saved,
                              TransformerLM& model, torch::optim::AdamW& optimizer) {
  const auto named = model->named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const torch::Tensor& param = named[i].value();
    const std::string key = version == 1 ? std::to_string(i) : named[i].key();
    auto avg = saved.find("exp_avg." + key), sq = saved.find("exp_avg_sq." + key),
         step = saved.find("step." + key);
    if (avg == saved.end() && sq == saved.end() && step == saved.end()) continue;
    if (avg == saved.end() || sq == saved.end() || step == saved.end()) {
      return StateError(directory,
                        absl::StrCat("optimizer state for '", named[i].key(), "' is incomplete"));
    }
    if (avg->second.sizes() != param.sizes() || sq->second.sizes() != param.sizes() ||
        step->second.scalar_type() != torch::kInt64 || step->second.numel() != 1) {
      return StateError(directory, absl::StrCat("optimizer state for '", named[i].key(),
                                                "' has the wrong shape"));
    }
    auto adam = std::make_unique<torch::optim::AdamWParamState>();
    adam->step(step->second.item<int64_t>());
    adam->exp_avg(avg->second.to(param.options()));
    adam->exp_avg_sq(sq->second.to(param.options()));
    optimizer.state()[OptimizerStateKey(param)] = std::move(adam);
  }
  return absl::OkStatus();
}

// The dropout generators' states, so a resumed run draws the masks an unbroken one would.
absl::Status RestoreGenerators(const std::string& directory,
                               const std::map<std::string, torch::Tensor>& saved,
                               const std::vector<torch::Tensor>& params) {
  for (auto& [name, generator] : DropoutGenerators(params)) {
    auto rng = saved.find(name);
    if (rng == saved.end() || rng->second.scalar_type() != torch::kUInt8) {
      return StateError(
          directory, absl::StrCat("the random generator state ", name, " is missing",
                                  name == "rng.cuda" ? " (was the run started on the CPU?)" : ""));
    }
    try {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng->second);
    } catch (const c10::Error& e) {
      return StateError(directory,
                        absl::StrCat("bad random generator state: ", e.what_without_backtrace()));
    }
  }
  return absl::OkStatus();
}

// The rows carried across windows (--carry_context), if the state holds them.
absl::StatusOr<ModelState> ReadCarried(const std::string& directory,
                                       const std::map<std::string, torch::Tensor>& saved,
                                       const ModelConfig& config, const torch::Device& device) {
  ModelState carried;
  auto positions = saved.find("carried.positions");
  if (positions == saved.end()) return carried;
  carried.positions = positions->second.to(device);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    auto s = saved.find(absl::StrCat("carried.s.", i)),
         z = saved.find(absl::StrCat("carried.z.", i));
    if (s == saved.end() || z == saved.end()) {
      return StateError(directory, absl::StrCat("the carried state of layer ", i, " is missing"));
    }
    carried.linear.push_back({s->second.to(device), z->second.to(device)});
    if (config.short_conv > 0) {
      auto conv = saved.find(absl::StrCat("carried.conv.", i));
      if (conv == saved.end()) {
        return StateError(
            directory, absl::StrCat("the carried convolution inputs of layer ", i, " are missing"));
      }
      carried.conv.push_back(conv->second.to(device));
    }
  }
  return carried;
}

}  // namespace

absl::StatusOr<TrainingState> LoadTrainingState(const std::string& directory, TransformerLM& model,
                                                torch::optim::AdamW& optimizer) {
  int version = 0;
  RECUR_ASSIGN_OR_RETURN(TrainingState state, ReadProgress(directory, &version));
  RECUR_ASSIGN_OR_RETURN(Checkpoint current, LoadCheckpoint(directory));
  if (current.config.ToJson() != model->config().ToJson()) {
    return StateError(directory, "its model configuration differs from the one being trained");
  }
  auto optimizer_file = ReadSafetensors((fs::path(directory) / kOptimizerFile).string());
  if (!optimizer_file.ok()) {
    return Annotate(optimizer_file.status(), absl::StrCat("training state ", directory));
  }
  const auto& saved = optimizer_file->tensors;

  torch::NoGradGuard no_grad;
  const auto params = model->parameters();
  const auto current_params = current.model->parameters();
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(current_params[i]);
  RECUR_RETURN_IF_ERROR(RestoreOptimizer(directory, version, saved, model, optimizer));
  const auto named = model->named_parameters();
  RECUR_ASSIGN_OR_RETURN(state.best_params,
                         ReadParameterSet(directory, saved, named, "best.", "best weights"));
  RECUR_ASSIGN_OR_RETURN(state.ema_params,
                         ReadParameterSet(directory, saved, named, "ema.", "averaged weights"));
  RECUR_RETURN_IF_ERROR(RestoreGenerators(directory, saved, params));
  const auto device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
  RECUR_ASSIGN_OR_RETURN(state.carried, ReadCarried(directory, saved, model->config(), device));
  return state;
}

}  // namespace recur
