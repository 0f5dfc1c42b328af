#ifndef RECUR_CLIENT_LOAD_GENERATOR_H_
#define RECUR_CLIENT_LOAD_GENERATOR_H_

// Drives a server with concurrent Generate streams and measures what a user sees: time to first
// token, time between tokens, aggregate tokens per second (`recur bench`).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "client/recur_client.h"
#include "recur/v1/recur.pb.h"

namespace recur {

struct LoadOptions {
  std::string server;
  ConnectionOptions connection;
  int concurrency = 8;          // streams open at once
  int requests = 32;            // in all
  v1::GenerateRequest request;  // every stream sends this, with seed + its index
};

struct LoadReport {
  int64_t requests = 0;
  int64_t failed = 0;
  std::string first_error;
  int64_t tokens = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  double ttft_p50 = 0, ttft_p99 = 0;                // seconds
  double inter_token_p50 = 0, inter_token_p99 = 0;  // seconds
};

LoadReport RunLoad(const LoadOptions& options);

// The q-quantile (0..1) of `values` by nearest rank; 0 when empty.
double Quantile(std::vector<double> values, double q);

}  // namespace recur

#endif  // RECUR_CLIENT_LOAD_GENERATOR_H_
