// A real Prometheus (Debian's `prometheus`) scraping a real recur-server under load, with the
// shipped configuration and rules (deploy/prometheus/): the inter-token p99 read back through
// Prometheus's HTTP API agrees with what the load generator measured, and the capacity ratio with
// the server's own count.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "client/load_generator.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

// Prometheus on loopback with deploy/prometheus's configuration and rules, scraping `target` and
// evaluating the rules every second (the shipped intervals are minutes' worth for a test).
class Prometheus {
 public:
  Prometheus(const std::string& dir, int target) : port_(FreePort()) {
    std::string config = Slurp(std::string(RECUR_DEPLOY_DIR) + "/prometheus/prometheus.yml");
    config = absl::StrReplaceAll(config, {{"127.0.0.1:9464", "127.0.0.1:" + std::to_string(target)},
                                          {"scrape_interval: 5s", "scrape_interval: 1s"},
                                          {"evaluation_interval: 15s", "evaluation_interval: 1s"}});
    std::ofstream(dir + "/prometheus.yml") << config;
    std::ofstream(dir + "/rules.yml")
        << Slurp(std::string(RECUR_DEPLOY_DIR) + "/prometheus/rules.yml");
    pid_ = fork();
    if (pid_ == 0) {
      const std::string command = "exec prometheus --config.file=" + dir + "/prometheus.yml" +
                                  " --storage.tsdb.path=" + dir + "/data" +
                                  " --web.listen-address=127.0.0.1:" + std::to_string(port_) +
                                  " 2> " + dir + "/prometheus.log";
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Prometheus() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }

  // The value of an instant query's single sample, or NaN when there is none (yet).
  double Query(const std::string& expression) {
    const std::string response = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(expression));
    const size_t body = response.find("\r\n\r\n");
    if (body == std::string::npos) return std::nan("");
    auto json =
        nlohmann::json::parse(response.substr(body + 4), nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || json["status"] != "success") return std::nan("");
    const auto& result = json["data"]["result"];
    if (!result.is_array() || result.size() != 1) return std::nan("");
    return std::stod(result[0]["value"][1].get<std::string>());
  }
  // Polls until `expression` has a value for which `done` holds; returns the last value read.
  double WaitFor(const std::string& expression, const std::function<bool(double)>& done,
                 absl::Duration limit = absl::Seconds(60)) {
    const absl::Time end = absl::Now() + limit;
    double value = Query(expression);
    while (!(!std::isnan(value) && done(value)) && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(200));
      value = Query(expression);
    }
    return value;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

TEST(PrometheusTest, PercentilesAndCapacityReadBackThroughARealPrometheus) {
  TempDir dir;
  // Steps of a few milliseconds, as a served model's, not a toy's tens of microseconds.
  ModelConfig config = SmallServedConfig(257, AttentionKind::kLinear);
  config.d_model = 256;
  config.num_layers = 4;
  config.num_heads = 4;
  config.d_ff = 1024;
  WriteRandomCheckpoint(dir.Join("model"), config, ByteTokenizer(), 3);
  EngineOptions engine;
  engine.max_sessions = 64;
  auto server = StartTestServer(dir.Join("model"), engine, /*metrics=*/true);
  ASSERT_NE(server, nullptr);
  Prometheus prometheus(dir.path().string(), server->metrics_port());
  ASSERT_EQ(prometheus.WaitFor("up", [](double up) { return up == 1; }), 1)
      << Slurp(dir.Join("prometheus.log"));

  RecurClient client(Address(*server), absl::Seconds(30));
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(client.CreateSession().ok());
  LoadOptions load;
  load.server = Address(*server);
  load.concurrency = 8;
  load.requests = 48;
  load.request = MakeRequest("The ", 64, 1.0);
  load.request.mutable_sampling()->set_top_p(0.95);
  const LoadReport report = RunLoad(load);
  ASSERT_EQ(report.failed, 0) << report.first_error;

  // The rule's 1-minute window holds the whole load once a scrape after it has been evaluated.
  const int64_t tokens = report.tokens;
  ASSERT_EQ(prometheus.WaitFor("sum(recur_generated_tokens_total)",
                               [&](double v) { return v >= tokens; }),
            tokens);
  absl::SleepFor(absl::Seconds(2));  // two more evaluations of the rules
  const double p99 = prometheus.Query("instance:recur_inter_token_latency_seconds:p99_1m");
  EXPECT_NEAR(p99 / report.inter_token_p99, 1.0, 0.2)
      << "Prometheus p99 " << p99 * 1e3 << " ms, load generator p99 "
      << report.inter_token_p99 * 1e3 << " ms";
  // 16 sessions of 64 slots; the one-off requests have ended.
  EXPECT_DOUBLE_EQ(prometheus.Query("instance:recur_session_slots:utilisation"), 16.0 / 64.0);
  std::printf("inter-token p99: Prometheus %.2f ms, load generator %.2f ms (p50 %.2f ms)\n",
              p99 * 1e3, report.inter_token_p99 * 1e3, report.inter_token_p50 * 1e3);
}

}  // namespace
}  // namespace recur::testing
