#include "train/corpus.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/files.h"
#include "base/status.h"

namespace recur {

namespace fs = std::filesystem;

namespace {

// A file's bytes, or the bytes of every regular file in a directory (sorted by name; fortune's
// index files *.dat and symlinked duplicates are skipped).
absl::StatusOr<std::string> ReadTextSource(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return ReadFileContents(path);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.is_symlink() || !entry.is_regular_file() || entry.path().extension() == ".dat")
      continue;
    files.push_back(entry.path());
  }
  if (files.empty()) return absl::NotFoundError(absl::StrCat("no text files in ", path.string()));
  std::sort(files.begin(), files.end());
  std::string all;
  for (const auto& f : files) {
    RECUR_ASSIGN_OR_RETURN(std::string text, ReadFileContents(f));
    all += text;
  }
  return all;
}

torch::Tensor ToTensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kInt64);
}

absl::StatusOr<Corpus> WordCorpus(const std::string& name, const fs::path& dir,
                                  const std::string& prefix, const std::string& suffix) {
  std::string texts[3];
  const char* splits[3] = {"train", "valid", "test"};
  for (int i = 0; i < 3; ++i) {
    RECUR_ASSIGN_OR_RETURN(texts[i],
                           ReadFileContents(dir / absl::StrCat(prefix, splits[i], suffix)));
  }
  auto tokenizer = std::make_shared<WordTokenizer>(WordTokenizer::Build(texts[0]));
  Corpus corpus;
  corpus.name = name;
  corpus.train = ToTensor(tokenizer->Encode(texts[0]));
  corpus.valid = ToTensor(tokenizer->Encode(texts[1]));  // unseen words become <unk>
  corpus.test = ToTensor(tokenizer->Encode(texts[2]));
  corpus.tokenizer = std::move(tokenizer);
  if (corpus.train.numel() < 2 || corpus.valid.numel() < 2 || corpus.test.numel() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " data in ", dir.string(), " is too small"));
  }
  return corpus;
}

}  // namespace

Corpus ByteCorpus(const std::string& name, const std::string& bytes) {
  ByteTokenizer tokenizer;
  auto ids = ToTensor(tokenizer.Encode(bytes));
  const int64_t n = ids.numel();
  const int64_t train_end = n * 90 / 100, valid_end = n * 95 / 100;
  Corpus corpus;
  corpus.name = name;
  corpus.tokenizer = std::make_shared<ByteTokenizer>();
  corpus.train = ids.slice(0, 0, train_end);
  corpus.valid = ids.slice(0, train_end, valid_end);
  corpus.test = ids.slice(0, valid_end, n);
  corpus.byte_level = true;
  return corpus;
}

absl::StatusOr<Corpus> LoadCorpus(const std::string& dataset, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("no data path given (--data_dir or --data)");
  if (dataset == "ptb") return WordCorpus("ptb", path, "ptb.", ".txt");
  if (dataset == "wikitext2") return WordCorpus("wikitext2", path, "wiki.", ".tokens");
  if (dataset == "enwik8" || dataset == "text") {
    fs::path source(path);
    std::error_code ec;
    if (dataset == "enwik8" && fs::is_directory(source, ec)) {
      // The shared data directory holds a prefix of enwik8 under a descriptive name.
      for (const auto& entry : fs::directory_iterator(source, ec)) {
        if (entry.path().filename().string().rfind("enwik8", 0) == 0) source = entry.path();
      }
    }
    RECUR_ASSIGN_OR_RETURN(std::string bytes, ReadTextSource(source));
    if (bytes.size() < 1000) {
      return absl::InvalidArgumentError(absl::StrCat("text data in ", source.string(), " is ",
                                                     bytes.size(), " bytes; need at least 1000"));
    }
    return ByteCorpus(dataset, bytes);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dataset '", dataset, "' (expected ptb, wikitext2, enwik8 or text)"));
}

}  // namespace recur
