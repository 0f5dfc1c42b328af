#ifndef RECUR_CLIENT_CHAT_H_
#define RECUR_CLIENT_CHAT_H_

// `recur chat`: an interactive loop over one session. Each line read is a turn: it is sent with a
// newline after it, as the session's new text, and the reply streams back. The session's state
// holds the whole conversation, so a turn sends only its own line. Commands:
//   /reset        a fresh session (the old one is closed)
//   /save FILE    the session's state to FILE (ExportSession)
//   /load FILE    continue from a saved state (ImportSession; the old session is closed)
//   /help, /quit  (end of input quits too)
// A reply is stopped by Cancellation::Cancel (recur's main wires Ctrl-C to it): the program goes
// on, and the session keeps the text streamed so far.

#include <cstdio>
#include <istream>
#include <string>

#include "client/recur_client.h"

namespace recur {

struct ChatOptions {
  v1::GenerateRequest turn;  // sampling, max_tokens and stop for every turn; prompt ignored
  std::string session_id;    // continue this session (kept at the end); empty: a new one (closed)
  bool escape = true;        // control characters shown escaped (client/terminal_text.h)
  bool prompt = true;        // write "> " before each line (when reading a terminal)
};

// Runs the loop over `in`, writing replies to `out` and notes (the session id, errors) to `err`;
// returns the exit code.
int RunChat(RecurClient& client, const ChatOptions& options, Cancellation& cancellation,
            std::istream& in, FILE* out, FILE* err);

}  // namespace recur

#endif  // RECUR_CLIENT_CHAT_H_
