#ifndef RECUR_CLIENT_TERMINAL_TEXT_H_
#define RECUR_CLIENT_TERMINAL_TEXT_H_

// Model output shown on a terminal: control characters (ESC and the other C0 codes but tab and
// newline, so a carriage return too; DEL; the C1 codes U+0080..U+009F) are written as visible
// escapes (`\x1b`, `\u009b`), so generated text cannot move the cursor back over what was written,
// recolour or retitle the terminal. `--raw` skips this.

#include <string>

#include "absl/strings/string_view.h"

namespace recur {

// `text` is UTF-8 (what the server sends); invalid bytes pass through unchanged.
std::string EscapeForTerminal(absl::string_view text);

}  // namespace recur

#endif  // RECUR_CLIENT_TERMINAL_TEXT_H_
