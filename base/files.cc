#include "base/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

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

absl::Status WriteDirectoryAtomically(const std::string& target_name,
                                      const std::function<absl::Status(const fs::path&)>& fill) {
  const fs::path target = fs::absolute(fs::path(target_name)).lexically_normal();
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot create ", target.parent_path().string(), ": ", ec.message()));
    }
  }
  const fs::path temp = target.string() + ".tmp-" + UniqueSuffix();
  fs::create_directory(temp, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create ", temp.string(), ": ", ec.message()));

  auto fill_and_sync = [&]() -> absl::Status {
    RECUR_RETURN_IF_ERROR(fill(temp));
    for (const auto& entry : fs::directory_iterator(temp))
      RECUR_RETURN_IF_ERROR(Sync(entry.path()));
    return Sync(temp);
  };
  if (auto status = fill_and_sync(); !status.ok()) {
    fs::remove_all(temp, ec);
    return status;
  }
  // rename(2) cannot replace a non-empty directory: move the old one aside first.
  fs::path old;
  if (fs::exists(target)) {
    old = target.string() + ".old-" + UniqueSuffix();
    fs::rename(target, old, ec);
    if (ec) {
      fs::remove_all(temp, ec);
      return absl::UnavailableError(
          absl::StrCat("cannot replace ", target.string(), ": ", ec.message()));
    }
  }
  fs::rename(temp, target, ec);
  if (ec) {
    const std::string reason = ec.message();
    if (!old.empty()) fs::rename(old, target, ec);
    fs::remove_all(temp, ec);
    return absl::UnavailableError(
        absl::StrCat("cannot move ", temp.string(), " to ", target.string(), ": ", reason));
  }
  if (!old.empty()) fs::remove_all(old, ec);
  if (target.has_parent_path()) (void)Sync(target.parent_path());
  return absl::OkStatus();
}

}  // namespace recur
