#ifndef RECUR_SERVER_SESSION_KEEPER_H_
#define RECUR_SERVER_SESSION_KEEPER_H_

// Keeps a session store's sessions on disk (--session_dir, server/session_directory.h) so they
// survive a restart and can move to another replica:
// - at start-up, every session in this replica's subdirectory is restored with its id, tenant and
//   text;
// - Save writes every session changed since its last save and removes the files of closed ones;
//   the server calls it when a drain has finished its requests, and, with a sync interval, a
//   background thread calls it that often, so a kill -9 loses at most that interval;
// - a call naming a session this store does not hold first claims the session's file from any
//   replica's subdirectory (a session drained from a peer continues here).
// A session saved mid-request is saved as of its last complete turn: busy sessions are skipped
// and written by the next Save. A changed session whose saved file a peer has claimed meanwhile is
// dropped here instead of written (the peer holds it now).

#include <cstdint>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "model/config.h"
#include "server/session_directory.h"
#include "server/session_store.h"

namespace recur {

class SessionKeeper {
 public:
  // `store` must outlive the keeper. A zero `sync_interval` saves only when Save is called.
  SessionKeeper(SessionDirectory directory, SessionStore& store, ModelConfig config,
                torch::Device device, absl::Duration sync_interval);
  ~SessionKeeper();  // stops the background thread, without a last save
  SessionKeeper(const SessionKeeper&) = delete;
  SessionKeeper& operator=(const SessionKeeper&) = delete;

  // Restores this replica's saved sessions into the store; returns how many. A file that does not
  // decode for this model is set aside (`.rejected`) with a warning.
  int64_t RestoreAll();
  // Before a call names session `id`: if the store lacks it and a replica's file holds it, it is
  // restored here.
  void ClaimIfSaved(const std::string& id);
  // Writes the changed sessions and removes the closed ones' files; returns how many were written.
  absl::StatusOr<int64_t> Save();

 private:
  // The session in this replica's file `id` into the store.
  absl::Status Restore(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SyncLoop(absl::Duration interval);

  SessionDirectory directory_ ABSL_GUARDED_BY(mu_);
  SessionStore& store_;
  const ModelConfig config_;
  const torch::Device device_;

  absl::Mutex mu_;  // one file operation at a time: saves, claims and restores don't interleave
  absl::Notification stop_;
  std::thread sync_thread_;
};

}  // namespace recur

#endif  // RECUR_SERVER_SESSION_KEEPER_H_
