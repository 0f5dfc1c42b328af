#include "model/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/utf8.h"

namespace recur {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kMixed = "héllo, мир! 日本語 🚀 end";

TEST(ByteTokenizerTest, RoundTripsMultiByteUtf8) {
  ByteTokenizer t;
  auto ids = t.Encode(kMixed);
  EXPECT_EQ(ids.size(), kMixed.size());
  EXPECT_EQ(t.Decode(ids), kMixed);
  for (int64_t id : ids) EXPECT_LT(id, 256);
}

TEST(ByteTokenizerTest, RoundTripsInvalidUtf8Exactly) {
  ByteTokenizer t;
  const std::string bad = "a\xff\xfe\xc3(b\x80";
  EXPECT_EQ(t.Decode(t.Encode(bad)), bad);
}

TEST(ByteTokenizerTest, EosPrintsNothing) {
  ByteTokenizer t;
  EXPECT_EQ(t.Decode({'h', 'i', ByteTokenizer::kEos}), "hi");
  EXPECT_EQ(t.vocab_size(), 257);
}

TEST(WordTokenizerTest, BuildsVocabularyWithEosAndUnk) {
  auto t = WordTokenizer::Build(" the cat sat \n the dog \n");
  EXPECT_THAT(t.words(), ElementsAre("<eos>", "the", "cat", "sat", "dog", "<unk>"));
  EXPECT_THAT(t.Encode("the dog sat\n"), ElementsAre(1, 4, 3, 0));
  EXPECT_THAT(t.Encode("the bird"), ElementsAre(1, t.unk_id()));
}

TEST(WordTokenizerTest, RoundTripsNormalisedText) {
  auto t = WordTokenizer::Build("a b c\nd e\n");
  EXPECT_EQ(t.Decode(t.Encode("a b c\nd e\n")), "a b c\nd e\n");
  EXPECT_EQ(t.Decode(t.Encode("  a\t b  \n")), "a b\n");
}

TEST(WordTokenizerTest, MultiByteWordsRoundTrip) {
  auto t = WordTokenizer::Build("héllo мир 日本語 🚀\n");
  EXPECT_EQ(t.Decode(t.Encode("мир 🚀 héllo\n")), "мир 🚀 héllo\n");
}

TEST(WordTokenizerTest, MaxSizeKeepsMostFrequentAndSpecials) {
  auto t = WordTokenizer::Build("a a a b b c\n", 4);
  EXPECT_EQ(t.vocab_size(), 4);
  EXPECT_THAT(t.Encode("a b c"), ElementsAre(1, 2, t.unk_id()));
}

TEST(WordTokenizerTest, ExistingUnkInTextIsKeptOnce) {
  auto t = WordTokenizer::Build("a <unk> b\n");
  EXPECT_EQ(t.vocab_size(), 4);
  EXPECT_EQ(t.Encode("<unk>")[0], t.unk_id());
}

TEST(TokenizerJsonTest, RoundTripsBothKinds) {
  auto word = WordTokenizer::Build("x y z\n");
  auto restored = TokenizerFromJson(word.ToJson());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->kind(), "word");
  EXPECT_EQ((*restored)->Encode("z y x\n"), word.Encode("z y x\n"));

  auto byte = TokenizerFromJson(ByteTokenizer().ToJson());
  ASSERT_TRUE(byte.ok());
  EXPECT_EQ((*byte)->vocab_size(), 257);
}

TEST(TokenizerJsonTest, BadJsonNamesTheProblem) {
  EXPECT_THAT(TokenizerFromJson("[]").status().message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(TokenizerFromJson(R"({"format":"recur-tokenizer","version":7,"kind":"byte"})")
                  .status()
                  .message(),
              HasSubstr("unsupported version 7"));
  EXPECT_THAT(TokenizerFromJson(R"({"format":"recur-tokenizer","version":1,"kind":"bpe"})")
                  .status()
                  .message(),
              HasSubstr("unknown kind 'bpe'"));
  EXPECT_THAT(
      TokenizerFromJson(
          R"({"format":"recur-tokenizer","version":1,"kind":"word","words":["a","a","<unk>","<eos>"]})")
          .status()
          .message(),
      HasSubstr("'a' twice"));
  EXPECT_THAT(
      TokenizerFromJson(R"({"format":"recur-tokenizer","version":1,"kind":"word","words":["a"]})")
          .status()
          .message(),
      HasSubstr("<unk> and <eos>"));
}

TEST(Utf8Test, ValidatesWellFormedness) {
  EXPECT_TRUE(IsValidUtf8(kMixed));
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe6\x97"));          // truncated
}

TEST(Utf8StreamDecoderTest, HoldsBackSplitCharactersUntilComplete) {
  ByteTokenizer t;
  Utf8StreamDecoder decoder;
  std::string streamed;
  for (int64_t id : t.Encode(kMixed)) {
    std::string piece = decoder.Push(t.Piece(id, -1));
    EXPECT_TRUE(IsValidUtf8(piece)) << "piece is not complete UTF-8";
    streamed += piece;
  }
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, kMixed);
}

TEST(Utf8StreamDecoderTest, EmitsNothingForAPartialCharacter) {
  Utf8StreamDecoder decoder;
  EXPECT_EQ(decoder.Push("\xf0\x9f"), "");
  EXPECT_EQ(decoder.Push("\x9a"), "");
  EXPECT_EQ(decoder.Push("\x80!"), "🚀!");
}

TEST(Utf8StreamDecoderTest, ReplacesInvalidBytes) {
  Utf8StreamDecoder decoder;
  // A lone continuation byte, a bad lead byte, a truncated sequence interrupted by ASCII.
  EXPECT_EQ(decoder.Push("a\x80"
                         "b\xff"
                         "c\xe6\x97"
                         "d"),
            "a\uFFFD"
            "b\uFFFD"
            "c\uFFFD"
            "d");
  EXPECT_EQ(decoder.Push("\xe6\x97"), "");
  EXPECT_EQ(decoder.Flush(), "\uFFFD");
}

}  // namespace
}  // namespace recur
