#include "model/tokenizer.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace recur {

namespace {
constexpr absl::string_view kFormat = "recur-tokenizer";
constexpr int kVersion = 1;

// Calls fn(word) for each whitespace-separated word and fn(<eos>) at each '\n'.
template <typename Fn>
void ForEachWord(absl::string_view text, Fn fn) {
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      fn(WordTokenizer::kEos);
      ++i;
    } else if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else {
      size_t j = i;
      while (j < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[j]))) ++j;
      fn(text.substr(i, j - i));
      i = j;
    }
  }
}
}  // namespace

std::string Tokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::string out;
  int64_t previous = -1;
  for (int64_t id : ids) {
    out += Piece(id, previous);
    previous = id;
  }
  return out;
}

std::vector<int64_t> ByteTokenizer::Encode(absl::string_view text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

std::string ByteTokenizer::Piece(int64_t id, int64_t /*previous*/) const {
  if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
  return "";  // <eos> and anything out of range print nothing
}

std::string ByteTokenizer::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["kind"] = "byte";
  j["vocab_size"] = vocab_size();
  j["specials"] = {{"<eos>", kEos}};
  return j.dump(2);
}

WordTokenizer WordTokenizer::Build(absl::string_view text, int64_t max_size) {
  std::vector<std::string> order{std::string(kEos)};
  absl::flat_hash_map<std::string, int64_t> counts;
  ForEachWord(text, [&](absl::string_view w) {
    auto [it, inserted] = counts.try_emplace(std::string(w), 0);
    if (inserted && w != kEos) order.push_back(it->first);
    ++it->second;
  });
  if (!counts.contains(std::string(kUnk))) order.push_back(std::string(kUnk));
  if (max_size > 0 && static_cast<int64_t>(order.size()) > max_size) {
    // Keep the specials and the most frequent words, in first-appearance order.
    std::vector<std::string> by_count(order.begin(), order.end());
    std::stable_sort(by_count.begin(), by_count.end(), [&](const auto& a, const auto& b) {
      const bool sa = a == kEos || a == kUnk, sb = b == kEos || b == kUnk;
      if (sa != sb) return sa;
      return counts[a] > counts[b];
    });
    absl::flat_hash_set<std::string> keep(by_count.begin(), by_count.begin() + max_size);
    std::vector<std::string> kept;
    for (auto& w : order) {
      if (keep.contains(w)) kept.push_back(std::move(w));
    }
    order = std::move(kept);
  }
  WordTokenizer t;
  t.words_ = std::move(order);
  t.Index();
  return t;
}

absl::StatusOr<WordTokenizer> WordTokenizer::FromWords(std::vector<std::string> words) {
  WordTokenizer t;
  t.words_ = std::move(words);
  t.Index();
  for (size_t i = 1; i < t.sorted_.size(); ++i) {
    if (t.sorted_[i].first == t.sorted_[i - 1].first) {
      return absl::InvalidArgumentError(
          absl::StrCat("word vocabulary lists '", t.sorted_[i].first, "' twice"));
    }
  }
  if (t.unk_ < 0 || t.eos_ < 0) {
    return absl::InvalidArgumentError("word vocabulary must contain <unk> and <eos>");
  }
  for (const auto& w : t.words_) {
    if (w.empty() || std::any_of(w.begin(), w.end(), [](char c) {
          return absl::ascii_isspace(static_cast<unsigned char>(c));
        })) {
      return absl::InvalidArgumentError(
          absl::StrCat("word vocabulary entry '", w, "' is empty or holds whitespace"));
    }
  }
  return t;
}

void WordTokenizer::Index() {
  sorted_.clear();
  for (size_t i = 0; i < words_.size(); ++i) sorted_.emplace_back(words_[i], i);
  std::sort(sorted_.begin(), sorted_.end());
  auto find = [this](absl::string_view w) -> int64_t {
    auto it = std::lower_bound(sorted_.begin(), sorted_.end(), w,
                               [](const auto& e, absl::string_view key) { return e.first < key; });
    return it != sorted_.end() && it->first == w ? it->second : -1;
  };
  unk_ = find(kUnk);
  eos_ = find(kEos);
}

std::vector<int64_t> WordTokenizer::Encode(absl::string_view text) const {
  std::vector<int64_t> ids;
  ForEachWord(text, [&](absl::string_view w) {
    auto it = std::lower_bound(sorted_.begin(), sorted_.end(), w,
                               [](const auto& e, absl::string_view key) { return e.first < key; });
    ids.push_back(it != sorted_.end() && it->first == w ? it->second : unk_);
  });
  return ids;
}

std::string WordTokenizer::Piece(int64_t id, int64_t previous) const {
  if (id < 0 || id >= vocab_size()) return "";
  if (id == eos_) return "\n";
  const bool line_start = previous < 0 || previous == eos_;
  return line_start ? words_[id] : absl::StrCat(" ", words_[id]);
}

std::string WordTokenizer::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["kind"] = "word";
  j["vocab_size"] = vocab_size();
  j["words"] = words_;
  return j.dump(1);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromJson(absl::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json is not a JSON object");
  }
  if (j.value("format", "") != kFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: format is not '", kFormat, "'"));
  }
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"] != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unsupported version ",
                                                   j.value("version", nlohmann::json()).dump(),
                                                   " (this build reads ", kVersion, ")"));
  }
  const std::string kind = j.value("kind", "");
  std::unique_ptr<Tokenizer> tokenizer;
  if (kind == "byte") {
    tokenizer = std::make_unique<ByteTokenizer>();
  } else if (kind == "word") {
    if (!j.contains("words") || !j["words"].is_array()) {
      return absl::InvalidArgumentError("tokenizer.json: a word tokenizer needs a 'words' array");
    }
    std::vector<std::string> words;
    for (const auto& w : j["words"]) {
      if (!w.is_string())
        return absl::InvalidArgumentError("tokenizer.json: a word is not a string");
      words.push_back(w.get<std::string>());
    }
    auto word = WordTokenizer::FromWords(std::move(words));
    if (!word.ok()) return word.status();
    tokenizer = std::make_unique<WordTokenizer>(std::move(*word));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: unknown kind '", kind, "' (expected 'byte' or 'word')"));
  }
  if (j.contains("vocab_size") && j["vocab_size"] != tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.json: vocab_size ", j["vocab_size"].dump(),
                     " but the vocabulary holds ", tokenizer->vocab_size()));
  }
  return tokenizer;
}

}  // namespace recur
