#include "server/text_stream.h"

#include "gtest/gtest.h"
#include "model/tokenizer.h"

namespace recur {
namespace {

// Feeds each byte of `text` as one byte-level token; returns what was sent and whether it stopped.
std::pair<std::string, bool> Feed(const std::string& text, std::vector<std::string> stop) {
  ByteTokenizer tokenizer;
  TextStream stream(tokenizer, std::move(stop), -1);
  std::string sent;
  for (unsigned char c : text) {
    auto out = stream.Push(c);
    sent += out.text;
    if (out.stopped) return {sent, true};
  }
  return {sent + stream.Finish(), false};
}

TEST(TextStreamTest, WithoutStopsEverythingIsSent) {
  EXPECT_EQ(Feed("hello world", {}), std::make_pair(std::string("hello world"), false));
}

TEST(TextStreamTest, StopSequenceIsCutAndNeverSentInPart) {
  EXPECT_EQ(Feed("one\n\ntwo", {"\n\n"}), std::make_pair(std::string("one"), true));
  EXPECT_EQ(Feed("abcSTOPdef", {"STOP", "cS"}),
            std::make_pair(std::string("ab"), true));  // the earliest wins
  // A near miss is sent once it can no longer become the stop sequence.
  EXPECT_EQ(Feed("STOSTOP", {"STOP"}), std::make_pair(std::string("STO"), true));
  EXPECT_EQ(Feed("ST", {"STOP"}), std::make_pair(std::string("ST"), false));
}

TEST(TextStreamTest, HeldTextIsReleasedAsSoonAsItCannotStartAStop) {
  ByteTokenizer tokenizer;
  TextStream stream(tokenizer, {"xyz"}, -1);
  EXPECT_EQ(stream.Push('a').text, "a");
  EXPECT_EQ(stream.Push('x').text, "");  // could be the start of "xyz"
  EXPECT_EQ(stream.Push('y').text, "");
  EXPECT_EQ(stream.Push('a').text, "xya");
}

TEST(TextStreamTest, MultiByteCharactersArriveWhole) {
  ByteTokenizer tokenizer;
  TextStream stream(tokenizer, {}, -1);
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(stream.Push(0xE2).text, "");
  EXPECT_EQ(stream.Push(0x82).text, "");
  EXPECT_EQ(stream.Push(0xAC).text, euro);
  // A stop sequence made of a multi-byte character.
  EXPECT_EQ(Feed("price: 5" + euro + " only", {euro}),
            std::make_pair(std::string("price: 5"), true));
  // An invalid byte becomes U+FFFD rather than breaking the stream.
  EXPECT_EQ(Feed("a\xFF"
                 "b",
                 {}),
            std::make_pair(std::string("a\xEF\xBF\xBD"
                                       "b"),
                           false));
}

}  // namespace
}  // namespace recur
