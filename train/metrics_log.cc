#include "train/metrics_log.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "train/evaluation.h"

namespace recur {

namespace {

// Keeps the evaluation lines of `path` up to `step`, replacing the file atomically.
absl::Status TrimToStep(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();  // nothing logged yet
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    const auto final_it = j.find("final"), step_it = j.find("step");
    const bool summary = final_it != j.end() && !(final_it->is_boolean() && !final_it->get<bool>());
    if (summary || step_it == j.end() || !step_it->is_number_integer()) continue;
    if (step_it->get<int64_t>() <= step) kept += line + "\n";
  }
  in.close();
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << kept;
    if (!out.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", temporary));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot replace ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path,
                                                             int64_t resume_step) {
  if (resume_step >= 0) {
    RECUR_RETURN_IF_ERROR(TrimToStep(path, resume_step));
  }
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path, std::ios::app);
  if (!out) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  return std::unique_ptr<MetricsLog>(new MetricsLog(std::move(out)));
}

void MetricsLog::AddLoss(nlohmann::ordered_json& line, absl::string_view key, double nats,
                         bool byte_level, absl::string_view suffix) {
  line[absl::StrCat(key, "_loss", suffix)] = nats;
  line[absl::StrCat(key, "_", LossFigureName(byte_level), suffix)] = LossFigure(nats, byte_level);
}

void MetricsLog::Write(const nlohmann::ordered_json& line) {
  out_ << line.dump() << "\n" << std::flush;
}

}  // namespace recur
