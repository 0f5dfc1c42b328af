#include "train/sweep.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "base/files.h"
#include "base/status.h"
#include "nlohmann/json.hpp"
#include "train/evaluation.h"

namespace recur {

namespace {

std::string FlagValue(const nlohmann::json& value,
                      const std::map<std::string, std::string>& variables) {
  if (value.is_string()) {
    std::vector<std::pair<std::string, std::string>> replacements;
    for (const auto& [name, text] : variables) replacements.emplace_back("${" + name + "}", text);
    return absl::StrReplaceAll(value.get<std::string>(), replacements);
  }
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  return absl::StrFormat("%g", value.get<double>());
}

absl::Status ReadFlags(const nlohmann::json& object, const char* section,
                       const std::map<std::string, std::string>& variables,
                       std::map<std::string, std::string>* flags) {
  if (object.is_null()) return absl::OkStatus();
  if (!object.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sweep: '", section, "' must be an object of flags"));
  }
  for (const auto& [flag, value] : object.items()) {
    if (value.is_object() || value.is_array() || value.is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sweep: ", section, ".", flag, " must be a scalar"));
    }
    (*flags)[flag] = FlagValue(value, variables);
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// One grid axis: its flag, its values and the flags that move with it ("with"; "full_values" and
// "full_with" at full size).
absl::StatusOr<SweepAxis> ParseAxis(const nlohmann::json& axis_json, bool full,
                                    const std::map<std::string, std::string>& variables) {
  SweepAxis axis;
  if (!axis_json.is_object() || !axis_json.contains("flag") || !axis_json["flag"].is_string() ||
      !axis_json.contains("values") || !axis_json["values"].is_array() ||
      axis_json["values"].empty()) {
    return absl::InvalidArgumentError(
        "sweep: each grid entry needs a 'flag' and a non-empty 'values' array");
  }
  axis.flag = axis_json["flag"].get<std::string>();
  const char* values_key = full && axis_json.contains("full_values") ? "full_values" : "values";
  for (const auto& v : axis_json[values_key]) {
    axis.numeric = axis.numeric && v.is_number();
    axis.values.push_back(FlagValue(v, variables));
  }
  const char* with_key = full && axis_json.contains("full_with") ? "full_with" : "with";
  const nlohmann::json with = axis_json.value(with_key, nlohmann::json::object());
  for (const auto& [flag, list] : with.items()) {
    if (!list.is_array() || list.size() != axis.values.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sweep: 'with' list for ", flag, " must have one value per ", axis.flag, " value"));
    }
    for (const auto& v : list) axis.with[flag].push_back(FlagValue(v, variables));
  }
  return axis;
}

// Every combination of the axes' values, first axis outermost, each with the base flags; those
// matching an `excluded` rule are marked so.
std::vector<SweepRun> Combinations(
    const std::vector<SweepAxis>& axes, const std::map<std::string, std::string>& base,
    const std::vector<std::map<std::string, std::string>>& excluded) {
  std::vector<SweepRun> runs;
  std::vector<size_t> index(axes.size(), 0);
  auto matches = [&](const std::string& flag, const std::string& value) {
    for (size_t a = 0; a < axes.size(); ++a) {
      if (axes[a].flag == flag) return axes[a].values[index[a]] == value;
    }
    return false;
  };
  while (true) {
    SweepRun run;
    run.excluded = std::any_of(excluded.begin(), excluded.end(), [&](const auto& rule) {
      return std::all_of(rule.begin(), rule.end(),
                         [&](const auto& flag) { return matches(flag.first, flag.second); });
    });
    run.flags = base;
    std::vector<std::string> parts;
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& value = axes[a].values[index[a]];
      run.values.push_back(value);
      run.flags[axes[a].flag] = value;
      for (const auto& [flag, values] : axes[a].with) run.flags[flag] = values[index[a]];
      parts.push_back(absl::StrCat(axes[a].flag, "=", value));
    }
    run.id = absl::StrJoin(parts, ",");
    runs.push_back(std::move(run));
    size_t a = axes.size();
    while (a > 0 && ++index[a - 1] == axes[a - 1].values.size()) index[--a] = 0;
    if (a == 0) break;
  }
  return runs;
}

}  // namespace

absl::StatusOr<Sweep> ParseSweep(const std::string& text, bool full,
                                 const std::map<std::string, std::string>& variables) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("sweep file is not a JSON object");
  }
  Sweep sweep;
  sweep.name = json.value("name", "");
  sweep.description = json.value("description", "");
  if (sweep.name.empty() || sweep.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError("sweep: 'name' must be a non-empty name without '/'");
  }
  std::map<std::string, std::string> base;
  RECUR_RETURN_IF_ERROR(ReadFlags(json.value("base", nlohmann::json()), "base", variables, &base));
  if (full) {
    RECUR_RETURN_IF_ERROR(
        ReadFlags(json.value("full", nlohmann::json()), "full", variables, &base));
  }
  const auto grid = json.value("grid", nlohmann::json());
  if (!grid.is_array() || grid.empty()) {
    return absl::InvalidArgumentError("sweep: 'grid' must be a non-empty array of {flag, values}");
  }
  for (const auto& axis_json : grid) {
    RECUR_ASSIGN_OR_RETURN(SweepAxis axis, ParseAxis(axis_json, full, variables));
    sweep.axes.push_back(std::move(axis));
  }
  // Combinations to leave out, e.g. softmax attention at a length that would not fit in memory.
  std::vector<std::map<std::string, std::string>> excluded;
  for (const auto& rule : json.value("exclude", nlohmann::json::array())) {
    std::map<std::string, std::string> flags;
    RECUR_RETURN_IF_ERROR(ReadFlags(rule, "exclude", variables, &flags));
    excluded.push_back(std::move(flags));
  }
  sweep.runs = Combinations(sweep.axes, base, excluded);
  return sweep;
}

