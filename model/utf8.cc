#include "model/utf8.h"

#include <cstdint>

namespace recur {

namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the valid UTF-8 sequence starting at s[i], 0 if the bytes there are invalid, or -1 if
// they are a valid but incomplete prefix that runs off the end.
int SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&s](size_t j) { return static_cast<uint8_t>(s[j]); };
  const uint8_t b0 = byte(i);
  if (b0 < 0x80) return 1;
  int length;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlongs
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;  // no overlongs
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  for (int k = 1; k < length; ++k) {
    if (i + k >= s.size()) return -1;
    const uint8_t b = byte(i + k);
    const uint8_t min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
    if (b < min || b > max) return 0;
  }
  return length;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const int n = SequenceLength(text, i);
    if (n <= 0) return false;
    i += n;
  }
  return true;
}

std::string Utf8StreamDecoder::Push(absl::string_view bytes) {
  pending_.append(bytes.data(), bytes.size());
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int n = SequenceLength(pending_, i);
    if (n == -1) break;  // wait for the rest of the character
    if (n == 0) {
      out.append(kReplacement.data(), kReplacement.size());
      // Skip the maximal invalid subpart: the lead byte and any continuation bytes it validly
      // began.
      size_t j = i + 1;
      while (j < pending_.size() &&
             SequenceLength(absl::string_view(pending_).substr(i, j - i + 1), 0) == -1)
        ++j;
      i = j;
      continue;
    }
    out.append(pending_, i, n);
    i += n;
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8StreamDecoder::Flush() {
  std::string out = Push("");
  if (!pending_.empty()) {
    out.append(kReplacement.data(), kReplacement.size());
    pending_.clear();
  }
  return out;
}

}  // namespace recur
