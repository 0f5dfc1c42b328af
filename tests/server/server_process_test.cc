// The real recur-server binary: flags, start-up errors, and SIGTERM draining in-flight streams.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "tests/server/reflection_client.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;

// Starts recur-server with `args`; stderr goes to `log`.
pid_t Spawn(const std::string& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string command =
        "exec " + std::string(RECUR_SERVER_BINARY) + " " + args + " 2> " + log;
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The port the server logged, or 0 if it has not (yet).
int LoggedPort(const std::string& log) {
  std::smatch match;
  const std::string text = Slurp(log);
  if (std::regex_search(text, match, std::regex("listening on 127\\.0\\.0\\.1:(\\d+)")))
    return std::stoi(match[1]);
  return 0;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The exit code, or -1 after killing a process still running at `limit`.
int WaitExitWithin(pid_t pid, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// gRPC sets SO_REUSEPORT by default, so a second server on a port in use used to start and split
// the clients with the first (whose sessions then came back NOT_FOUND at random). Both the gRPC
// port and the metrics port must be free, or the server exits at start-up.
TEST(ServerProcessTest, APortInUseIsAStartupError) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear);
  auto first = StartTestServer(dir.Join("model"), {}, /*metrics=*/true);
  ASSERT_NE(first, nullptr);
  const std::string common = "--checkpoint " + dir.Join("model") + " --threads 1 ";
  EXPECT_EQ(
      WaitExitWithin(Spawn(common + "--metrics_port -1 --port " + std::to_string(first->port()),
                           dir.Join("grpc")),
                     absl::Seconds(60)),
      1);
  EXPECT_THAT(Slurp(dir.Join("grpc")),
              HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(first->port())));
  EXPECT_EQ(WaitExitWithin(
                Spawn(common + "--port 0 --metrics_port " + std::to_string(first->metrics_port()),
                      dir.Join("metrics")),
                absl::Seconds(60)),
            1);
  EXPECT_THAT(Slurp(dir.Join("metrics")), HasSubstr(std::to_string(first->metrics_port())));
}

TEST(ServerProcessTest, SigtermLetsInFlightStreamsFinishThenExitsZero) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear);
  const pid_t pid = Spawn("--checkpoint " + dir.Join("model") +
                              " --port 0 --metrics_port -1 --threads 1 "
                              "--drain_timeout 20s",
                          dir.Join("log"));
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    port = LoggedPort(dir.Join("log"));
  }
  ASSERT_GT(port, 0) << Slurp(dir.Join("log"));
  RecurClient client("127.0.0.1:" + std::to_string(port), absl::Seconds(60));

  // A stream long enough to be running when the signal arrives.
  Streamed out;
  std::atomic<int> received{0};
  std::thread stream([&] {
    out.status =
        client.Generate(MakeRequest("drain ", 3000, 1.0), [&](const v1::GenerateResponse& m) {
          out.ids.insert(out.ids.end(), m.token_ids().begin(), m.token_ids().end());
          out.last = m;
          ++received;
        });
  });
  while (received < 10) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(pid, SIGTERM);
  stream.join();
  EXPECT_TRUE(out.status.ok()) << out.status;
  const bool eos = !out.ids.empty() && out.ids.back() == 256;
  EXPECT_TRUE(out.ids.size() == 3000u || eos) << out.ids.size() << " tokens";
  EXPECT_EQ(WaitExit(pid), 0) << Slurp(dir.Join("log"));
  EXPECT_THAT(Slurp(dir.Join("log")), HasSubstr("draining"));
  // Without --tls_cert_file and --auth_token_file the server says it is open.
  EXPECT_THAT(Slurp(dir.Join("log")),
              HasSubstr("security: plaintext (no TLS), no authentication: any client can reach "
                        "every session"));
}

// Spawns recur-server with `args` and waits for its port (0 if it never logged one).
int SpawnAndWaitForPort(const std::string& args, const std::string& log, pid_t* pid) {
  *pid = Spawn(args, log);
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    port = LoggedPort(log);
  }
  return port;
}

