// recur-soak: a long mixed load against one running recur-server, to show it neither fails nor
// grows. N workers (default 64), each with its own channel and session, loop over four kinds of
// work: a one-off Generate; a turn on the worker's session; fork the session, a turn on the fork,
// close it; export the session, import it, a turn on the copy, close it. Every --sample, the
// server's resident memory (VmRSS of --server_pid) and the counts so far go to --out (CSV).
// Exits 1 if any call failed.
//
// Example (docs/security.md): recur-server --checkpoint CKPT --max_sessions 256 & \
//   recur-soak --server_pid $! --duration 10m --out soak.csv

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/program.h"
#include "client/recur_client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "recur-server address, host:port");
ABSL_FLAG(int32_t, concurrency, 64, "Workers, each with its own channel and session");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "How long to run");
ABSL_FLAG(absl::Duration, sample, absl::Seconds(5), "Interval between memory samples");
ABSL_FLAG(int32_t, server_pid, 0, "The server's process id, to sample its resident memory");
ABSL_FLAG(int64_t, max_tokens, 16, "Tokens generated per call");
ABSL_FLAG(std::string, out, "soak.csv", "CSV of the samples: seconds, rss_mb, calls, errors");

namespace {

// Resident memory of `pid` in MiB (VmRSS), or -1.
double ResidentMiB(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), " kB");
      double kb = 0;
      if (absl::SimpleAtod(rest, &kb)) return kb / 1024.0;
    }
  }
  return -1;
}

struct Counts {
  std::atomic<int64_t> calls{0}, errors{0}, tokens{0};
  std::mutex mu;
  std::string first_error;

  void Record(const absl::Status& status) {
    ++calls;
    if (status.ok()) return;
    ++errors;
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = status.ToString();
  }
};

recur::v1::GenerateRequest Turn(const std::string& prompt, const std::string& session,
                                uint64_t seed) {
  recur::v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_session_id(session);
  request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  request.mutable_sampling()->set_temperature(1.0);
  request.mutable_sampling()->set_top_p(0.95);
  request.mutable_sampling()->set_seed(seed);
  return request;
}

absl::Status Generate(recur::RecurClient& client, const recur::v1::GenerateRequest& request,
                      Counts& counts) {
  return client.Generate(request, [&](const recur::v1::GenerateResponse& message) {
    counts.tokens += message.token_ids_size();
  });
}

// One worker's loop until `end`.
void Work(int worker, absl::Time end, Counts& counts) {
  recur::RecurClient client(absl::GetFlag(FLAGS_server), absl::Seconds(120));
  auto session = client.CreateSession();
  counts.Record(session.status());
  if (!session.ok()) return;
  const std::string id = session->session_id();
  for (uint64_t i = 0; absl::Now() < end; ++i) {
    const uint64_t seed = worker * 1'000'003ULL + i;
    switch (i % 4) {
      case 0:
        counts.Record(Generate(client, Turn("Once upon a time ", "", seed), counts));
        break;
      case 1:
        counts.Record(Generate(client, Turn(" and then ", id, seed), counts));
        break;
      case 2: {
        auto fork = client.ForkSession(id);
        counts.Record(fork.status());
        if (!fork.ok()) break;
        counts.Record(Generate(client, Turn(" but ", fork->session_id(), seed), counts));
        counts.Record(client.CloseSession(fork->session_id()));
        break;
      }
      case 3: {
        auto bytes = client.ExportSession(id);
        counts.Record(bytes.status());
        if (!bytes.ok()) break;
        auto copy = client.ImportSession(*bytes);
        counts.Record(copy.status());
        if (!copy.ok()) break;
        counts.Record(Generate(client, Turn(" so ", copy->session_id(), seed), counts));
        counts.Record(client.CloseSession(copy->session_id()));
        break;
      }
    }
  }
  counts.Record(client.CloseSession(id));
}

}  // namespace

int main(int argc, char** argv) {
  recur::InitProgram(argc, argv,
                     "Runs a long mixed load (one-off requests, session turns, fork, "
                     "export/import) against a recur-server and samples its memory.\n"
                     "Example: recur-soak --server_pid 1234 --duration 10m --out soak.csv");
  const int pid = absl::GetFlag(FLAGS_server_pid);
  const int workers = absl::GetFlag(FLAGS_concurrency);
  if (workers < 1) return recur::Fail("--concurrency must be >= 1");
  std::ofstream out(absl::GetFlag(FLAGS_out), std::ios::trunc);
  if (!out) return recur::Fail(absl::StrCat("cannot write ", absl::GetFlag(FLAGS_out)));
  out << "seconds,rss_mb,calls,errors,tokens\n";

  Counts counts;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::GetFlag(FLAGS_duration);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) threads.emplace_back(Work, w, end, std::ref(counts));
  for (absl::Time next = start; next <= end; next += absl::GetFlag(FLAGS_sample)) {
    absl::SleepFor(std::max(absl::ZeroDuration(), next - absl::Now()));
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const double rss = pid > 0 ? ResidentMiB(pid) : -1;
    out << absl::StrFormat("%.1f,%.1f,%d,%d,%d\n", seconds, rss, counts.calls.load(),
                           counts.errors.load(), counts.tokens.load())
        << std::flush;
    std::fprintf(stderr, "\r%6.0f s  rss %7.1f MiB  calls %8lld  errors %lld  tokens %lld", seconds,
                 rss, static_cast<long long>(counts.calls.load()),
                 static_cast<long long>(counts.errors.load()),
                 static_cast<long long>(counts.tokens.load()));
  }
  for (auto& t : threads) t.join();
  std::fprintf(
      stderr, "\n%lld calls, %lld errors, %lld tokens in %.0f s\n",
      static_cast<long long>(counts.calls.load()), static_cast<long long>(counts.errors.load()),
      static_cast<long long>(counts.tokens.load()), absl::ToDoubleSeconds(absl::Now() - start));
  if (counts.errors > 0) return recur::Fail(absl::StrCat("first error: ", counts.first_error));
  return 0;
}
