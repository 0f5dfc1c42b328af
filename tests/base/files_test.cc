// The file helpers: whole files written and read back, errors that name the path.

#include "base/files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/test_util.h"

namespace recur {
namespace {

using testing::TempDir;

TEST(FilesTest, WrittenBytesReadBackExactly) {
  TempDir dir;
  std::string bytes = "line\n";
  bytes.push_back('\0');
  bytes += "\xff after a NUL";
  ASSERT_TRUE(WriteFileContents(dir.Join("f.bin"), bytes).ok());
  auto read = ReadFileContents(dir.Join("f.bin"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, bytes);
}

TEST(FilesTest, MissingFilesAndDirectoriesAreNotFoundByName) {
  TempDir dir;
  auto missing = ReadFileContents(dir.Join("none.txt"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("none.txt"), std::string::npos);
  // A directory opens as a stream on Linux but is not a file to read.
  EXPECT_EQ(ReadFileContents(dir.path()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(WriteFileContents(dir.Join("no/such/dir/f"), "x").ok());
}

TEST(FilesTest, ADirectoryIsPublishedWholeOrNotAtAll) {
  TempDir dir;
  const std::string target = dir.Join("out");
  ASSERT_TRUE(WriteDirectoryAtomically(target, [](const std::filesystem::path& d) {
                return WriteFileContents(d / "a", "first");
              }).ok());
  const absl::Status failed = WriteDirectoryAtomically(target, [](const std::filesystem::path& d) {
    if (auto s = WriteFileContents(d / "a", "second"); !s.ok()) return s;
    return absl::DataLossError("disk full");
  });
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(*ReadFileContents(target + "/a"), "first") << "a failed write leaves the old one";
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1) << "no temporary directory is left behind";
}

}  // namespace
}  // namespace recur
