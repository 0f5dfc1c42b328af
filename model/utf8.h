#ifndef RECUR_MODEL_UTF8_H_
#define RECUR_MODEL_UTF8_H_

#include <string>

#include "absl/strings/string_view.h"

namespace recur {

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// Turns a stream of byte pieces (as a byte-level model emits them) into text pieces that are always
// complete UTF-8: a multi-byte character split over tokens is held back until it is whole. Bytes
// that can never become valid UTF-8 are replaced by U+FFFD, one per maximal invalid subpart (the
// WHATWG/Unicode convention), so every emitted piece is valid UTF-8.
class Utf8StreamDecoder {
 public:
  // Appends bytes; returns the text that is now complete (possibly empty).
  std::string Push(absl::string_view bytes);
  // Ends the stream: an incomplete trailing sequence becomes U+FFFD.
  std::string Flush();

 private:
  std::string pending_;
};

}  // namespace recur

#endif  // RECUR_MODEL_UTF8_H_
