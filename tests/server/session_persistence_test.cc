// --session_dir: sessions saved on drain (and every sync interval), restored at start-up with their
// ids, owners and text, and claimed by another replica that shares the directory. Each restored
// session must continue exactly as on a server that never stopped.

#include <filesystem>
#include <fstream>

#include "base/files.h"
#include "gmock/gmock.h"
#include "server/session_codec.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<RecurServer> StartKeeping(const std::string& checkpoint, const std::string& dir,
                                          const std::string& replica,
                                          absl::Duration sync = absl::ZeroDuration()) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.persistence = {dir, replica, sync};
  auto server = RecurServer::Start(LoadTestCheckpoint(checkpoint), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Two sampled turns of a session: the first on `before`, the second on `after` (which may be the
// same server); returns the tokens of both.
struct Turns {
  std::vector<int64_t> first, second;
};

class SessionPersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteTestCheckpoint(dir_.Join("model"), AttentionKind::kLinear); }

  // The two turns on one server that never stops: the reference.
  Turns Uninterrupted(int i) {
    auto server = StartTestServer(dir_.Join("model"));
    RecurClient client(Address(*server), absl::Seconds(30));
    auto session = client.CreateSession();
    EXPECT_TRUE(session.ok()) << session.status();
    Turns turns;
    turns.first = Stream(client, FirstTurn(i, session->session_id())).ids;
    turns.second = Stream(client, SecondTurn(i, session->session_id())).ids;
    return turns;
  }
  static v1::GenerateRequest FirstTurn(int i, const std::string& id) {
    return MakeRequest("turn one of " + std::to_string(i) + ": ", 12, 1.0, 100 + i, id);
  }
  static v1::GenerateRequest SecondTurn(int i, const std::string& id) {
    return MakeRequest(" and two", 12, 1.0, 200 + i, id);
  }

  TempDir dir_;
};

TEST_F(SessionPersistenceTest, SessionsSurviveARestartAndContinueExactly) {
  constexpr int kSessions = 3;
  std::vector<std::string> ids;
  std::vector<std::vector<int64_t>> first(kSessions);
  {
    auto server = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a");
    RecurClient client(Address(*server), absl::Seconds(30));
    for (int i = 0; i < kSessions; ++i) {
      auto session = client.CreateSession();
      ASSERT_TRUE(session.ok()) << session.status();
      ids.push_back(session->session_id());
      first[i] = Stream(client, FirstTurn(i, ids[i])).ids;
    }
    auto closed = client.CreateSession();  // closed before the restart: not restored
    ASSERT_TRUE(closed.ok());
    ASSERT_TRUE(client.CloseSession(closed->session_id()).ok());
    server->Shutdown(absl::Seconds(5));
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.Join("sessions/a")), {}), kSessions);
  // Users' conversations: the replica's directory is its user's alone.
  EXPECT_EQ(fs::status(dir_.Join("sessions/a")).permissions(), fs::perms::owner_all);

  auto server = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a");
  RecurClient client(Address(*server), absl::Seconds(30));
  EXPECT_EQ(server->engine().Info().sessions_in_use, kSessions);
  for (int i = 0; i < kSessions; ++i) {
    const Turns reference = Uninterrupted(i);
    EXPECT_EQ(first[i], reference.first);
    auto info = client.GetSession(ids[i]);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_GT(info->tokens(), 12);
    EXPECT_EQ(Stream(client, SecondTurn(i, ids[i])).ids, reference.second) << "session " << i;
  }
}

TEST_F(SessionPersistenceTest, ASessionKeepsItsOwner) {
  const std::string tokens = dir_.Join("tokens");
  std::ofstream(tokens) << "alice-token-0123456789 alice\nbob-token-0123456789 bob\n";
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.security.auth_token_file = tokens;
  options.persistence = {dir_.Join("sessions"), "a", absl::ZeroDuration()};
  std::string id;
  for (int run = 0; run < 2; ++run) {
    auto server = RecurServer::Start(LoadTestCheckpoint(dir_.Join("model")), options);
    ASSERT_TRUE(server.ok()) << server.status();
    ConnectionOptions alice, bob;
    alice.token = "alice-token-0123456789";
    bob.token = "bob-token-0123456789";
    RecurClient as_alice(Address(**server), absl::Seconds(30), alice);
    RecurClient as_bob(Address(**server), absl::Seconds(30), bob);
    if (run == 0) {
      auto session = as_alice.CreateSession();
      ASSERT_TRUE(session.ok()) << session.status();
      id = session->session_id();
    } else {
      EXPECT_TRUE(as_alice.GetSession(id).ok());
      EXPECT_EQ(as_bob.GetSession(id).status().code(), absl::StatusCode::kNotFound);
    }
    (*server)->Shutdown(absl::Seconds(5));
  }
}

