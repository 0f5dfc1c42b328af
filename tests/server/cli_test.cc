// The `recur` CLI as a person uses it: the prompt from stdin, a random seed that is reported and
// reproduces the text, repeatable stop sequences, a host without a port, bench without a server,
// control characters escaped on a terminal, and `recur chat` driven through a pseudo-terminal
// (Ctrl-C stops a reply, not the program).

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "absl/strings/strip.h"
#include "client/terminal_text.h"
#include "gmock/gmock.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

using ::testing::HasSubstr;

CommandResult Cli(const std::string& args) {
  return RunCommand(std::string(RECUR_CLI_BINARY) + " " + args);
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteWordTestCheckpoint(dir_.Join("model"), AttentionKind::kLinear);
    server_ = StartTestServer(dir_.Join("model"));
    ASSERT_NE(server_, nullptr);
    flags_ = "--server " + Address(*server_) + " ";
  }
  TempDir dir_;
  std::unique_ptr<RecurServer> server_;
  std::string flags_;
};

TEST_F(CliTest, AnUnsetSeedIsRandomReportedAndReproducesTheText) {
  const std::string generate = "echo 'the cat' | " + std::string(RECUR_CLI_BINARY) + " " + flags_ +
                               "generate - --max_tokens 30 --usage";
  const CommandResult first = RunCommand(generate);
  const CommandResult second = RunCommand(generate);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(first.err, match, std::regex("seed (\\d+)"))) << first.err;
  const std::string seed = match[1];
  ASSERT_TRUE(std::regex_search(second.err, match, std::regex("seed (\\d+)")));
  EXPECT_NE(match[1], seed) << "two runs without --seed drew the same seed";
  const CommandResult again = RunCommand(generate + " --seed " + seed);
  EXPECT_EQ(again.out, first.out);
  EXPECT_THAT(first.err, HasSubstr("prompt tokens 3"));  // "the cat\n": stdin, newline and all
}

TEST_F(CliTest, StopIsRepeatableAndASequenceMayHoldACommas) {
  const CommandResult full = Cli(flags_ + "generate 'the' --max_tokens 12 --temperature 0");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const std::string text(absl::StripTrailingAsciiWhitespace(full.out));
  ASSERT_GT(text.size(), 8u);
  const std::string cut = text.substr(4, 3);
  // With only the last --stop kept (or the comma splitting it), the output would differ.
  const CommandResult stopped = Cli(flags_ + "generate 'the' --max_tokens 12 --temperature 0 " +
                                    "--stop '" + cut + "' --stop 'x,y'");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_EQ(stopped.out, text.substr(0, text.find(cut)) + "\n");
}

TEST(CliServerTest, AHostAloneMeansPort50051AndBenchSaysItCannotConnect) {
  const CommandResult bench =
      RunCommand(std::string(RECUR_CLI_BINARY) + " --server 127.0.0.2 bench --requests 1");
  EXPECT_NE(bench.exit_code, 0);
  EXPECT_THAT(bench.err, HasSubstr("could not connect to 127.0.0.2:50051"));
  EXPECT_THAT(bench.out, ::testing::Not(HasSubstr("tokens/s")));
}

