#ifndef RECUR_TRAIN_METRICS_LOG_H_
#define RECUR_TRAIN_METRICS_LOG_H_

// The trainer's metrics log: one JSON object per line, an evaluation line at each validation and a
// summary line ("final": true) at the end, which sweeps collect. A resumed run first trims the
// log back to the step it resumes from, so the log reads as if the run had never stopped.

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace recur {

class MetricsLog {
 public:
  // Opens `path` for appending, creating its directory. `resume_step` >= 0: first keeps only the
  // evaluation lines up to that step (dropping later, torn or foreign lines and any summary).
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path,
                                                          int64_t resume_step = -1);

  // Sets `<key>_loss<suffix>` to the loss and `<key>_<bpc|ppl><suffix>` to its figure
  // (LossFigure, train/evaluation.h), e.g.
  // AddLoss(line, "valid", 4.6, false) writes valid_loss and valid_ppl.
  static void AddLoss(nlohmann::ordered_json& line, absl::string_view key, double nats,
                      bool byte_level, absl::string_view suffix = "");

  // Appends `line` and flushes it, so a killed run keeps every line written before.
  void Write(const nlohmann::ordered_json& line);

 private:
  explicit MetricsLog(std::ofstream out) : out_(std::move(out)) {}

  std::ofstream out_;
};

}  // namespace recur

#endif  // RECUR_TRAIN_METRICS_LOG_H_
