// What a hostile or careless client can and cannot do: session ids of any length, other tenants'
// sessions, missing or wrong tokens, TLS.

#include <atomic>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "server/authenticator.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAliceToken[] = "alice-0123456789abcdef";
constexpr char kBobToken[] = "bob-0123456789abcdef";

// A test CA (and another, unrelated one), a server certificate for localhost and 127.0.0.1 and a
// client certificate, made with the openssl command (EC keys, valid for two days).
constexpr char kMakeCertificates[] = R"(set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 2 -subj /CN=recur-test-ca
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key \
  -out other-ca.pem -days 2 -subj /CN=another-ca
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > server.ext
printf "extendedKeyUsage=clientAuth\n" > client.ext
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key \
    -out $who.csr -subj /CN=$who
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem \
    -days 2 -extfile $who.ext
done)";

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    WriteTestCheckpoint(dir_->Join("linear"), AttentionKind::kLinear);
    std::ofstream(dir_->Join("tokens")) << "# token tenant\n"
                                        << kAliceToken << " alice\n\n"
                                        << kBobToken << "   bob\n";
    std::ofstream(dir_->Join("make.sh")) << kMakeCertificates;
    const CommandResult made = RunCommand("cd " + dir_->path().string() + " && sh make.sh");
    ASSERT_EQ(made.exit_code, 0) << made.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::unique_ptr<RecurServer> StartSecure(SecurityOptions security) {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.security = std::move(security);
    auto server = RecurServer::Start(LoadTestCheckpoint(dir_->Join("linear")), options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }
  static std::string Pem(const std::string& name) { return Slurp(dir_->Join(name)); }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static ConnectionOptions Token(const std::string& token) {
    ConnectionOptions connection;
    connection.token = token;
    return connection;
  }

  static TempDir* dir_;
};
TempDir* SecurityTest::dir_ = nullptr;

// Without a valid bearer token every recur.v1 call is UNAUTHENTICATED (health stays open for
// probes), and no message quotes the token that was sent.
TEST_F(SecurityTest, WithATokenFileEveryCallNeedsAValidToken) {
  auto server = StartSecure({.auth_token_file = dir_->Join("tokens")});
  ASSERT_NE(server, nullptr);
  const std::string wrong = "mallory-0123456789abcdef";
  for (const std::string& token : {std::string(), wrong, std::string(kAliceToken) + "x"}) {
    RecurClient client(Address(*server), absl::Seconds(30), Token(token));
    std::vector<absl::Status> answers = {
        client.CreateSession().status(), client.GetModelInfo().status(),
        client.GetSession("s-" + std::string(32, '0')).status(), client.ImportSession("x").status(),
        Stream(client, MakeRequest("hi", 3)).status};
    for (const absl::Status& status : answers) {
      EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
      if (!token.empty()) EXPECT_THAT(status.message(), Not(HasSubstr(token)));
    }
    EXPECT_EQ(*client.Health(), "SERVING");
  }
  RecurClient alice(Address(*server), absl::Seconds(30), Token(kAliceToken));
  EXPECT_TRUE(alice.GetModelInfo().ok());
  EXPECT_TRUE(Stream(alice, MakeRequest("hi", 3)).status.ok());
}

