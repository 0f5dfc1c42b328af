// Two recur-server replicas behind a real nginx configured from deploy/nginx/: every call of a
// session reaches the replica that holds it, and draining one replica moves its sessions to the
// other through a shared --session_dir.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "gmock/gmock.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

// nginx in the foreground with deploy/nginx's configuration, in front of `replicas`.
class Nginx {
 public:
  Nginx(const std::string& prefix, const std::vector<int>& replicas) : port_(FreePort()) {
    std::string command = std::string("RECUR_NGINX_SINGLE_PROCESS=1 bash ") + RECUR_DEPLOY_DIR +
                          "/nginx/render.sh 127.0.0.1:" + std::to_string(port_) + " " + prefix;
    for (int replica : replicas) command += " 127.0.0.1:" + std::to_string(replica);
    command += " > " + prefix + "/nginx.conf";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    pid_ = fork();
    if (pid_ == 0) {
      execlp("nginx", "nginx", "-p", prefix.c_str(), "-c", (prefix + "/nginx.conf").c_str(), "-e",
             (prefix + "/error.log").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      const int fd = ConnectLoopback(port_);
      if (fd >= 0) {
        close(fd);
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "nginx did not listen on " << port_ << " (is nginx installed?)";
  }
  ~Nginx() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

std::unique_ptr<RecurServer> StartReplica(const std::string& checkpoint,
                                          const std::string& session_dir = "",
                                          const std::string& replica = "") {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.persistence = {session_dir, replica, absl::ZeroDuration()};
  auto server = RecurServer::Start(LoadTestCheckpoint(checkpoint), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// A call through the proxy while a replica is going away: UNAVAILABLE (refused before any output)
// is retried, as a client of any replicated service does.
Streamed StreamRetrying(RecurClient& client, const v1::GenerateRequest& request) {
  Streamed out;
  for (int attempt = 0; attempt < 5; ++attempt) {
    out = Stream(client, request);
    if (out.status.code() != absl::StatusCode::kUnavailable || !out.ids.empty()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return out;
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteTestCheckpoint(dir_.Join("model"), AttentionKind::kLinear); }
  TempDir dir_;
};

// Without a shared directory a misrouted call would find no session (NOT_FOUND): every call
// succeeding shows each reached the replica holding its session.
TEST_F(ProxyTest, EveryCallOfASessionReachesItsReplica) {
  auto a = StartReplica(dir_.Join("model"));
  auto b = StartReplica(dir_.Join("model"));
  Nginx nginx(dir_.path().string(), {a->port(), b->port()});
  RecurClient client(nginx.address(), absl::Seconds(30));
  constexpr int kSessions = 100;
  for (int i = 0; i < kSessions; ++i) {
    auto session = client.CreateSession();
    ASSERT_TRUE(session.ok()) << session.status();
    const std::string id = session->session_id();
    Streamed turn = Stream(client, MakeRequest("hello " + std::to_string(i), 4, 0, 0, id));
    ASSERT_TRUE(turn.status.ok()) << "session " << i << ": " << turn.status;
    auto info = client.GetSession(id);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_GT(info->tokens(), 4);
    auto fork = client.ForkSession(id);
    ASSERT_TRUE(fork.ok()) << fork.status();
    ASSERT_TRUE(Stream(client, MakeRequest(" more", 2, 0, 0, fork->session_id())).status.ok());
    ASSERT_TRUE(client.ExportSession(fork->session_id()).ok());
    ASSERT_TRUE(client.CloseSession(fork->session_id()).ok());
  }
  const int64_t on_a = a->engine().Info().sessions_in_use;
  const int64_t on_b = b->engine().Info().sessions_in_use;
  EXPECT_EQ(on_a + on_b, kSessions);
  EXPECT_GE(on_a, 10) << "the proxy should spread sessions over both replicas";
  EXPECT_GE(on_b, 10);
}

TEST_F(ProxyTest, DrainingAReplicaMovesItsSessionsToThePeer) {
  const std::string shared = dir_.Join("sessions");
  auto a = StartReplica(dir_.Join("model"), shared, "a");
  auto b = StartReplica(dir_.Join("model"), shared, "b");
  auto reference = StartTestServer(dir_.Join("model"));
  Nginx nginx(dir_.path().string(), {a->port(), b->port()});
  RecurClient client(nginx.address(), absl::Seconds(30));
  RecurClient direct(Address(*reference), absl::Seconds(30));
  auto turn = [](int i, int n, const std::string& id) {
    return MakeRequest("turn " + std::to_string(n) + " ", 8, 1.0, 10 * i + n, id);
  };
  constexpr int kSessions = 20;
  std::vector<std::string> ids, reference_ids;
  for (int i = 0; i < kSessions; ++i) {
    auto session = client.CreateSession();
    auto twin = direct.CreateSession();
    ASSERT_TRUE(session.ok() && twin.ok());
    ids.push_back(session->session_id());
    reference_ids.push_back(twin->session_id());
    EXPECT_EQ(Stream(client, turn(i, 0, ids[i])).ids,
              Stream(direct, turn(i, 0, twin->session_id())).ids);
  }
  const int64_t moved = a->engine().Info().sessions_in_use;
  ASSERT_GT(moved, 0);
  a->Shutdown(absl::Seconds(5));  // saves a's sessions into the shared directory, stops listening
  for (int i = 0; i < kSessions; ++i) {
    Streamed second = StreamRetrying(client, turn(i, 1, ids[i]));
    ASSERT_TRUE(second.status.ok()) << "session " << i << ": " << second.status;
    EXPECT_EQ(second.ids, Stream(direct, turn(i, 1, reference_ids[i])).ids) << "session " << i;
  }
  EXPECT_EQ(b->engine().Info().sessions_in_use, kSessions);
}

}  // namespace
}  // namespace recur::testing
