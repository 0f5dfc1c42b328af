#include "model/token_set.h"

#include <algorithm>

namespace recur {

TokenSet::TokenSet(int64_t vocab_size)
    : vocab_size_(vocab_size), words_(static_cast<size_t>((vocab_size + 63) / 64), 0) {}

bool TokenSet::Insert(int64_t id) {
  uint64_t& word = words_[id >> 6];
  const uint64_t bit = uint64_t{1} << (id & 63);
  if (word & bit) return false;
  word |= bit;
  ++size_;
  return true;
}

void TokenSet::Clear() {
  std::fill(words_.begin(), words_.end(), 0);
  size_ = 0;
}

std::vector<uint8_t> TokenSet::ToBytes() const {
  std::vector<uint8_t> bytes(static_cast<size_t>((vocab_size_ + 7) / 8));
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = (words_[i / 8] >> (8 * (i % 8))) & 0xff;
  return bytes;
}

bool TokenSet::FromBytes(absl::Span<const uint8_t> bytes) {
  if (static_cast<int64_t>(bytes.size()) != (vocab_size_ + 7) / 8) return false;
  // Bits past the vocabulary in the last byte must be clear.
  if (vocab_size_ % 8 != 0 && (bytes.back() >> (vocab_size_ % 8)) != 0) return false;
  std::vector<uint64_t> words(words_.size(), 0);
  int64_t size = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    words[i / 8] |= uint64_t{bytes[i]} << (8 * (i % 8));
    size += __builtin_popcount(bytes[i]);
  }
  words_ = std::move(words);
  size_ = size;
  return true;
}

}  // namespace recur
