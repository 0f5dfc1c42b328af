#include "base/files.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace recur {

namespace fs = std::filesystem;

namespace {

// Flushes a file or directory to disk so the rename that publishes it is durable.
absl::Status Sync(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return absl::UnavailableError(absl::StrCat("cannot open ", path.string(), " to sync"));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::DataLossError(absl::StrCat("fsync failed on ", path.string()));
  return absl::OkStatus();
}

std::string UniqueSuffix() {
  std::random_device rd;
  return absl::StrCat(::getpid(), "-", rd());
}

// A file being written atomically: `<name>.part-<unique>`, renamed over `<name>` when complete.
constexpr char kTempFileInfix[] = ".part-";

}  // namespace

absl::Status WriteFileContents(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path.string(), " for writing"));
  }
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("failed writing ", path.string()));
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const fs::path& path, const std::string& contents) {
  const fs::path temp = path.string() + kTempFileInfix + UniqueSuffix();
  absl::Status status = WriteFileContents(temp, contents);
  if (status.ok()) status = Sync(temp);
  std::error_code ec;
  if (status.ok()) {
    fs::rename(temp, path, ec);
    if (ec) {
      status = absl::UnavailableError(
          absl::StrCat("cannot move ", temp.string(), " to ", path.string(), ": ", ec.message()));
    }
  }
  if (!status.ok()) {
    fs::remove(temp, ec);
    return status;
  }
  return Sync(path.has_parent_path() ? path.parent_path() : fs::path("."));
}

void RemoveUnfinishedFileWrites(const fs::path& directory) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (absl::StrContains(entry.path().filename().string(), kTempFileInfix)) {
      fs::remove(entry.path(), ec);
    }
  }
}

absl::StatusOr<std::string> ReadFileContents(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("file not found: ", path.string()));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat("cannot read ", path.string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("failed reading ", path.string()));
  return buffer.str();
}

namespace {

constexpr char kTempInfix[] = ".tmp-";
constexpr char kAsideInfix[] = ".old-";

// Leftovers of earlier writes to `target` that were killed part-way: `<target>.tmp-*` (a temporary
// never published) and `<target>.old-*` (an old directory moved aside by the two-rename
// fallback). If `target` is missing, the newest directory moved aside was the last one published:
// it goes back to `target`; the rest are removed.
void RecoverFromKilledWrites(const fs::path& target) {
  const std::string name = target.filename().string();
  std::vector<fs::path> temporaries, aside;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
    const std::string entry_name = entry.path().filename().string();
    if (absl::StartsWith(entry_name, name + kTempInfix)) temporaries.push_back(entry.path());
    if (absl::StartsWith(entry_name, name + kAsideInfix)) aside.push_back(entry.path());
  }
  if (!fs::exists(target, ec) && !aside.empty()) {
    auto newest = std::max_element(aside.begin(), aside.end(), [](const auto& a, const auto& b) {
      std::error_code ignored;
      return fs::last_write_time(a, ignored) < fs::last_write_time(b, ignored);
    });
    fs::rename(*newest, target, ec);
    if (!ec) aside.erase(newest);
  }
  for (const auto& path : temporaries) fs::remove_all(path, ec);
  for (const auto& path : aside) fs::remove_all(path, ec);
}

// Puts the filled `temp` in place of `target`, so that `target` exists at every instant: one
// renameat2(RENAME_EXCHANGE) swaps the two, and the old directory (now at `temp`) is removed. A
// file system without the exchange falls back to two renames; a crash between them leaves the
// old directory aside, which the next write restores.
absl::Status Publish(const fs::path& temp, const fs::path& target) {
  std::error_code ec;
  if (!fs::exists(target, ec)) {
    fs::rename(temp, target, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot move ", temp.string(), " to ", target.string(), ": ", ec.message()));
    }
    return absl::OkStatus();
  }
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(temp, ec);
    return absl::OkStatus();
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return absl::UnavailableError(
        absl::StrCat("cannot replace ", target.string(), ": ", std::strerror(errno)));
  }
  const fs::path old = target.string() + kAsideInfix + UniqueSuffix();
  fs::rename(target, old, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot replace ", target.string(), ": ", ec.message()));
  }
  fs::rename(temp, target, ec);
  if (ec) {
    const std::string reason = ec.message();
    fs::rename(old, target, ec);
    return absl::UnavailableError(
        absl::StrCat("cannot move ", temp.string(), " to ", target.string(), ": ", reason));
  }
  fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteDirectoryAtomically(const std::string& target_name,
                                      const std::function<absl::Status(const fs::path&)>& fill) {
  const fs::path target = fs::absolute(fs::path(target_name)).lexically_normal();
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", target.parent_path().string(), ": ", ec.message()));
  }
  RecoverFromKilledWrites(target);
  const fs::path temp = target.string() + kTempInfix + UniqueSuffix();
  fs::create_directory(temp, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create ", temp.string(), ": ", ec.message()));

  auto fill_sync_and_publish = [&]() -> absl::Status {
    RECUR_RETURN_IF_ERROR(fill(temp));
    for (const auto& entry : fs::directory_iterator(temp))
      RECUR_RETURN_IF_ERROR(Sync(entry.path()));
    RECUR_RETURN_IF_ERROR(Sync(temp));
    return Publish(temp, target);
  };
  if (auto status = fill_sync_and_publish(); !status.ok()) {
    fs::remove_all(temp, ec);
    return status;
  }
  (void)Sync(target.parent_path());
  return absl::OkStatus();
}

}  // namespace recur
