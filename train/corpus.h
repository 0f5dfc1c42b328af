#ifndef RECUR_TRAIN_CORPUS_H_
#define RECUR_TRAIN_CORPUS_H_

// Training data: a tokenizer and the train/valid/test splits as 1-D int64 token streams.
//   ptb        ptb.{train,valid,test}.txt, word level, vocabulary from train, <eos> per line
//   wikitext2  wiki.{train,valid,test}.tokens, the same
//   enwik8     one file, byte level, split 90/5/5 in order
//   text       one file or a directory of files (concatenated in name order), byte level, 90/5/5

#include <torch/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace recur {

struct Corpus {
  std::string name;  // the dataset kind
  std::shared_ptr<const Tokenizer> tokenizer;
  torch::Tensor train, valid, test;  // int64 [tokens]
  bool byte_level = false;           // report bits per character rather than perplexity
};

// `dataset`: ptb | wikitext2 | enwik8 | text. `path`: the data directory (ptb, wikitext2) or the
// file / directory (enwik8, text). Errors name the missing or malformed file.
absl::StatusOr<Corpus> LoadCorpus(const std::string& dataset, const std::string& path);

// Splits one byte stream 90/5/5 in order.
Corpus ByteCorpus(const std::string& name, const std::string& bytes);

}  // namespace recur

#endif  // RECUR_TRAIN_CORPUS_H_
