// The file helpers: whole files written and read back, errors that name the path.

#include "base/files.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace recur {
namespace {

using testing::TempDir;

// A kill between WriteFileAtomically's write and its rename leaves a temporary beside the file;
// RemoveUnfinishedFileWrites takes those away and nothing else.
TEST(FilesTest, AtomicWritesReplaceTheFileAndLeftoversAreRemoved) {
  TempDir dir;
  const std::filesystem::path file = dir.Join("state.session");
  ASSERT_TRUE(WriteFileAtomically(file, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(file, "second").ok());
  EXPECT_EQ(*ReadFileContents(file), "second");
  ASSERT_TRUE(WriteFileContents(dir.Join("state.session.part-123-456"), "half").ok());
  RemoveUnfinishedFileWrites(dir.path());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"state.session"});
}

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

absl::Status WriteA(const std::string& target, const std::string& contents) {
  return WriteDirectoryAtomically(
      target, [&](const std::filesystem::path& d) { return WriteFileContents(d / "a", contents); });
}

std::vector<std::string> Entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A reader polling the target while it is overwritten again and again must always find it: a
// process killed at any instant of a write leaves a loadable directory behind.
TEST(FilesTest, AnOverwrittenDirectoryIsNeverAbsent) {
  TempDir dir;
  const std::string target = dir.Join("out");
  ASSERT_TRUE(WriteA(target, "0").ok());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 1; i <= 300; ++i) EXPECT_TRUE(WriteA(target, std::to_string(i)).ok());
    done = true;
  });
  int64_t looks = 0, absent = 0;
  while (!done) {
    ++looks;
    if (!std::filesystem::exists(target + "/a")) ++absent;
  }
  writer.join();
  EXPECT_EQ(absent, 0) << "in " << looks << " looks";
  EXPECT_EQ(*ReadFileContents(target + "/a"), "300");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out"});
}

// What killed writes leave behind (a half-filled temporary, an old copy moved aside) goes with the
// next write; other directories' leftovers stay.
TEST(FilesTest, LeftoversOfKilledWritesAreRemovedByTheNextWrite) {
  TempDir dir;
  const std::string target = dir.Join("out");
  ASSERT_TRUE(WriteA(target, "first").ok());
  for (const char* leftover :
       {"out.tmp-12-345", "out.old-12-678", "other.tmp-1-2", "outer.tmp-1-2"}) {
    std::filesystem::create_directory(dir.Join(leftover));
    ASSERT_TRUE(WriteFileContents(dir.Join(leftover) + "/a", "junk").ok());
  }
  ASSERT_TRUE(WriteA(target, "second").ok());
  EXPECT_EQ(Entries(dir.path()),
            (std::vector<std::string>{"other.tmp-1-2", "out", "outer.tmp-1-2"}));
  EXPECT_EQ(*ReadFileContents(target + "/a"), "second");
}

// A writer killed after moving the old directory aside but before publishing the new one (the
// two-rename fallback) leaves only the aside copy: the next write puts it back first, so even a
// write that then fails leaves the last good directory in place.
TEST(FilesTest, ADirectoryLeftAsideByAKilledWriteIsRestored) {
  TempDir dir;
  const std::string target = dir.Join("out");
  ASSERT_TRUE(WriteA(dir.Join("out.old-12-678"), "last good").ok());
  const absl::Status failed = WriteDirectoryAtomically(
      target, [](const std::filesystem::path&) { return absl::DataLossError("disk full"); });
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(*ReadFileContents(target + "/a"), "last good");
  EXPECT_EQ(Entries(dir.path()), std::vector<std::string>{"out"});
}

}  // namespace
}  // namespace recur