RunSummary ReadRunSummary(const std::string& metrics_log) {
  RunSummary summary;
  std::ifstream in(metrics_log);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) continue;
    summary.byte_level = j.value("byte_level", j.contains("valid_bpc") || j.contains("test_bpc"));
    const char* metric = summary.byte_level ? "valid_bpc" : "valid_ppl";
    if (j.value("final", false)) {
      summary.done = true;
      summary.best_valid = j.value(summary.byte_level ? "best_valid_bpc" : "best_valid_ppl", 0.0);
      summary.test = j.value(summary.byte_level ? "test_bpc" : "test_ppl", 0.0);
      summary.tokens_per_second = j.value("tokens_per_second", 0.0);
      summary.peak_memory_mb = j.value("peak_memory_bytes", 0.0) / (1 << 20);
      summary.peak_heap_mb = j.value("peak_heap_bytes", 0.0) / (1 << 20);
      summary.seconds = j.value("elapsed_seconds", 0.0);
      summary.steps = j.value("steps", int64_t{0});
      summary.parameters = j.value("parameters", int64_t{0});
    } else if (j.contains(metric)) {
      summary.curve.emplace_back(j.value("epoch_progress", 0.0), j.value(metric, 0.0));
    }
  }
  return summary;
}

std::string InterruptedRunState(const std::string& run_dir) {
  const auto state = std::filesystem::path(run_dir) / "model.state";
  std::error_code ec;
  return std::filesystem::is_regular_file(state / "trainer.json", ec) ? state.string() : "";
}

namespace {

// results.csv (a run's final figures) and curves.csv (its validation figure at each evaluation).
absl::Status WriteTables(const Sweep& sweep, const std::vector<RunSummary>& runs,
                         const std::string& directory, const std::string& metric) {
  std::vector<std::string> flag_names;
  for (const auto& axis : sweep.axes) flag_names.push_back(axis.flag);
  std::ostringstream results, curves;
  results << absl::StrJoin(flag_names, ",") << ",steps,best_valid_" << metric << ",test_" << metric
          << ",tokens_per_second,peak_memory_mb,peak_heap_mb,seconds,parameters\n";
  curves << absl::StrJoin(flag_names, ",") << ",epoch,valid_" << metric << "\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    if (!r.done) continue;
    const std::string key = absl::StrJoin(sweep.runs[i].values, ",");
    // Runs without evaluation (throughput measurements) leave the loss columns empty.
    const std::string losses =
        r.best_valid > 0 ? absl::StrFormat("%.4f,%.4f", r.best_valid, r.test) : std::string(",");
    results << key
            << absl::StrFormat(",%d,%s,%.1f,%.1f,%.1f,%.1f,%d\n", r.steps, losses,
                               r.tokens_per_second, r.peak_memory_mb, r.peak_heap_mb, r.seconds,
                               r.parameters);
    for (const auto& [epoch, value] : r.curve) {
      curves << key << absl::StrFormat(",%.4f,%.4f\n", epoch, value);
    }
  }
  RECUR_RETURN_IF_ERROR(WriteFileContents(directory + "/results.csv", results.str()));
  return WriteFileContents(directory + "/curves.csv", curves.str());
}

// What the gnuplot script plots: the runs' curves (one data block each) and the series' finals
// (the runs that share every axis value but the first, x being the first axis).
struct PlotData {
  std::vector<std::string> curve_titles;
  std::vector<std::string> series_titles;
};