TEST(TerminalTextTest, ControlCharactersAreShownEscaped) {
  EXPECT_EQ(EscapeForTerminal("plain text\n\twith tab"), "plain text\n\twith tab");
  EXPECT_EQ(EscapeForTerminal("\x1b[2Jcleared"), "\\x1b[2Jcleared");
  EXPECT_EQ(EscapeForTerminal("back\rover"), "back\\x0dover");
  EXPECT_EQ(EscapeForTerminal("del\x7f"), "del\\x7f");
  EXPECT_EQ(EscapeForTerminal("csi \xc2\x9b"
                              "31m"),
            "csi \\u009b31m");
  EXPECT_EQ(EscapeForTerminal("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");  // é €
}

// A program on a pseudo-terminal: what it writes, and keys typed at it.
class Terminal {
 public:
  explicit Terminal(const std::string& command) {
    pid_ = forkpty(&master_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      // exec: the program itself is the terminal's foreground process, not a shell that Ctrl-C
      // would end.
      const std::string exec = "exec " + command;
      execl("/bin/sh", "sh", "-c", exec.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Terminal() {
    if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(master_);
  }
  void Type(const std::string& keys) { (void)!write(master_, keys.data(), keys.size()); }
  // Reads until the output so far matches `pattern` (true) or `limit` passes (false).
  bool WaitFor(const std::string& pattern, absl::Duration limit = absl::Seconds(30)) {
    const std::regex re(pattern);
    const absl::Time end = absl::Now() + limit;
    while (!std::regex_search(output_.substr(mark_), re)) {
      if (absl::Now() > end) return false;
      pollfd fd{master_, POLLIN, 0};
      if (poll(&fd, 1, 50) > 0) {
        char buffer[4096];
        const ssize_t n = read(master_, buffer, sizeof(buffer));
        if (n <= 0) return std::regex_search(output_.substr(mark_), re);
        output_.append(buffer, n);
      }
    }
    return true;
  }
  // Later WaitFor calls look only at what comes after now.
  void Mark() { mark_ = output_.size(); }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& output() const { return output_; }

 private:
  int master_ = -1;
  pid_t pid_ = -1;
  std::string output_;
  size_t mark_ = 0;
};

TEST_F(CliTest, ChatThroughATerminalCtrlCStopsTheReplyNotTheProgram) {
  EngineOptions engine;
  engine.max_tokens = 1'000'000;
  auto server = StartTestServer(dir_.Join("model"), engine);
  const std::string saved = dir_.Join("chat.session");
  Terminal chat(std::string(RECUR_CLI_BINARY) + " --server " + Address(*server) +
                " chat --max_tokens 1000000 --temperature 1");
  ASSERT_TRUE(chat.WaitFor("session (s-[0-9a-f]{32})")) << chat.output();
  std::smatch id;
  std::regex_search(chat.output(), id, std::regex("session (s-[0-9a-f]{32})"));
  const std::string session = id[1];
  ASSERT_TRUE(chat.WaitFor("> $")) << chat.output();

  chat.Type("the cat sat\n");
  ASSERT_TRUE(chat.WaitFor("the cat sat\r?\n")) << chat.output();  // the terminal's echo
  chat.Mark();
  ASSERT_TRUE(chat.WaitFor("(cat|sat|mat|on|a|the) ")) << chat.output();  // the reply streams
  chat.Type("\x03");  // Ctrl-C: the line discipline sends SIGINT to the CLI
  ASSERT_TRUE(chat.WaitFor("\\(stopped\\)")) << chat.output();
  ASSERT_TRUE(chat.WaitFor("> $")) << chat.output();
  RecurClient client(Address(*server), absl::Seconds(30));
  auto info = client.GetSession(session);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(info->tokens(), 4);  // the turn and the part of the reply that streamed

  chat.Mark();
  chat.Type("/save " + saved + "\n");
  ASSERT_TRUE(chat.WaitFor("saved to")) << chat.output();
  chat.Type("/reset\n");
  ASSERT_TRUE(chat.WaitFor("session s-")) << chat.output();
  chat.Mark();
  chat.Type("/load " + saved + "\n");
  ASSERT_TRUE(
      chat.WaitFor("session s-[0-9a-f]{32}, " + std::to_string(info->tokens()) + " tokens, from"))
      << chat.output();
  chat.Type("/quit\n");
  EXPECT_EQ(chat.Wait(), 0) << chat.output();
  EXPECT_EQ(client.GetSession(session).status().code(), absl::StatusCode::kNotFound)
      << "the chat's own sessions are closed at the end";
}

// On a terminal the text (stdout) and the usage line or an error (stderr) share the screen: each
// of the latter starts a line of its own, never running on from the generated text.
TEST_F(CliTest, TheUsageLineAndErrorsStartALineOfTheirOwnOnATerminal) {
  EngineOptions engine;
  engine.max_tokens = 1'000'000;
  auto server = StartTestServer(dir_.Join("model"), engine);
  const std::string cli = std::string(RECUR_CLI_BINARY) + " --server " + Address(*server);
  Terminal usage(cli + " generate 'the cat' --max_tokens 7 --temperature 1 --seed 3 --usage");
  // The pseudo-terminal writes a line end as \r\n.
  ASSERT_TRUE(usage.WaitFor("finish: [^\r\n]*\r\n")) << usage.output();
  EXPECT_EQ(usage.Wait(), 0);
  EXPECT_TRUE(std::regex_search(usage.output(), std::regex("(^|\n)finish: ")))
      << "the usage line runs on from the text: " << usage.output();

  // A deadline that passes mid-stream: the error follows the text that streamed, on a new line.
  Terminal cut(cli + " --timeout 300ms generate 'the cat' --max_tokens 1000000 --temperature 1");
  ASSERT_TRUE(cut.WaitFor("DEADLINE_EXCEEDED[^\r\n]*\r\n")) << cut.output();
  EXPECT_EQ(cut.Wait(), 1);
  EXPECT_TRUE(std::regex_search(cut.output(), std::regex("(cat|sat|mat|on|a|the|<unk>)")))
      << "nothing streamed before the deadline: " << cut.output();
  EXPECT_TRUE(std::regex_search(cut.output(), std::regex("(^|\n)recur: DEADLINE_EXCEEDED")))
      << "the error runs on from the text: " << cut.output();
}

}  // namespace
}  // namespace recur::testing
