#include "server/session_directory.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/files.h"
#include "glog/logging.h"

namespace recur {

namespace fs = std::filesystem;

namespace {

constexpr char kSuffix[] = ".session";

bool IsPlainName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

absl::StatusOr<SessionDirectory> SessionDirectory::Open(const std::string& root,
                                                        const std::string& replica) {
  if (!IsPlainName(replica)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--replica_name '", replica, "' must be a plain name (letters, digits, '.', '_', '-')"));
  }
  const fs::path own = fs::path(root) / replica;
  std::error_code ec;
  fs::create_directories(own, ec);
  if (ec || !fs::is_directory(own)) {
    return absl::UnavailableError(
        absl::StrCat("--session_dir: cannot create ", own.string(), ": ", ec.message()));
  }
  // The files hold users' conversations: only this server's user may list or read them.
  fs::permissions(own, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("--session_dir: cannot restrict ", own.string(), ": ", ec.message()));
  }
  RemoveUnfinishedFileWrites(own);
  return SessionDirectory(root, own);
}

fs::path SessionDirectory::File(const fs::path& directory, const std::string& id) const {
  return directory / absl::StrCat(id, kSuffix);
}

std::vector<std::string> SessionDirectory::Ids() const {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(own_, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && absl::EndsWith(name, kSuffix)) {
      ids.push_back(name.substr(0, name.size() - std::string(kSuffix).size()));
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<std::string> SessionDirectory::Read(const std::string& id) const {
  if (!IsPlainName(id)) return absl::NotFoundError(absl::StrCat("no saved session '", id, "'"));
  return ReadFileContents(File(own_, id));
}

absl::Status SessionDirectory::Write(const std::string& id, const std::string& bytes) {
  if (!IsPlainName(id)) return absl::InvalidArgumentError(absl::StrCat("bad session id ", id));
  return WriteFileAtomically(File(own_, id), bytes);
}

void SessionDirectory::Remove(const std::string& id) {
  if (!IsPlainName(id)) return;
  std::error_code ec;
  fs::remove(File(own_, id), ec);
}

bool SessionDirectory::Holds(const std::string& id) const {
  std::error_code ec;
  return IsPlainName(id) && fs::is_regular_file(File(own_, id), ec);
}

void SessionDirectory::Reject(const std::string& id) {
  if (!IsPlainName(id)) return;
  std::error_code ec;
  fs::rename(File(own_, id), File(own_, id).string() + ".rejected", ec);
}

absl::Status SessionDirectory::Claim(const std::string& id) {
  if (Holds(id)) return absl::OkStatus();
  if (!IsPlainName(id)) return absl::NotFoundError(absl::StrCat("no saved session '", id, "'"));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    if (!entry.is_directory(ec) || entry.path() == own_) continue;
    // rename(2) is atomic: of replicas claiming at once, one moves the file, the rest find none.
    fs::rename(File(entry.path(), id), File(own_, id), ec);
    if (!ec) {
      LOG(INFO) << "session " << id << " claimed from replica " << entry.path().filename();
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no saved session '", id, "'"));
}

}  // namespace recur