// Writes curves.dat and final.dat.
absl::StatusOr<PlotData> WritePlotData(const Sweep& sweep, const std::vector<RunSummary>& runs,
                                       const std::string& directory) {
  PlotData data;
  std::ostringstream curve_data, final_data;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!runs[i].done || runs[i].curve.empty()) continue;
    data.curve_titles.push_back(sweep.runs[i].id);
    for (const auto& [epoch, value] : runs[i].curve) curve_data << epoch << " " << value << "\n";
    curve_data << "\n\n";
  }
  const SweepAxis& x_axis = sweep.axes.front();
  const size_t series_count = sweep.runs.size() / x_axis.values.size();
  for (size_t s = 0; s < series_count; ++s) {
    std::vector<std::string> parts;
    for (size_t a = 1; a < sweep.axes.size(); ++a) {
      parts.push_back(absl::StrCat(sweep.axes[a].flag, "=", sweep.runs[s].values[a]));
    }
    data.series_titles.push_back(parts.empty() ? sweep.name : absl::StrJoin(parts, ","));
    for (size_t xi = 0; xi < x_axis.values.size(); ++xi) {
      const size_t i = xi * series_count + s;  // first axis is the outermost loop
      if (!runs[i].done) continue;
      final_data << xi << " " << x_axis.values[xi] << " " << runs[i].best_valid << " "
                 << runs[i].test << " " << runs[i].tokens_per_second << " "
                 << runs[i].peak_memory_mb << " " << runs[i].peak_heap_mb << "\n";
    }
    final_data << "\n\n";
  }
  RECUR_RETURN_IF_ERROR(WriteFileContents(directory + "/curves.dat", curve_data.str()));
  RECUR_RETURN_IF_ERROR(WriteFileContents(directory + "/final.dat", final_data.str()));
  return data;
}

// Numeric axes spanning a wide range read best on a log scale.
bool LogScale(const SweepAxis& axis) {
  if (!axis.numeric) return false;
  double lo = 1e300, hi = 0;
  for (const auto& v : axis.values) {
    lo = std::min(lo, std::stod(v));
    hi = std::max(hi, std::stod(v));
  }
  return lo > 0 && hi / lo >= 8;
}

// The gnuplot script drawing curves.png, final.png, throughput.png and memory.png.
std::string PlotScript(const Sweep& sweep, const std::vector<RunSummary>& runs,
                       const PlotData& data, const std::string& metric, bool byte_level) {
  const SweepAxis& x_axis = sweep.axes.front();
  auto series_plot = [&](int column) {
    const std::string using_spec =
        x_axis.numeric ? absl::StrCat("2:", column) : absl::StrCat("1:", column, ":xtic(2)");
    std::vector<std::string> parts;
    for (size_t s = 0; s < data.series_titles.size(); ++s) {
      parts.push_back(absl::StrFormat("'final.dat' index %d using %s with linespoints title '%s'",
                                      s, using_spec, data.series_titles[s]));
    }
    return absl::StrJoin(parts, ", \\\n  ");
  };
  std::ostringstream plot;
  plot << "# gnuplot script written by recur-sweep for '" << sweep.name << "'\n"
       << "set terminal pngcairo size 900,560 noenhanced\n"
       << "set datafile separator whitespace\nset grid\nset key outside right\n";
  if (!data.curve_titles.empty()) {
    plot << "set output 'curves.png'\nset title '" << sweep.name << ": validation " << metric
         << " during training'\n"
         << "set xlabel 'epoch'\nset ylabel 'validation " << metric << "'\n"
         << (byte_level ? "" : "set logscale y\n") << "plot ";
    std::vector<std::string> parts;
    for (size_t i = 0; i < data.curve_titles.size(); ++i) {
      parts.push_back(absl::StrFormat("'curves.dat' index %d using 1:2 with linespoints title '%s'",
                                      i, data.curve_titles[i]));
    }
    plot << absl::StrJoin(parts, ", \\\n  ") << "\nunset logscale y\n";
  }
  const bool evaluated =
      std::any_of(runs.begin(), runs.end(), [](const auto& r) { return r.best_valid > 0; });
  plot << (LogScale(x_axis) ? "set logscale x 2\n" : "") << "set xlabel '" << x_axis.flag << "'\n";
  if (evaluated) {
    plot << "set output 'final.png'\nset title '" << sweep.name << ": best validation " << metric
         << "'\n"
         << "set ylabel 'validation " << metric << "'\nplot " << series_plot(3) << "\n";
  }
  plot << "set output 'throughput.png'\nset title '" << sweep.name << ": training throughput'\n"
       << "set ylabel 'tokens per second'\nplot " << series_plot(5) << "\n"
       << "set output 'memory.png'\nset title '" << sweep.name
       << ": peak training memory (live heap after the forward pass)'\n"
       << "set ylabel 'MiB'\nplot " << series_plot(7) << "\n";
  return plot.str();
}

}  // namespace

absl::StatusOr<std::string> WriteSweepReport(const Sweep& sweep,
                                             const std::vector<RunSummary>& runs,
                                             const std::string& directory) {
  const bool byte_level = !runs.empty() && runs.front().byte_level;
  const std::string metric = LossFigureName(byte_level);
  RECUR_RETURN_IF_ERROR(WriteTables(sweep, runs, directory, metric));
  RECUR_ASSIGN_OR_RETURN(const PlotData data, WritePlotData(sweep, runs, directory));
  const std::string script = directory + "/plot.gp";
  RECUR_RETURN_IF_ERROR(
      WriteFileContents(script, PlotScript(sweep, runs, data, metric, byte_level)));
  return script;
}

}  // namespace recur
