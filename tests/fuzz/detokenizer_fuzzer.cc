// The streaming detokeniser (server/text_stream.h) on arbitrary token sequences and stop
// sequences: every piece it sends is valid UTF-8, never a crash.

#include "model/tokenizer.h"
#include "model/utf8.h"
#include "server/text_stream.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  static const recur::ByteTokenizer bytes;
  static const auto words =
      recur::WordTokenizer::FromWords({"<eos>", "<unk>", "the", "cat", "sat", "é", "🙂"}).value();
  const recur::Tokenizer& tokenizer =
      input.ConsumeBool() ? static_cast<const recur::Tokenizer&>(bytes) : words;
  std::vector<std::string> stop;
  const int stops = input.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < stops; ++i) {
    std::string s = input.ConsumeRandomLengthString(8);
    if (!s.empty() && recur::IsValidUtf8(s)) stop.push_back(std::move(s));
  }
  recur::TextStream text(tokenizer, stop,
                         input.ConsumeIntegralInRange<int64_t>(-1, tokenizer.vocab_size() - 1));
  while (input.remaining_bytes() > 0) {
    const int64_t token = input.ConsumeIntegralInRange<int64_t>(0, tokenizer.vocab_size() - 1);
    if (tokenizer.EndsDocument(token)) continue;
    auto out = text.Push(token);
    recur::fuzz::Require(recur::IsValidUtf8(out.text));
    if (out.stopped) return 0;
  }
  recur::fuzz::Require(recur::IsValidUtf8(text.Finish()));
  return 0;
}
