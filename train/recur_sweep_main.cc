// recur-sweep: runs an experiment family (a sweep file under experiments/) as a series of
// recur-train runs, then tabulates and plots the results.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/files.h"
#include "base/program.h"
#include "train/evaluation.h"
#include "train/sweep.h"

ABSL_FLAG(std::string, sweep, "", "Sweep file (JSON), e.g. experiments/ptb_batch_size.json");
ABSL_FLAG(std::string, out, "runs/sweeps", "Results go to <out>/<sweep name>/");
ABSL_FLAG(bool, full, false, "Apply the sweep's 'full' settings (full size, e.g. on a GPU)");
ABSL_FLAG(std::string, datasets, "../shared/datasets", "Replaces ${DATASETS} in the sweep file");
ABSL_FLAG(std::string, recur_train, "",
          "The recur-train binary (default: the one beside recur-sweep)");
ABSL_FLAG(bool, dry_run, false, "Print the commands without running them");
ABSL_FLAG(bool, plot, true, "Render the PNG plots with gnuplot");

namespace fs = std::filesystem;

namespace {

// Runs argv with stdout and stderr to `log`; returns the exit status (or -1 if it could not start).
int RunLogged(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (std::freopen(log.c_str(), "w", stdout) == nullptr) _exit(127);
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string SelfDirectory() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

// Runs one training run to its end, or keeps it when its metrics log says it finished earlier;
// an interrupted run goes on from its last evaluation, one that saved nothing starts again.
// Prints what happened after the run's name. `failed` is set when the run did not finish.
recur::RunSummary RunOrKeep(std::vector<std::string> args, const fs::path& dir,
                            const std::string& metrics, bool* failed) {
  auto summary = recur::ReadRunSummary(metrics);
  if (summary.done) {
    std::printf(" (done earlier, kept)");
    return summary;
  }
  std::error_code ec;
  const std::string state = recur::InterruptedRunState(dir.string());
  if (state.empty()) {
    fs::remove(metrics, ec);
  } else {
    args.push_back("--resume=" + state);
    std::printf(": resuming the interrupted run from %s", state.c_str());
  }
  std::fflush(stdout);
  fs::create_directories(dir, ec);
  const auto start = std::chrono::steady_clock::now();
  const int status = RunLogged(args, (dir / "train.log").string());
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
  summary = recur::ReadRunSummary(metrics);
  *failed = status != 0 || !summary.done;
  if (*failed) {
    std::printf(": FAILED (exit %d, see %s)\n", status, (dir / "train.log").c_str());
  } else {
    std::printf(" (%.1f min)", minutes);
  }
  return summary;
}

// ": valid ppl 123.4, test ppl 120.1, 2000 tokens/s, peak heap 300 MiB".
void PrintSummary(const recur::RunSummary& summary) {
  const char* metric = recur::LossFigureName(summary.byte_level);
  if (summary.best_valid > 0) {
    std::printf(": valid %s %.3f, test %s %.3f,", metric, summary.best_valid, metric, summary.test);
  } else {
    std::printf(":");
  }
  std::printf(" %.0f tokens/s, peak heap %.0f MiB\n", summary.tokens_per_second,
              summary.peak_heap_mb);
}

// Renders the report's plots with gnuplot (a missing gnuplot leaves the tables, with a note).
void Plot(const fs::path& root) {
  std::fflush(stdout);
  const std::string command = absl::StrCat("cd '", root.string(), "' && gnuplot plot.gp");
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr,
                 "recur-sweep: gnuplot failed; the tables are written (install gnuplot-nox)\n");
  } else {
    std::printf("plots: %s/{curves,final,throughput,memory}.png\n", root.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  recur::InitProgram(argc, argv,
                     "Runs an experiment sweep: every combination of the grid's flag values as a "
                     "recur-train run, then results.csv, curves.csv and PNG plots.\n"
                     "Example: recur-sweep --sweep experiments/ptb_batch_size.json");
  const std::string sweep_path = absl::GetFlag(FLAGS_sweep);
  if (sweep_path.empty()) return recur::Fail("--sweep is required");
  auto text = recur::ReadFileContents(sweep_path);
  if (!text.ok()) return recur::Fail(text.status());
  auto sweep = recur::ParseSweep(*text, absl::GetFlag(FLAGS_full),
                                 {{"DATASETS", absl::GetFlag(FLAGS_datasets)}});
  if (!sweep.ok()) return recur::Fail(absl::StrCat(sweep_path, ": ", sweep.status().message()));

  std::string trainer = absl::GetFlag(FLAGS_recur_train);
  if (trainer.empty()) trainer = SelfDirectory() + "/recur-train";
  if (!absl::GetFlag(FLAGS_dry_run) && ::access(trainer.c_str(), X_OK) != 0) {
    return recur::Fail(absl::StrCat("cannot run ", trainer, " (set --recur_train)"));
  }
  const fs::path root = fs::path(absl::GetFlag(FLAGS_out)) / sweep->name;
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return recur::Fail(absl::StrCat("cannot create ", root.string(), ": ", ec.message()));

  std::printf("sweep %s: %zu runs -> %s\n", sweep->name.c_str(), sweep->runs.size(), root.c_str());
  std::vector<recur::RunSummary> summaries;
  int failures = 0;
  for (size_t i = 0; i < sweep->runs.size(); ++i) {
    const auto& run = sweep->runs[i];
    const fs::path dir = root / run.id;
    const std::string metrics = (dir / "metrics.jsonl").string();
    std::vector<std::string> args{trainer};
    for (const auto& [flag, value] : run.flags)
      args.push_back(absl::StrCat("--", flag, "=", value));
    args.push_back("--out=" + (dir / "model").string());
    args.push_back("--metrics_log=" + metrics);
    std::printf("[%zu/%zu] %s", i + 1, sweep->runs.size(), run.id.c_str());
    if (run.excluded) {
      std::printf(": excluded by the sweep file\n");
      summaries.emplace_back();
      continue;
    }
    if (absl::GetFlag(FLAGS_dry_run)) {
      std::printf("\n  %s\n", absl::StrJoin(args, " ").c_str());
      continue;
    }
    bool failed = false;
    summaries.push_back(RunOrKeep(args, dir, metrics, &failed));
    if (failed) {
      ++failures;
      continue;
    }
    PrintSummary(summaries.back());
  }
  if (absl::GetFlag(FLAGS_dry_run)) return 0;

  auto script = recur::WriteSweepReport(*sweep, summaries, root.string());
  if (!script.ok()) return recur::Fail(script.status());
  std::printf("tables: %s/results.csv, %s/curves.csv\n", root.c_str(), root.c_str());
  if (absl::GetFlag(FLAGS_plot)) Plot(root);
  return failures == 0 ? 0 : 1;
}