TEST_F(SessionPersistenceTest, AnotherReplicaClaimsADrainedSession) {
  std::string id;
  std::vector<int64_t> first;
  {
    auto a = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a");
    RecurClient client(Address(*a), absl::Seconds(30));
    auto session = client.CreateSession();
    ASSERT_TRUE(session.ok());
    id = session->session_id();
    first = Stream(client, FirstTurn(0, id)).ids;
    a->Shutdown(absl::Seconds(5));
  }
  auto b = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "b");
  EXPECT_EQ(b->engine().Info().sessions_in_use, 0);  // b restores only its own at start-up
  RecurClient client(Address(*b), absl::Seconds(30));
  const Turns reference = Uninterrupted(0);
  EXPECT_EQ(Stream(client, SecondTurn(0, id)).ids, reference.second);
  EXPECT_TRUE(fs::exists(dir_.Join("sessions/b/" + id + ".session")));
  EXPECT_FALSE(fs::exists(dir_.Join("sessions/a/" + id + ".session")));
  // Malformed ids never reach the file system.
  EXPECT_EQ(client.GetSession("../a/" + id).status().code(), absl::StatusCode::kNotFound);
}

// A replica still holding a session that a peer has claimed (a proxy's ring changed) drops its
// stale copy at its next save instead of writing a second file for the id.
TEST_F(SessionPersistenceTest, AClaimedSessionIsDroppedByItsFormerReplica) {
  auto a = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a");
  auto b = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "b");
  RecurClient on_a(Address(*a), absl::Seconds(30));
  RecurClient on_b(Address(*b), absl::Seconds(30));
  auto session = on_a.CreateSession();
  ASSERT_TRUE(session.ok());
  const std::string id = session->session_id();
  ASSERT_TRUE(a->engine().SaveSessions().ok());
  ASSERT_TRUE(on_b.GetSession(id).ok());                    // claimed: the file moves to b/
  ASSERT_TRUE(Stream(on_a, FirstTurn(0, id)).status.ok());  // a's copy changes, now stale
  auto saved = a->engine().SaveSessions();
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(*saved, 0);
  EXPECT_FALSE(fs::exists(dir_.Join("sessions/a/" + id + ".session")));
  EXPECT_EQ(a->engine().Info().sessions_in_use, 0);
  EXPECT_TRUE(on_b.GetSession(id).ok());
}

TEST_F(SessionPersistenceTest, SyncWritesChangesWithoutADrainAndRemovesClosedSessions) {
  auto server =
      StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a", absl::Milliseconds(20));
  RecurClient client(Address(*server), absl::Seconds(30));
  auto kept = client.CreateSession();
  auto closed = client.CreateSession();
  ASSERT_TRUE(kept.ok() && closed.ok());
  const fs::path kept_file = dir_.Join("sessions/a/" + kept->session_id() + ".session");
  const fs::path closed_file = dir_.Join("sessions/a/" + closed->session_id() + ".session");
  auto eventually = [](const std::function<bool()>& condition) {
    for (int i = 0; i < 500 && !condition(); ++i) absl::SleepFor(absl::Milliseconds(10));
    return condition();
  };
  ASSERT_TRUE(eventually([&] { return fs::exists(kept_file) && fs::exists(closed_file); }));
  // The tokens of the session as its file holds them (-1 while it cannot be read).
  auto tokens_on_disk = [&]() -> int64_t {
    auto bytes = ReadFileContents(kept_file);
    if (!bytes.ok()) return -1;
    auto state = DecodeSession(*bytes, server->engine().Info().config, torch::kCPU);
    return state.ok() ? state->tokens() : -1;
  };
  EXPECT_EQ(tokens_on_disk(), 0);
  Stream(client, FirstTurn(0, kept->session_id()));
  ASSERT_TRUE(client.CloseSession(closed->session_id()).ok());
  auto info = client.GetSession(kept->session_id());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(eventually([&] { return !fs::exists(closed_file); }));
  EXPECT_TRUE(eventually([&] { return tokens_on_disk() == info->tokens(); }))
      << tokens_on_disk() << " against " << info->tokens();
}

TEST_F(SessionPersistenceTest, AFileOfAnotherModelIsSetAsideNotServed) {
  fs::create_directories(dir_.Join("sessions/a"));
  const std::string id = "s-0123456789abcdef0123456789abcdef";
  std::ofstream(dir_.Join("sessions/a/" + id + ".session")) << "not a session";
  auto server = StartKeeping(dir_.Join("model"), dir_.Join("sessions"), "a");
  RecurClient client(Address(*server), absl::Seconds(30));
  EXPECT_EQ(client.GetSession(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(fs::exists(dir_.Join("sessions/a/" + id + ".session.rejected")));
}

TEST_F(SessionPersistenceTest, ABadReplicaNameOrIntervalIsAStartupError) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.persistence = {dir_.Join("sessions"), "../x", absl::ZeroDuration()};
  EXPECT_EQ(RecurServer::Start(LoadTestCheckpoint(dir_.Join("model")), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.persistence = {"", "a", absl::Seconds(1)};
  EXPECT_EQ(RecurServer::Start(LoadTestCheckpoint(dir_.Join("model")), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recur::testing
