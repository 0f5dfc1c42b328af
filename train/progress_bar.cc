#include "train/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace recur {

namespace {
std::string FormatDuration(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "--:--";
  const int s = static_cast<int>(seconds + 0.5);
  return s >= 3600 ? absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                   : absl::StrFormat("%02d:%02d", s / 60, s % 60);
}
}  // namespace

ProgressBar::ProgressBar(int log_every)
    : tty_(::isatty(STDERR_FILENO) == 1), log_every_(log_every) {}

void ProgressBar::Update(double fraction, double eta_seconds, const std::string& message) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  ++updates_;
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    std::fprintf(stderr, "\r\033[K[%s] %3.0f%% ETA %s  %s", bar.c_str(), fraction * 100,
                 FormatDuration(eta_seconds).c_str(), message.c_str());
    dirty_ = true;
  } else if (updates_ % log_every_ == 1 || log_every_ == 1) {
    std::fprintf(stderr, "%3.0f%% ETA %s  %s\n", fraction * 100,
                 FormatDuration(eta_seconds).c_str(), message.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (dirty_) std::fputc('\n', stderr);
  dirty_ = false;
}

}  // namespace recur
