#ifndef RECUR_SERVER_SESSION_STORE_H_
#define RECUR_SERVER_SESSION_STORE_H_

// The server's state slots and the sessions that hold them. A slot holds one sequence's model
// state; a session is a named slot that outlives requests (its state holds all the text so far),
// and a one-off request borrows an unnamed slot for its duration. Capacity is a count of slots:
// for linear attention every slot costs the same bytes, so the count is exact admission control.
//
// Whoever works on a slot's state checks it out and holds a Lease, an RAII handle: while it lives
// the slot is busy (session calls on it answer FAILED_PRECONDITION) and the holder alone touches
// the state, without the store's lock; when it ends the slot goes back (a session becomes idle, an
// unnamed slot is freed). So the engine's requests, and the store's own fork and export, do their
// tensor work outside the lock.
//
// Thread-safe. The store never calls out while holding its lock.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/config.h"
#include "server/metrics.h"
#include "server/session_codec.h"

namespace recur {

// What a slot holds: the session's state, the repetition penalty's history among it.
struct Session {
  std::string id;      // empty: an unnamed slot (a one-off request's)
  std::string tenant;  // the owner (server/authenticator.h); "" when the server has no tokens
  SessionState state;
};

struct SessionInfo {
  std::string id;
  int64_t tokens = 0;       // text seen so far, in tokens
  int64_t state_bytes = 0;  // model state held on the device
  absl::Time last_used;
  bool busy = false;
};

struct SessionStoreOptions {
  int64_t max_slots = 64;                       // sessions plus one-off requests
  absl::Duration idle_ttl = absl::Minutes(30);  // idle sessions are closed after this
  // > 0: every slot costs this (linear attention); 0: each slot's own bytes as of its last lease.
  int64_t bytes_per_slot = 0;
};

class SessionStore {
 private:
  struct Slot;

 public:
  // A checked-out slot. Movable, not copyable; the slot goes back when the last owner ends.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    Session& operator*() const;
    Session* operator->() const;
    // The session is closed instead of returned (its state is unknown, e.g. the model failed).
    void CloseOnReturn() { close_on_return_ = true; }
    // The holder only reads the state (export, fork's source, saving): the session is not
    // changed by this lease, so it need not be saved again.
    void ReadOnly() { changes_state_ = false; }

   private:
    friend class SessionStore;
    Lease(SessionStore* store, std::shared_ptr<Slot> slot)
        : store_(store), slot_(std::move(slot)) {}
    void Return();

    SessionStore* store_ = nullptr;
    std::shared_ptr<Slot> slot_;
    bool close_on_return_ = false;
    bool changes_state_ = true;
  };

  // A session's bytes as of one revision (its count of changing leases), for saving.
  struct Snapshot {
    std::string id;
    int64_t revision = 0;
    std::string bytes;          // EncodeSession's, labelled with the id and tenant
    bool saved_before = false;  // an earlier revision is on disk
  };

  // `metrics` (active sessions, state bytes) must outlive the store.
  SessionStore(SessionStoreOptions options, int64_t vocab_size, Metrics& metrics);

  // Every call naming a session takes the caller's tenant: a session of another tenant is
  // NOT_FOUND, exactly as one that does not exist.

  // The session `id`: NOT_FOUND, or FAILED_PRECONDITION while another lease holds it.
  absl::StatusOr<Lease> Checkout(const std::string& id, const std::string& tenant);
  // A new unnamed slot with an empty state (the holder fills it); RESOURCE_EXHAUSTED when every
  // slot is taken.
  absl::StatusOr<Lease> Reserve();
  // Names a reserved slot and keeps it, with the state its holder put in, as an idle session of
  // `tenant`: named `id` when given (INVALID_ARGUMENT unless IsSessionId (base/session_id.h),
  // ALREADY_EXISTS when taken), else a new random id. On error the slot is freed.
  absl::StatusOr<SessionInfo> Open(Lease slot, const std::string& tenant,
                                   const std::string& id = "");

  absl::StatusOr<SessionInfo> Get(const std::string& id, const std::string& tenant);
  absl::Status Close(const std::string& id, const std::string& tenant);
  // A new session of the same tenant with a copy of `id`'s state (copied outside the lock), its
  // id sharing `id`'s routing key (the first 8 hex digits; proto/recur/v1/recur.proto).
  absl::StatusOr<SessionInfo> Fork(const std::string& id, const std::string& tenant);
  // `id`'s state as bytes (server/session_codec.h; encoded outside the lock).
  absl::StatusOr<std::string> Export(const std::string& id, const std::string& tenant,
                                     const ModelConfig& config);

  // Keeping sessions beyond the process (server/session_keeper.h).
  // Adds `session` (id and tenant set) as an idle session, saved as it is: ALREADY_EXISTS when
  // the id is held, RESOURCE_EXHAUSTED when every slot is taken.
  absl::Status Restore(Session session);
  bool Holds(const std::string& id);
  // Every idle session changed since it was last saved, encoded; busy ones wait for a later call.
  std::vector<Snapshot> ChangedSessions(const ModelConfig& config);
  // The snapshot's revision is on disk (a later change makes the session changed again). False
  // when the session has been closed meanwhile: the file just written is to go.
  bool MarkSaved(const std::string& id, int64_t revision);
  // Saved sessions closed since the last call (their files are to go).
  std::vector<std::string> TakeClosedSaved();
  // Drops an idle session without a trace on disk (another replica has taken its file).
  void Forget(const std::string& id);

  // Closes sessions idle for longer than the options' TTL as of `now`.
  void CloseIdle(absl::Time now);

  // Every slot is taken and each by a session: none will free by itself (only a close or the
  // idle TTL frees one), so a request waiting for a slot would wait for nothing.
  bool FullOfSessions();

  int64_t max_slots() const { return options_.max_slots; }
  int64_t slots_in_use();
  // The sessions' tokens as of their last lease (softmax's key/value accounting).
  int64_t tokens_in_sessions();
  int64_t state_bytes_in_use();

 private:
  // `tenant`'s session `id`: NOT_FOUND for a malformed id (checked first), an unknown one or
  // another tenant's, all alike.
  absl::StatusOr<std::shared_ptr<Slot>> Find(const std::string& id, const std::string& tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SessionInfo Describe(const Slot& slot) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t SlotsInUse() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t StateBytesInUse() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Removes a session, noting it for TakeClosedSaved when it has been saved.
  void Erase(absl::flat_hash_map<std::string, std::shared_ptr<Slot>>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SessionStoreOptions options_;
  const int64_t vocab_size_;
  Metrics& metrics_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Slot>> sessions_ ABSL_GUARDED_BY(mu_);
  int64_t unnamed_slots_ ABSL_GUARDED_BY(mu_) = 0;  // reserved, not (yet) sessions
  std::vector<std::string> closed_saved_ ABSL_GUARDED_BY(mu_);
};

}  // namespace recur

#endif  // RECUR_SERVER_SESSION_STORE_H_
