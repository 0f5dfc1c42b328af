#include "server/completion_output.h"

#include <utility>

namespace recur {

namespace {

using Json = nlohmann::json;

Json EmptyLogprobs() {
  return {{"tokens", Json::array()},
          {"token_logprobs", Json::array()},
          {"top_logprobs", Json::array()},
          {"text_offset", Json::array()}};
}

}  // namespace

void AppendLogprobs(const Json& more, Json& all) {
  if (more.is_null()) return;
  if (all.is_null()) {
    all = more;
    return;
  }
  for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
    for (const Json& item : more[key]) all[key].push_back(item);
  }
}

// Choice `index`'s sink. Its pieces' texts are read after the token before them, which only the
// engine thread tracks, as it calls the sink.
class CompletionOutput::ChoiceSink : public GenerationSink {
 public:
  ChoiceSink(std::shared_ptr<CompletionOutput> output, int index)
      : output_(std::move(output)),
        index_(index),
        offset_(output_->echo_ ? static_cast<int64_t>(output_->echo_->prompt.size()) : 0) {}

  void OnText(std::string text, std::vector<int64_t>) override {
    absl::MutexLock lock(&output_->mu_);
    Choice& choice = output_->choices_[index_];
    choice.text += text;
    choice.awaiting_prompt = false;
  }

  void OnLogprobs(const StepLogprobs& step) override {
    Json entry = EmptyLogprobs();
    Add(step, entry);
    absl::MutexLock lock(&output_->mu_);
    AppendLogprobs(entry, output_->choices_[index_].logprobs);
  }

  // With echo only: the prompt's tokens lead the choice's arrays.
  void OnPromptLogprobs(const std::vector<StepLogprobs>& logprobs, int64_t previous) override {
    if (!output_->echo_) return;
    Json arrays = EmptyLogprobs();
    const int64_t text_start = offset_;  // the generated text's offsets follow the prompt's
    offset_ = 0;
    if (static_cast<int64_t>(logprobs.size()) + 1 == output_->echo_->prompt_tokens &&
        previous >= 0) {
      // The prompt's first token, with nothing before it to be scored under.
      const std::string text = output_->tokenizer_.Piece(previous, -1);
      arrays["tokens"].push_back(text);
      arrays["token_logprobs"].push_back(nullptr);
      arrays["top_logprobs"].push_back(nullptr);
      arrays["text_offset"].push_back(offset_);
      offset_ += static_cast<int64_t>(text.size());
    }
    previous_ = previous;
    for (const StepLogprobs& step : logprobs) Add(step, arrays);
    offset_ = text_start;
    absl::MutexLock lock(&output_->mu_);
    Choice& choice = output_->choices_[index_];
    choice.logprobs = std::move(arrays);
    choice.awaiting_prompt = false;
  }

  void OnFinish(FinishReason reason, const GenerationUsage& usage,
                const absl::Status& error) override {
    absl::MutexLock lock(&output_->mu_);
    Choice& choice = output_->choices_[index_];
    choice.finished = true;
    choice.awaiting_prompt = false;
    choice.reason = reason;
    choice.usage = usage;
    choice.error = error;
  }

 private:
  // One position: its token's text, log-probability, alternatives and offset.
  void Add(const StepLogprobs& step, Json& arrays) {
    Json top = Json::object();
    for (const TokenLogprob& t : step.top) top[Text(t.token)] = t.logprob;
    const std::string text = Text(step.chosen.token);
    arrays["tokens"].push_back(text);
    arrays["token_logprobs"].push_back(step.chosen.logprob);
    arrays["top_logprobs"].push_back(std::move(top));
    arrays["text_offset"].push_back(offset_);
    offset_ += static_cast<int64_t>(text.size());
    previous_ = step.chosen.token;
  }

  std::string Text(int64_t token) const { return output_->tokenizer_.Piece(token, previous_); }

  const std::shared_ptr<CompletionOutput> output_;
  const int index_;
  int64_t previous_ = -1;
  int64_t offset_;  // bytes of the choice's text so far
};

CompletionOutput::CompletionOutput(const Tokenizer& tokenizer, int choices,
                                   std::optional<Echo> echo)
    : tokenizer_(tokenizer), echo_(std::move(echo)), choices_(choices) {
  if (!echo_) return;
  for (Choice& choice : choices_) {
    choice.text = echo_->prompt;
    choice.awaiting_prompt = echo_->logprobs;
  }
}

std::shared_ptr<GenerationSink> CompletionOutput::Sink(int index) {
  return std::make_shared<ChoiceSink>(shared_from_this(), index);
}

bool CompletionOutput::HasNews(const Choice& choice) {
  if (choice.finished) return !choice.reported;
  return !choice.awaiting_prompt && (!choice.text.empty() || !choice.logprobs.is_null());
}

bool CompletionOutput::AnyNews() const {
  for (const Choice& choice : choices_) {
    if (HasNews(choice)) return true;
  }
  return false;
}

std::vector<CompletionOutput::Piece> CompletionOutput::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(this, &CompletionOutput::AnyNews), timeout);
  std::vector<Piece> pieces;
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& choice = choices_[i];
    if (!HasNews(choice)) continue;
    Piece piece;
    piece.index = static_cast<int>(i);
    piece.text = std::exchange(choice.text, {});
    piece.logprobs = std::exchange(choice.logprobs, nullptr);
    if (choice.finished) {
      piece.finished = choice.reported = true;
      ++reported_;
      piece.reason = choice.reason;
      piece.usage = choice.usage;
      piece.error = choice.error;
    }
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

std::vector<CompletionOutput::Piece> CompletionOutput::Collect() {
  std::vector<Piece> all;
  {
    absl::MutexLock lock(&mu_);
    all.resize(choices_.size());
  }
  for (size_t i = 0; i < all.size(); ++i) all[i].index = static_cast<int>(i);
  while (!finished()) {
    for (Piece& piece : Next(absl::InfiniteDuration())) {
      Piece& into = all[piece.index];
      into.text += piece.text;
      AppendLogprobs(piece.logprobs, into.logprobs);
      if (!piece.finished) continue;
      into.finished = true;
      into.reason = piece.reason;
      into.usage = piece.usage;
      into.error = piece.error;
    }
  }
  return all;
}

bool CompletionOutput::finished() {
  absl::MutexLock lock(&mu_);
  return reported_ == static_cast<int>(choices_.size());
}

}  // namespace recur
