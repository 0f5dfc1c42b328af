#include "model/token_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace recur {
namespace {

TEST(TokenSetTest, BehavesAsASetOfIds) {
  TokenSet set(130);
  std::set<int64_t> reference;
  std::mt19937 gen(4);
  for (int i = 0; i < 200; ++i) {
    const int64_t id = gen() % 130;
    EXPECT_EQ(set.Insert(id), reference.insert(id).second);
  }
  EXPECT_EQ(set.size(), static_cast<int64_t>(reference.size()));
  for (int64_t id = 0; id < 130; ++id) EXPECT_EQ(set.Contains(id), reference.count(id) == 1);
  std::vector<int64_t> listed;
  set.ForEach([&](int64_t id) { listed.push_back(id); });
  EXPECT_EQ(listed, std::vector<int64_t>(reference.begin(), reference.end()));
  set.Clear();
  EXPECT_TRUE(set.empty());
  EXPECT_FALSE(set.Contains(listed.front()));
}

TEST(TokenSetTest, SizeIsTheBitmapWhateverItHolds) {
  TokenSet set(33'278);
  EXPECT_EQ(set.Bytes(), 520 * 8);
  EXPECT_EQ(TokenSet::BytesFor(33'278), set.Bytes());
  for (int64_t id = 0; id < 33'278; ++id) set.Insert(id);
  EXPECT_EQ(set.Bytes(), 520 * 8);
  EXPECT_EQ(set.size(), 33'278);
}

TEST(TokenSetTest, BytesRoundTripAndPaddingBitsAreRefused) {
  TokenSet set(20);
  for (int64_t id : {0, 7, 8, 19}) set.Insert(id);
  const std::vector<uint8_t> bytes = set.ToBytes();
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0x81, 0x01, 0x08}));
  TokenSet back(20);
  ASSERT_TRUE(back.FromBytes(bytes));
  EXPECT_EQ(back, set);
  EXPECT_EQ(back.size(), 4);
  EXPECT_FALSE(back.FromBytes({0x81, 0x01}));        // too short
  EXPECT_FALSE(back.FromBytes({0x81, 0x01, 0x18}));  // bit 20: outside the vocabulary
  EXPECT_EQ(back, set);                              // unchanged by a refusal
}

}  // namespace
}  // namespace recur
