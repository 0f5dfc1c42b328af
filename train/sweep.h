#ifndef RECUR_TRAIN_SWEEP_H_
#define RECUR_TRAIN_SWEEP_H_

// Experiment sweeps: a JSON file names a base set of recur-train flags and a grid of flag values;
// every combination becomes one run. Results are collected from each run's metrics log into CSV
// tables and gnuplot plots. See experiments/README.md for the file format.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace recur {

struct SweepAxis {
  std::string flag;
  std::vector<std::string> values;  // as they go on the command line
  bool numeric = true;
  // Flags set in step with this axis: with[flag][i] goes with values[i].
  std::map<std::string, std::vector<std::string>> with;
};

struct SweepRun {
  std::vector<std::string> values;           // one per axis
  std::map<std::string, std::string> flags;  // the full recur-train flag set
  std::string id;                            // "batch_size=16,attention=linear"
  bool excluded = false;                     // matched an "exclude" rule: not run
};

struct Sweep {
  std::string name;
  std::string description;
  std::vector<SweepAxis> axes;
  std::vector<SweepRun> runs;
};

// Parses a sweep file. `full` applies its "full" overrides (full size, e.g. on a GPU); `variables`
// replaces ${NAME} in string values (e.g. DATASETS).
absl::StatusOr<Sweep> ParseSweep(const std::string& json, bool full,
                                 const std::map<std::string, std::string>& variables);

// One run's final figures, read from its metrics log (the line with "final": true).
struct RunSummary {
  bool done = false;
  bool byte_level = false;
  double best_valid = 0, test = 0;  // perplexity or bits per character
  double tokens_per_second = 0, seconds = 0;
  double peak_memory_mb = 0;  // resident set: includes libraries and data
  double peak_heap_mb = 0;    // live heap after the forward pass: the training memory itself
  int64_t steps = 0, parameters = 0;
  // (epoch progress, validation metric) at each evaluation.
  std::vector<std::pair<double, double>> curve;
};
RunSummary ReadRunSummary(const std::string& metrics_log);

// The resumable state an interrupted run left in `run_dir` (the trainer saves `model.state` beside
// its checkpoint `model` at each evaluation), or "" when it left none and must start again.
std::string InterruptedRunState(const std::string& run_dir);

// Writes results.csv, curves.csv and plot.gp into `directory`; returns the gnuplot script path.
absl::StatusOr<std::string> WriteSweepReport(const Sweep& sweep,
                                             const std::vector<RunSummary>& runs,
                                             const std::string& directory);

}  // namespace recur

#endif  // RECUR_TRAIN_SWEEP_H_
