#ifndef RECUR_TRAIN_PROGRESS_BAR_H_
#define RECUR_TRAIN_PROGRESS_BAR_H_

#include <cstdio>
#include <string>

namespace recur {

// One self-overwriting status line on a terminal: a bar, the fraction done, the ETA and a caller's
// message. When stderr is not a terminal it prints a plain line every `log_every` updates instead,
// so logs stay readable.
class ProgressBar {
 public:
  explicit ProgressBar(int log_every = 50);
  // fraction in [0, 1]; eta_seconds < 0 means unknown.
  void Update(double fraction, double eta_seconds, const std::string& message);
  // Ends the line so later output starts on a fresh one.
  void Finish();

 private:
  bool tty_;
  int log_every_;
  int updates_ = 0;
  bool dirty_ = false;
};

}  // namespace recur

#endif  // RECUR_TRAIN_PROGRESS_BAR_H_
