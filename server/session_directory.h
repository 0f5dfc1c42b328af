#ifndef RECUR_SERVER_SESSION_DIRECTORY_H_
#define RECUR_SERVER_SESSION_DIRECTORY_H_

// Where --session_dir keeps sessions on disk: `<root>/<replica>/<session id>.session`, each file a
// session's bytes (server/session_codec.h, labelled with its id and tenant), replaced atomically.
// Replicas may share the root: each writes only its own subdirectory, and takes a session from
// another's by renaming the file into its own (Claim), which of two replicas racing only one wins.
//
// Session ids reach file names only after the store has checked their form (`s-` and 32 hex
// digits); the directory checks again that they are plain names.

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace recur {

class SessionDirectory {
 public:
  // Creates `<root>/<replica>` if needed (readable by this user only) and removes half-written
  // files a kill left there.
  // INVALID_ARGUMENT when `replica` is not a plain name (letters, digits, '.', '_', '-').
  static absl::StatusOr<SessionDirectory> Open(const std::string& root, const std::string& replica);

  // The sessions in this replica's subdirectory.
  std::vector<std::string> Ids() const;
  absl::StatusOr<std::string> Read(const std::string& id) const;
  absl::Status Write(const std::string& id, const std::string& bytes);
  void Remove(const std::string& id);
  bool Holds(const std::string& id) const;
  // Moves a file that cannot be restored aside (`<id>.session.rejected`) for the operator.
  void Reject(const std::string& id);
  // Brings `id`'s file into this replica's subdirectory from another replica's: OK when it is
  // here now (or was already), NOT_FOUND when no replica's subdirectory holds it.
  absl::Status Claim(const std::string& id);

  const std::filesystem::path& path() const { return own_; }

 private:
  SessionDirectory(std::filesystem::path root, std::filesystem::path own)
      : root_(std::move(root)), own_(std::move(own)) {}
  std::filesystem::path File(const std::filesystem::path& directory, const std::string& id) const;

  std::filesystem::path root_;
  std::filesystem::path own_;  // root_ / replica
};

}  // namespace recur

#endif  // RECUR_SERVER_SESSION_DIRECTORY_H_
