#ifndef RECUR_SERVER_COMPLETION_OUTPUT_H_
#define RECUR_SERVER_COMPLETION_OUTPUT_H_

// One HTTP completion's output, from the engine thread (a GenerationSink per choice) to the
// connection's thread (Next), in OpenAI's legacy completions shape: each choice's text, and with
// logprobs the parallel arrays {tokens, token_logprobs, top_logprobs, text_offset} (alternatives
// as {text: logprob}, offsets in bytes of the choice's text). With echo, a choice's text starts
// with the prompt and, when logprobs are asked, its arrays with the prompt's tokens: the first
// token of a text with nothing before it has a null logprob and null alternatives, as OpenAI's.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/engine.h"

namespace recur {

class CompletionOutput : public std::enable_shared_from_this<CompletionOutput> {
 public:
  // One choice's output since the last Next.
  struct Piece {
    int index = 0;
    std::string text;
    nlohmann::json logprobs;  // null when not asked, or nothing new
    bool finished = false;    // the choice ended: reason, usage and error are set
    FinishReason reason = FinishReason::kLength;
    GenerationUsage usage;
    absl::Status error;
  };

  struct Echo {
    std::string prompt;         // as sent
    int64_t prompt_tokens = 0;  // as encoded
    bool logprobs = false;      // the request asked for logprobs: the prompt's come too
  };

  // `echo`, when set, starts each choice with the prompt. Make it with std::make_shared.
  CompletionOutput(const Tokenizer& tokenizer, int choices, std::optional<Echo> echo);

  // The engine's sink for choice `index`, 0 .. choices - 1.
  std::shared_ptr<GenerationSink> Sink(int index);

  // The news of every choice that has some, once one has (text, or its end) or `timeout` passed
  // (then possibly none). A choice's end is returned once.
  std::vector<Piece> Next(absl::Duration timeout);
  // Every choice's whole output, once all have ended; index i is choice i.
  std::vector<Piece> Collect();
  bool finished();  // every choice's end has been returned by Next

 private:
  class ChoiceSink;
  struct Choice {
    std::string text;
    nlohmann::json logprobs;
    // With echo and logprobs: the prompt's text is held back until its logprobs come.
    bool awaiting_prompt = false;
    bool finished = false;
    bool reported = false;  // its end was returned by Next
    FinishReason reason = FinishReason::kLength;
    GenerationUsage usage;
    absl::Status error;
  };

  bool AnyNews() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  static bool HasNews(const Choice& choice);

  const Tokenizer& tokenizer_;
  const std::optional<Echo> echo_;
  absl::Mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  int reported_ ABSL_GUARDED_BY(mu_) = 0;
};

// Appends the parallel arrays of `more` to those of `all` (null: nothing yet).
void AppendLogprobs(const nlohmann::json& more, nlohmann::json& all);

}  // namespace recur

#endif  // RECUR_SERVER_COMPLETION_OUTPUT_H_
