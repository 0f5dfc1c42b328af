// What a hostile or careless client can and cannot do: session ids of any length, other tenants'
// sessions, missing or wrong tokens, TLS.

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    WriteTestCheckpoint(dir_->Join("linear"), AttentionKind::kLinear);
  }
  static void TearDownTestSuite() { delete dir_; }

  static TempDir* dir_;
};
TempDir* SecurityTest::dir_ = nullptr;

// A 10 kB id used to come back RESOURCE_EXHAUSTED (echoed into the status message, over the
// client's metadata limit) and a 100 kB one hung a grpc-js channel. Every id that is not one the
// server could have made is NOT_FOUND, with a message that quotes at most an excerpt.
TEST_F(SecurityTest, MalformedSessionIdsOfAnyLengthAreNotFoundWithAShortMessage) {
  auto server = StartTestServer(dir_->Join("linear"));
  ASSERT_NE(server, nullptr);
  RecurClient client(Address(*server), absl::Seconds(30));
  auto session = client.CreateSession();
  ASSERT_TRUE(session.ok()) << session.status();
  std::string upper = session->session_id();
  for (char& c : upper) c = absl::ascii_toupper(c);
  for (const std::string& id : {std::string(10'000, 'x'), "s-" + std::string(100'000, 'a'), upper,
                                session->session_id() + "0", std::string("s-nope")}) {
    std::vector<absl::Status> answers = {
        client.GetSession(id).status(), client.CloseSession(id), client.ForkSession(id).status(),
        client.ExportSession(id).status(), Stream(client, MakeRequest("hi", 3, 0, 0, id)).status};
    for (const absl::Status& status : answers) {
      EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status.ToString().substr(0, 200);
      EXPECT_LT(status.message().size(), 200u);
      EXPECT_THAT(status.message(), HasSubstr("no session"));
    }
  }
  EXPECT_TRUE(client.GetSession(session->session_id()).ok()) << "the real id still works";
}

// The hand-written /metrics endpoint served one connection at a time: each idle connection delayed
// a scrape by 5 s, and a client sending a byte a second blinded it for over a minute. Now a scrape
// is answered while ten idle and two trickling clients hold their connections (the old endpoint
// would have needed over 50 s; the scrape gives up after 10).
TEST_F(SecurityTest, MetricsAreScrapedWhileIdleAndSlowClientsHoldConnections) {
  auto server = StartTestServer(dir_->Join("linear"), {}, /*metrics=*/true);
  ASSERT_NE(server, nullptr);
  std::vector<int> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(ConnectLoopback(server->metrics_port()));
  std::atomic<bool> done{false};
  std::vector<std::thread> trickles;
  for (int i = 0; i < 2; ++i) {
    trickles.emplace_back([&] {
      const int fd = ConnectLoopback(server->metrics_port());
      const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
      for (size_t sent = 0; !done && sent < request.size(); ++sent) {
        send(fd, request.data() + sent, 1, MSG_NOSIGNAL);
        absl::SleepFor(absl::Milliseconds(500));
      }
      close(fd);
    });
  }
  absl::SleepFor(absl::Milliseconds(200));  // every slow client is connected
  const std::string scrape = Scrape(server->metrics_port(), absl::Seconds(10));
  done = true;
  for (auto& t : trickles) t.join();
  for (int fd : idle) close(fd);
  EXPECT_THAT(scrape, HasSubstr("200 OK"));
  EXPECT_GE(Sample(scrape, "recur_active_sessions"), 0);
}

}  // namespace
}  // namespace recur::testing
