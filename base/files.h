#ifndef RECUR_BASE_FILES_H_
#define RECUR_BASE_FILES_H_

// File helpers: an atomically published directory, and whole small files read and written with
// the error checked.

#include <filesystem>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace recur {

// Publishes a directory atomically: `fill` writes files into a fresh temporary sibling of `target`,
// which is fsynced and swapped into place (renameat2's RENAME_EXCHANGE, where the file system has
// it), so at every instant `target` holds the old directory or the new one, never a mix and never
// nothing, even if the process is killed. On any error the temporary directory is removed and
// `target` is left as it was. Leftovers of writes that were killed part-way (`<target>.tmp-*`,
// `<target>.old-*`) are cleaned up first: one writer per target at a time.
absl::Status WriteDirectoryAtomically(
    const std::string& target,
    const std::function<absl::Status(const std::filesystem::path& directory)>& fill);

// Writes a small file and checks the write.
absl::Status WriteFileContents(const std::filesystem::path& path, const std::string& contents);

// Replaces the file `path` atomically: the contents go to a temporary sibling, which is fsynced
// and renamed over `path` (and the directory fsynced), so a reader or a restart after a kill sees
// the old contents or the new, never a part.
absl::Status WriteFileAtomically(const std::filesystem::path& path, const std::string& contents);
// Removes the temporaries of WriteFileAtomically calls in `directory` that a kill interrupted.
void RemoveUnfinishedFileWrites(const std::filesystem::path& directory);

// Reads a whole file: NOT_FOUND (no such regular file) or PERMISSION_DENIED naming the path.
absl::StatusOr<std::string> ReadFileContents(const std::filesystem::path& path);

}  // namespace recur

#endif  // RECUR_BASE_FILES_H_
