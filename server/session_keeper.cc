#include "server/session_keeper.h"

#include <torch/torch.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/session_id.h"
#include "base/status.h"
#include "glog/logging.h"
#include "server/session_codec.h"

namespace recur {

SessionKeeper::SessionKeeper(SessionDirectory directory, SessionStore& store, ModelConfig config,
                             torch::Device device, absl::Duration sync_interval)
    : directory_(std::move(directory)), store_(store), config_(std::move(config)), device_(device) {
  if (sync_interval > absl::ZeroDuration()) {
    sync_thread_ = std::thread([this, sync_interval] { SyncLoop(sync_interval); });
  }
}

SessionKeeper::~SessionKeeper() {
  stop_.Notify();
  if (sync_thread_.joinable()) sync_thread_.join();
}

void SessionKeeper::SyncLoop(absl::Duration interval) {
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    auto saved = Save();
    if (!saved.ok()) LOG(WARNING) << "session sync: " << saved.status();
  }
}

absl::Status SessionKeeper::Restore(const std::string& id) {
  RECUR_ASSIGN_OR_RETURN(const std::string bytes, directory_.Read(id));
  SessionLabels labels;
  RECUR_ASSIGN_OR_RETURN(SessionState state, DecodeSession(bytes, config_, device_, &labels));
  if (labels.id != id) {
    return absl::InvalidArgumentError(
        absl::StrCat("the file is labelled session '", labels.id, "'"));
  }
  return store_.Restore({labels.id, labels.tenant, std::move(state)});
}

int64_t SessionKeeper::RestoreAll() {
  absl::MutexLock lock(&mu_);
  int64_t restored = 0;
  for (const std::string& id : directory_.Ids()) {
    const absl::Status status = Restore(id);
    if (status.ok()) {
      ++restored;
    } else if (absl::IsResourceExhausted(status)) {
      // Kept on disk: a call naming it restores it once a slot is free.
      LOG(WARNING) << "session " << id << " not restored: " << status.message();
    } else {
      LOG(WARNING) << "session " << id << " cannot be restored, set aside: " << status.message();
      directory_.Reject(id);
    }
  }
  return restored;
}

void SessionKeeper::ClaimIfSaved(const std::string& id) {
  if (!IsSessionId(id) || store_.Holds(id)) return;
  absl::MutexLock lock(&mu_);
  if (store_.Holds(id) || !directory_.Claim(id).ok()) return;
  if (const absl::Status status = Restore(id); !status.ok()) {
    LOG(WARNING) << "session " << id << " cannot be restored: " << status.message();
  }
}

absl::StatusOr<int64_t> SessionKeeper::Save() {
  absl::MutexLock lock(&mu_);
  int64_t written = 0;
  absl::Status first_error;
  for (const SessionStore::Snapshot& session : store_.ChangedSessions(config_)) {
    if (session.saved_before && !directory_.Holds(session.id)) {
      // Its file is gone from this replica's subdirectory: a peer claimed it (the proxy sends the
      // session there now), so this copy is stale; writing it would resurrect a second one.
      LOG(INFO) << "session " << session.id << " was claimed by another replica; dropped here";
      store_.Forget(session.id);
      continue;
    }
    if (absl::Status status = directory_.Write(session.id, session.bytes); !status.ok()) {
      first_error.Update(status);
      continue;
    }
    ++written;
    // Closed while it was being written: its file goes with it.
    if (!store_.MarkSaved(session.id, session.revision)) directory_.Remove(session.id);
  }
  for (const std::string& id : store_.TakeClosedSaved()) directory_.Remove(id);
  if (!first_error.ok()) return first_error;
  return written;
}

}  // namespace recur
