#ifndef RECUR_MODEL_TOKEN_SET_H_
#define RECUR_MODEL_TOKEN_SET_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace recur {

// A set of token ids of one vocabulary, as a bitmap: ceil(vocab / 64) words whatever it holds, so
// a session's repetition-penalty history has a constant size. Bit i % 64 of word i / 64 stands
// for token i.
class TokenSet {
 public:
  TokenSet() = default;
  explicit TokenSet(int64_t vocab_size);

  // Adds `id` (0 ≤ id < vocab_size); false if it was there already.
  bool Insert(int64_t id);
  bool Contains(int64_t id) const { return (words_[id >> 6] >> (id & 63)) & 1; }
  void Clear();

  int64_t vocab_size() const { return vocab_size_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The memory the set holds: the bitmap.
  int64_t Bytes() const { return static_cast<int64_t>(words_.size() * sizeof(uint64_t)); }
  static int64_t BytesFor(int64_t vocab_size) { return (vocab_size + 63) / 64 * 8; }

  // Calls f(id) for every member, in increasing id order.
  template <typename F>
  void ForEach(F f) const {
    for (size_t w = 0; w < words_.size(); ++w) {
      for (uint64_t bits = words_[w]; bits != 0; bits &= bits - 1) {
        f(static_cast<int64_t>(w * 64 + __builtin_ctzll(bits)));
      }
    }
  }

  // The bitmap as bytes, little-endian (bit i % 8 of byte i / 8 is token i): ceil(vocab / 8).
  std::vector<uint8_t> ToBytes() const;
  // The inverse of ToBytes; false (and the set unchanged) when `bytes` has the wrong length or
  // marks ids at or beyond the vocabulary.
  bool FromBytes(absl::Span<const uint8_t> bytes);

  bool operator==(const TokenSet& other) const {
    return vocab_size_ == other.vocab_size_ && words_ == other.words_;
  }

 private:
  int64_t vocab_size_ = 0;
  int64_t size_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace recur

#endif  // RECUR_MODEL_TOKEN_SET_H_
