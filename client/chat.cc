#include "client/chat.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/files.h"
#include "client/terminal_text.h"

namespace recur {

namespace {

class Chat {
 public:
  Chat(RecurClient& client, const ChatOptions& options, Cancellation& cancellation, FILE* out,
       FILE* err)
      : client_(client), options_(options), cancellation_(cancellation), out_(out), err_(err) {}

  // A session to talk in: the given one, or a new one.
  bool Open() {
    if (!options_.session_id.empty()) {
      auto session = client_.GetSession(options_.session_id);
      if (!session.ok()) return Note(session.status());
      id_ = options_.session_id;
      owned_ = false;
    } else if (!Create()) {
      return false;
    }
    std::fprintf(err_, "session %s (/help for commands)\n", id_.c_str());
    return true;
  }

  void Close() {
    if (owned_) (void)client_.CloseSession(id_);
  }

  // One line of input: a command or a turn. False when the chat is over.
  bool Line(const std::string& line) {
    if (line == "/quit" || line == "/exit") return false;
    if (line == "/help") {
      std::fprintf(err_, "/reset  /save FILE  /load FILE  /quit; any other line is a turn\n");
    } else if (line == "/reset") {
      Close();
      if (Create()) std::fprintf(err_, "session %s\n", id_.c_str());
    } else if (absl::StartsWith(line, "/save ")) {
      Save(std::string(absl::StripAsciiWhitespace(line.substr(6))));
    } else if (absl::StartsWith(line, "/load ")) {
      Load(std::string(absl::StripAsciiWhitespace(line.substr(6))));
    } else if (absl::StartsWith(line, "/")) {
      std::fprintf(err_, "unknown command %s (/help)\n", line.c_str());
    } else {
      Turn(line);
    }
    return true;
  }

 private:
  bool Create() {
    auto session = client_.CreateSession();
    if (!session.ok()) return Note(session.status());
    id_ = session->session_id();
    owned_ = true;
    return true;
  }

  void Turn(const std::string& line) {
    v1::GenerateRequest request = options_.turn;
    request.set_prompt(line + "\n");
    request.set_session_id(id_);
    bool ends_with_newline = true;
    absl::Status status = client_.Generate(
        request,
        [&](const v1::GenerateResponse& message) {
          if (message.text().empty()) return;
          const std::string text =
              options_.escape ? EscapeForTerminal(message.text()) : message.text();
          std::fwrite(text.data(), 1, text.size(), out_);
          std::fflush(out_);
          ends_with_newline = text.back() == '\n';
        },
        &cancellation_);
    if (!ends_with_newline) std::fputc('\n', out_);
    std::fflush(out_);
    if (status.code() == absl::StatusCode::kCancelled) {
      WaitUntilIdle();
      std::fprintf(err_, "(stopped)\n");
    } else if (!status.ok()) {
      Note(status);
    }
  }

  // The server ends a cancelled request within a step; until then the session is busy and would
  // refuse the next turn or command.
  void WaitUntilIdle() {
    for (int i = 0; i < 500; ++i) {
      auto session = client_.GetSession(id_);
      if (!session.ok() || !session->busy()) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  void Save(const std::string& path) {
    auto bytes = client_.ExportSession(id_);
    if (!bytes.ok()) return (void)Note(bytes.status());
    if (absl::Status written = WriteFileContents(path, *bytes); !written.ok()) {
      return (void)Note(written);
    }
    std::fprintf(err_, "saved to %s\n", path.c_str());
  }

  void Load(const std::string& path) {
    auto bytes = ReadFileContents(path);
    if (!bytes.ok()) return (void)Note(bytes.status());
    auto session = client_.ImportSession(*bytes);
    if (!session.ok()) return (void)Note(session.status());
    Close();
    id_ = session->session_id();
    owned_ = true;
    std::fprintf(err_, "session %s, %lld tokens, from %s\n", id_.c_str(),
                 static_cast<long long>(session->tokens()), path.c_str());
  }

  bool Note(const absl::Status& status) {
    std::fprintf(err_, "error: %s\n", status.ToString().c_str());
    return false;
  }

  RecurClient& client_;
  const ChatOptions& options_;
  Cancellation& cancellation_;
  FILE* out_;
  FILE* err_;
  std::string id_;
  bool owned_ = false;  // created here: closed at the end
};

}  // namespace

int RunChat(RecurClient& client, const ChatOptions& options, Cancellation& cancellation,
            std::istream& in, FILE* out, FILE* err) {
  Chat chat(client, options, cancellation, out, err);
  if (!chat.Open()) return 1;
  std::string line;
  while (true) {
    if (options.prompt) {
      std::fputs("> ", out);
      std::fflush(out);
    }
    if (!std::getline(in, line) || !chat.Line(line)) break;
  }
  chat.Close();
  return 0;
}

}  // namespace recur
