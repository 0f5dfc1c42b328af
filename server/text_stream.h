#ifndef RECUR_SERVER_TEXT_STREAM_H_
#define RECUR_SERVER_TEXT_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/utf8.h"

namespace recur {

// Turns generated token ids into the text a client receives: tokenizer pieces, made whole UTF-8
// (a character split over byte tokens is held back until complete), with stop sequences cut out.
// Text that could be the start of a stop sequence is held back until it is known not to be one,
// so a stop sequence never reaches the client, even in part.
class TextStream {
 public:
  // `previous`: the token before the first generated one (-1 if none), for the tokenizer's spacing.
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop, int64_t previous);

  struct Output {
    std::string text;      // ready to send (possibly empty)
    bool stopped = false;  // a stop sequence appeared: send `text` and end
  };
  Output Push(int64_t token);

  // The text still held back, at the end of generation (not called after a stop).
  std::string Finish();

 private:
  // Moves what can no longer be part of a stop sequence from held_ to `out`.
  Output Release();

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_;
  int64_t previous_;
  Utf8StreamDecoder utf8_;
  std::string held_;
};

}  // namespace recur

#endif  // RECUR_SERVER_TEXT_STREAM_H_
