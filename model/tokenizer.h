#ifndef RECUR_MODEL_TOKENIZER_H_
#define RECUR_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace recur {

// Text ↔ token ids. Two kinds:
//   "byte": ids 0–255 are the bytes themselves, 256 is <eos>. Any byte string round-trips exactly,
//           invalid UTF-8 included (validation is the caller's job, e.g. the server's).
//   "word": whitespace-separated words from a vocabulary built on a training file, <unk> for
//           anything else and <eos> for each line end (as PTB and WikiText-2 are read). Decoding
//           joins words with single spaces, so whitespace is normalised.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual absl::string_view kind() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eos_id() const = 0;
  // Whether generating `id` ends the document, so generation stops there: a byte model's <eos>
  // does; a word model's <eos> marks a line end, which is text (a newline) and goes on.
  virtual bool EndsDocument(int64_t id) const = 0;

  virtual std::vector<int64_t> Encode(absl::string_view text) const = 0;

  // The bytes of token `id` when it follows token `previous` (-1 at the start of a text).
  // Concatenating pieces gives Decode; a streaming server sends them one by one.
  virtual std::string Piece(int64_t id, int64_t previous) const = 0;

  std::string Decode(const std::vector<int64_t>& ids) const;

  // The contents of tokenizer.json.
  virtual std::string ToJson() const = 0;
};

// Reads tokenizer.json; fails with a message that names what is wrong.
absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromJson(absl::string_view json);

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kEos = 256;

  absl::string_view kind() const override { return "byte"; }
  int64_t vocab_size() const override { return 257; }
  int64_t eos_id() const override { return kEos; }
  bool EndsDocument(int64_t id) const override { return id == kEos; }
  std::vector<int64_t> Encode(absl::string_view text) const override;
  std::string Piece(int64_t id, int64_t previous) const override;
  std::string ToJson() const override;
};

class WordTokenizer : public Tokenizer {
 public:
  static constexpr absl::string_view kUnk = "<unk>";
  static constexpr absl::string_view kEos = "<eos>";

  // The vocabulary of a training text: <eos> first, then words in order of first appearance
  // (<unk> included, added if the text lacks it). `max_size` > 0 keeps only the most frequent.
  static WordTokenizer Build(absl::string_view training_text, int64_t max_size = 0);
  // From an explicit list; it must hold <unk> and <eos> and no duplicates.
  static absl::StatusOr<WordTokenizer> FromWords(std::vector<std::string> words);

  absl::string_view kind() const override { return "word"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(words_.size()); }
  int64_t eos_id() const override { return eos_; }
  bool EndsDocument(int64_t) const override { return false; }
  int64_t unk_id() const { return unk_; }
  const std::vector<std::string>& words() const { return words_; }

  std::vector<int64_t> Encode(absl::string_view text) const override;
  std::string Piece(int64_t id, int64_t previous) const override;
  std::string ToJson() const override;

 private:
  WordTokenizer() = default;
  void Index();

  std::vector<std::string> words_;
  // Sorted (word, id) pairs for lookup without a hash map in the header.
  std::vector<std::pair<std::string, int64_t>> sorted_;
  int64_t unk_ = -1;
  int64_t eos_ = -1;
};

}  // namespace recur

#endif  // RECUR_MODEL_TOKENIZER_H_
