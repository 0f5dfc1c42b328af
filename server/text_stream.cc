#include "server/text_stream.h"

#include <algorithm>
#include <utility>

namespace recur {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop, int64_t previous)
    : tokenizer_(tokenizer), previous_(previous) {
  for (auto& s : stop) {
    if (!s.empty()) stop_.push_back(std::move(s));
  }
}

TextStream::Output TextStream::Push(int64_t token) {
  held_ += utf8_.Push(tokenizer_.Piece(token, previous_));
  previous_ = token;
  return Release();
}

TextStream::Output TextStream::Release() {
  Output out;
  // The earliest complete stop sequence ends the text.
  size_t stop_at = std::string::npos;
  for (const auto& s : stop_) stop_at = std::min(stop_at, held_.find(s));
  if (stop_at != std::string::npos) {
    out.text = held_.substr(0, stop_at);
    out.stopped = true;
    held_.clear();
    return out;
  }
  // Keep the longest tail of held_ that is a proper prefix of some stop sequence.
  size_t keep = 0;
  for (const auto& s : stop_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  // Never split a UTF-8 character: widen the kept tail to a character boundary.
  while (keep < held_.size() &&
         (static_cast<unsigned char>(held_[held_.size() - keep]) & 0xC0) == 0x80)
    ++keep;
  out.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string TextStream::Finish() {
  std::string rest = std::move(held_) + utf8_.Flush();
  held_.clear();
  return rest;
}

}  // namespace recur