// --session_dir across real process ends: a kill -9 with the sync on loses only the changes of
// the last interval, a SIGTERM none; each restored session continues as on a server that never
// stopped.
TEST(ServerProcessTest, SessionsSurviveKillNineWithSyncAndSigterm) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear);
  auto turn = [](int i, const std::string& id) {
    return MakeRequest("turn " + std::to_string(i) + " ", 10, 1.0, 50 + i, id);
  };
  std::vector<std::vector<int64_t>> reference;
  {
    auto server = StartTestServer(dir.Join("model"));
    RecurClient client(Address(*server), absl::Seconds(30));
    auto session = client.CreateSession();
    ASSERT_TRUE(session.ok());
    for (int i = 0; i < 3; ++i)
      reference.push_back(Stream(client, turn(i, session->session_id())).ids);
  }
  const std::string common = "--checkpoint " + dir.Join("model") +
                             " --port 0 --metrics_port -1 --threads 1 --replica_name r "
                             "--session_dir " +
                             dir.Join("sessions");
  pid_t pid = 0;
  int port = SpawnAndWaitForPort(common + " --session_sync_interval 50ms", dir.Join("log1"), &pid);
  ASSERT_GT(port, 0) << Slurp(dir.Join("log1"));
  std::string id;
  int64_t tokens_after_first = 0;
  {
    RecurClient client("127.0.0.1:" + std::to_string(port), absl::Seconds(30));
    auto session = client.CreateSession();
    ASSERT_TRUE(session.ok());
    id = session->session_id();
    EXPECT_EQ(Stream(client, turn(0, id)).ids, reference[0]);
    tokens_after_first = client.GetSession(id)->tokens();
  }
  absl::SleepFor(absl::Milliseconds(500));  // ten intervals: the turn is on disk
  kill(pid, SIGKILL);
  EXPECT_EQ(WaitExit(pid), 128 + SIGKILL);

  port = SpawnAndWaitForPort(common, dir.Join("log2"), &pid);
  ASSERT_GT(port, 0) << Slurp(dir.Join("log2"));
  {
    RecurClient client("127.0.0.1:" + std::to_string(port), absl::Seconds(30));
    auto info = client.GetSession(id);
    ASSERT_TRUE(info.ok()) << info.status() << Slurp(dir.Join("log2"));
    EXPECT_EQ(info->tokens(), tokens_after_first);
    EXPECT_EQ(Stream(client, turn(1, id)).ids, reference[1]);
  }
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0) << Slurp(dir.Join("log2"));
  EXPECT_THAT(Slurp(dir.Join("log2")), HasSubstr("saved 1 sessions"));

  port = SpawnAndWaitForPort(common, dir.Join("log3"), &pid);
  ASSERT_GT(port, 0) << Slurp(dir.Join("log3"));
  {
    RecurClient client("127.0.0.1:" + std::to_string(port), absl::Seconds(30));
    EXPECT_EQ(Stream(client, turn(2, id)).ids, reference[2]);
  }
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0);
}

// The real binary (not a test binary that links the health messages for its own client) serves
// the health service's descriptor through both reflection versions.
TEST(ServerProcessTest, ReflectionResolvesTheHealthService) {
  TempDir dir;
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kLinear);
  pid_t pid = 0;
  const int port = SpawnAndWaitForPort(
      "--checkpoint " + dir.Join("model") + " --port 0 --metrics_port -1 --threads 1",
      dir.Join("log"), &pid);
  ASSERT_GT(port, 0) << Slurp(dir.Join("log"));
  grpc::reflection::v1::ServerReflectionRequest health;
  health.set_file_containing_symbol("grpc.health.v1.Health");
  for (const std::string version : {"v1", "v1alpha"}) {
    EXPECT_TRUE(DefinesService(AskReflection("127.0.0.1:" + std::to_string(port), version, health),
                               "grpc.health.v1.Health"))
        << version;
  }
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0);
}

TEST(ServerProcessTest, BadStartupsExitNonZeroWithAMessage) {
  TempDir dir;
  EXPECT_EQ(WaitExit(Spawn("", dir.Join("a"))), 1);
  EXPECT_THAT(Slurp(dir.Join("a")), HasSubstr("--checkpoint is required"));
  EXPECT_EQ(WaitExit(Spawn("--checkpoint " + dir.Join("missing"), dir.Join("b"))), 1);
  EXPECT_THAT(Slurp(dir.Join("b")), HasSubstr("missing"));
  WriteTestCheckpoint(dir.Join("model"), AttentionKind::kSoftmax);
  EXPECT_EQ(
      WaitExit(Spawn("--checkpoint " + dir.Join("model") + " --state_memory_mb 10", dir.Join("c"))),
      1);
  EXPECT_THAT(Slurp(dir.Join("c")), HasSubstr("--max_sessions for softmax"));
  EXPECT_EQ(WaitExit(Spawn("--checkpoint " + dir.Join("model") + " --device tpu", dir.Join("d"))),
            1);
  EXPECT_THAT(Slurp(dir.Join("d")), HasSubstr("unknown device"));
}

}  // namespace
}  // namespace recur::testing
