#ifndef RECUR_BASE_SAMPLING_DEFAULTS_H_
#define RECUR_BASE_SAMPLING_DEFAULTS_H_

// The sampling defaults of recur's command-line tools (`recur generate`, `recur chat` and
// recur-generate), defined once so the tools agree. The server's own defaults, for a request that
// leaves a field unset, are the API's (proto/recur/v1/recur.proto: temperature 1, top_p 1).
// A seed left unset is drawn at random and reported, so runs differ unless a seed is given.

#include <cstdint>
#include <random>

namespace recur {

inline constexpr double kCliTemperature = 0.8;
inline constexpr double kCliTopP = 0.95;
inline constexpr int64_t kCliTopK = 0;
inline constexpr double kCliRepetitionPenalty = 1.0;

// A seed for a run that was given none.
inline uint64_t RandomSeed() {
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

}  // namespace recur

#endif  // RECUR_BASE_SAMPLING_DEFAULTS_H_