// A session belongs to the tenant that created (or imported) it; to every other tenant it does
// not exist: the same NOT_FOUND as an unknown id, for every call.
TEST_F(SecurityTest, EachTenantReachesOnlyItsOwnSessions) {
  auto server = StartSecure({.auth_token_file = dir_->Join("tokens")});
  ASSERT_NE(server, nullptr);
  RecurClient alice(Address(*server), absl::Seconds(30), Token(kAliceToken));
  RecurClient bob(Address(*server), absl::Seconds(30), Token(kBobToken));
  auto session = alice.CreateSession();
  ASSERT_TRUE(session.ok()) << session.status();
  const std::string id = session->session_id();
  ASSERT_TRUE(Stream(alice, MakeRequest("private words ", 5, 0, 0, id)).status.ok());
  const std::string unknown = "s-" + std::string(32, '0');
  std::vector<std::pair<absl::Status, absl::Status>> answers = {
      {bob.GetSession(id).status(), bob.GetSession(unknown).status()},
      {bob.ForkSession(id).status(), bob.ForkSession(unknown).status()},
      {bob.ExportSession(id).status(), bob.ExportSession(unknown).status()},
      {bob.CloseSession(id), bob.CloseSession(unknown)},
      {Stream(bob, MakeRequest("more", 3, 0, 0, id)).status,
       Stream(bob, MakeRequest("more", 3, 0, 0, unknown)).status}};
  for (const auto& [theirs, none] : answers) {
    EXPECT_EQ(theirs.code(), absl::StatusCode::kNotFound) << theirs;
    EXPECT_EQ(none.code(), absl::StatusCode::kNotFound) << none;
  }
  auto mine = alice.GetSession(id);
  ASSERT_TRUE(mine.ok()) << "bob's calls left alice's session alone: " << mine.status();
  EXPECT_EQ(mine->tokens(), 14 + 5);
  // Exported bytes are the holder's to import: the imported copy is bob's, not alice's.
  auto bytes = alice.ExportSession(id);
  ASSERT_TRUE(bytes.ok());
  auto copy = bob.ImportSession(*bytes);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_TRUE(bob.GetSession(copy->session_id()).ok());
  EXPECT_EQ(alice.GetSession(copy->session_id()).status().code(), absl::StatusCode::kNotFound);
  auto fork = alice.ForkSession(id);
  ASSERT_TRUE(fork.ok());
  EXPECT_EQ(bob.GetSession(fork->session_id()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SecurityTest, TlsServesOnlyTlsClientsThatTrustItsCertificate) {
  auto server = StartSecure(
      {.tls_cert_file = dir_->Join("server.pem"), .tls_key_file = dir_->Join("server.key")});
  ASSERT_NE(server, nullptr);
  ConnectionOptions tls;
  tls.tls = true;
  tls.tls_root_certs = Pem("ca.pem");
  RecurClient trusted(Address(*server), absl::Seconds(30), tls);
  EXPECT_TRUE(trusted.GetModelInfo().ok()) << trusted.GetModelInfo().status();
  EXPECT_TRUE(Stream(trusted, MakeRequest("over tls ", 4)).status.ok());
  RecurClient plaintext(Address(*server), absl::Seconds(5));
  EXPECT_EQ(plaintext.GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  tls.tls_root_certs = Pem("other-ca.pem");  // the server's certificate does not chain to it
  RecurClient untrusting(Address(*server), absl::Seconds(5), tls);
  EXPECT_EQ(untrusting.GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SecurityTest, MutualTlsRequiresAClientCertificateSignedByTheClientCa) {
  auto server = StartSecure({.tls_cert_file = dir_->Join("server.pem"),
                             .tls_key_file = dir_->Join("server.key"),
                             .tls_client_ca_file = dir_->Join("ca.pem")});
  ASSERT_NE(server, nullptr);
  ConnectionOptions tls;
  tls.tls = true;
  tls.tls_root_certs = Pem("ca.pem");
  RecurClient anonymous(Address(*server), absl::Seconds(5), tls);
  EXPECT_EQ(anonymous.GetModelInfo().status().code(), absl::StatusCode::kUnavailable);
  tls.tls_cert_chain = Pem("client.pem");
  tls.tls_private_key = Pem("client.key");
  RecurClient known(Address(*server), absl::Seconds(30), tls);
  EXPECT_TRUE(known.GetModelInfo().ok()) << known.GetModelInfo().status();
}

TEST_F(SecurityTest, BadSecurityOptionsAreStartupErrors) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  auto start = [&](SecurityOptions security) {
    options.security = std::move(security);
    return RecurServer::Start(LoadTestCheckpoint(dir_->Join("linear")), options).status();
  };
  EXPECT_THAT(start({.tls_cert_file = dir_->Join("server.pem")}).message(),
              HasSubstr("needs --tls_key_file"));
  EXPECT_THAT(start({.tls_client_ca_file = dir_->Join("ca.pem")}).message(),
              HasSubstr("need --tls_cert_file"));
  EXPECT_EQ(start({.auth_token_file = dir_->Join("none")}).code(), absl::StatusCode::kNotFound);
  std::ofstream(dir_->Join("short")) << "abc alice\n";
  EXPECT_THAT(start({.auth_token_file = dir_->Join("short")}).message(),
              HasSubstr("line 1: the token is shorter than 16 characters"));
}

TEST(AuthenticatorTest, MalformedTokenFilesNameTheLineAndNeverTheToken) {
  const std::string token = "secret-0123456789abcdef";
  struct Case {
    std::string text, message;
  };
  for (const Case& c : std::vector<Case>{
           {"# nothing\n\n", "holds no `token tenant` line"},
           {token + "\n", "line 1: expected two fields"},
           {"\n" + token + " alice extra\n", "line 2: expected two fields"},
           {token + " al/ice\n", "line 1: the tenant name"},
           {token + " alice\n" + token + " bob\n", "line 2: the token is repeated"}}) {
    auto parsed = Authenticator::FromText(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message));
    EXPECT_THAT(parsed.status().message(), Not(HasSubstr(token)));
  }
  auto parsed = Authenticator::FromText(token + " alice\n" + token + "2\talice\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tenants(), 1u);
  EXPECT_EQ(*parsed->Authenticate("Bearer " + token), "alice");
  EXPECT_EQ(parsed->Authenticate(token).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(parsed->Authenticate("Bearer " + token.substr(1)).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(*Authenticator().Authenticate(""), "") << "without tokens everyone is anonymous";
}

// The CLI takes --token or $RECUR_TOKEN, and --tls_ca_file.
TEST_F(SecurityTest, TheCliSendsItsTokenAndSpeaksTls) {
  auto server = StartSecure({.tls_cert_file = dir_->Join("server.pem"),
                             .tls_key_file = dir_->Join("server.key"),
                             .auth_token_file = dir_->Join("tokens")});
  ASSERT_NE(server, nullptr);
  const std::string recur = std::string(RECUR_CLI_BINARY) + " --server " + Address(*server) +
                            " --timeout 30s --tls_ca_file " + dir_->Join("ca.pem") + " ";
  const CommandResult without = RunCommand(recur + "info");
  EXPECT_NE(without.exit_code, 0);
  EXPECT_THAT(without.err, HasSubstr("bearer token"));
  const CommandResult flag = RunCommand(recur + "--token " + kAliceToken + " info");
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_THAT(flag.out, HasSubstr("attention"));
  const CommandResult env =
      RunCommand("RECUR_TOKEN=" + std::string(kBobToken) + " " + recur + "session create");
  EXPECT_EQ(env.exit_code, 0) << env.err;
  const CommandResult plaintext = RunCommand(std::string(RECUR_CLI_BINARY) + " --server " +
                                             Address(*server) + " --timeout 5s health");
  EXPECT_NE(plaintext.exit_code, 0);
}

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
