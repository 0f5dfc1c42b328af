#include "server/session_store.h"

#include <torch/torch.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/session_id.h"
#include "base/status.h"
#include "glog/logging.h"

namespace recur {

struct SessionStore::Slot {
  Session session;  // the lease holder's while busy; under mu_ otherwise
  // The rest is guarded by the store's mu_.
  bool busy = false;
  absl::Time last_used;
  int64_t tokens = 0;           // as of the last lease
  int64_t state_bytes = 0;      // as of the last lease
  int64_t revision = 0;         // leases that may have changed the state
  int64_t saved_revision = -1;  // the revision on disk; -1: never saved
  bool saving = false;          // ChangedSessions is encoding the idle state

  // The holder is done: the slot is idle, with the figures of the state as the holder left it
  // (read by the holder before taking the store's lock).
  void MarkIdle(int64_t state_tokens, int64_t bytes, bool changed) {
    busy = false;
    if (changed) ++revision;
    last_used = absl::Now();
    tokens = state_tokens;
    state_bytes = bytes;
  }
};

namespace {

// NOT_FOUND without looking the id up when it is not one this server could have made; the message
// quotes at most an excerpt of it (ids arrive from clients, of any length).
absl::Status CheckSessionId(absl::string_view id) {
  if (IsSessionId(id)) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("no session '", Excerpt(id, kSessionIdLength),
                                          "' (session ids are 's-' and 32 hex digits)"));
}

absl::Status NoSession(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("no session '", id, "'"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Lease

SessionStore::Lease::Lease(Lease&& other) noexcept
    : store_(other.store_),
      slot_(std::move(other.slot_)),
      close_on_return_(other.close_on_return_),
      changes_state_(other.changes_state_) {
  other.slot_ = nullptr;
}

SessionStore::Lease& SessionStore::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Return();
    store_ = other.store_;
    slot_ = std::move(other.slot_);
    close_on_return_ = other.close_on_return_;
    changes_state_ = other.changes_state_;
    other.slot_ = nullptr;
  }
  return *this;
}

SessionStore::Lease::~Lease() { Return(); }

Session& SessionStore::Lease::operator*() const { return slot_->session; }
Session* SessionStore::Lease::operator->() const { return &slot_->session; }

void SessionStore::Lease::Return() {
  if (slot_ == nullptr) return;
  // Read the state before taking the lock: it is still this holder's.
  const int64_t tokens = slot_->session.state.tokens();
  const int64_t bytes = slot_->session.state.Bytes();
  absl::MutexLock lock(&store_->mu_);
  slot_->MarkIdle(tokens, bytes, changes_state_);
  if (slot_->session.id.empty()) {
    --store_->unnamed_slots_;
  } else if (close_on_return_) {
    store_->Erase(store_->sessions_.find(slot_->session.id));
  }
  store_->UpdateGauges();
  slot_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// SessionStore

SessionStore::SessionStore(SessionStoreOptions options, int64_t vocab_size, Metrics& metrics)
    : options_(std::move(options)), vocab_size_(vocab_size), metrics_(metrics) {
  metrics_.session_slots.Set(static_cast<double>(options_.max_slots));
  metrics_.session_slots_free.Set(static_cast<double>(options_.max_slots));
  metrics_.state_bytes_capacity.Set(
      static_cast<double>(options_.max_slots * options_.bytes_per_slot));
}

absl::StatusOr<SessionStore::Lease> SessionStore::Checkout(const std::string& id,
                                                           const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  RECUR_ASSIGN_OR_RETURN(std::shared_ptr<Slot> slot, Find(id, tenant));
  // A save reads the state for a moment (ChangedSessions): wait, as the session is not in use.
  mu_.Await(absl::Condition(
      +[](Slot* s) { return !s->saving; }, slot.get()));
  if (slot->busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("session '", id, "' has a request in progress"));
  }
  slot->busy = true;
  return Lease(this, std::move(slot));
}

absl::StatusOr<std::shared_ptr<SessionStore::Slot>> SessionStore::Find(const std::string& id,
                                                                       const std::string& tenant) {
  RECUR_RETURN_IF_ERROR(CheckSessionId(id));
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->session.tenant != tenant) return NoSession(id);
  return it->second;
}

absl::StatusOr<SessionStore::Lease> SessionStore::Reserve() {
  absl::MutexLock lock(&mu_);
  if (SlotsInUse() >= options_.max_slots) {
    return absl::ResourceExhaustedError(absl::StrCat("no free session slot (", options_.max_slots,
                                                     " in use); close a session first"));
  }
  auto slot = std::make_shared<Slot>();
  slot->session.state.seen = TokenSet(vocab_size_);
  slot->busy = true;
  ++unnamed_slots_;
  UpdateGauges();
  return Lease(this, std::move(slot));
}

absl::StatusOr<SessionInfo> SessionStore::Open(Lease lease, const std::string& tenant,
                                               const std::string& id) {
  if (!id.empty() && !IsSessionId(id)) {
    return absl::InvalidArgumentError(absl::StrCat("session_id '", Excerpt(id, kSessionIdLength),
                                                   "' is not 's-' and 32 lower-case hex digits"));
  }
  const int64_t tokens = lease->state.tokens();
  const int64_t bytes = lease->state.Bytes();
  absl::MutexLock lock(&mu_);
  const std::string name = id.empty() ? NewSessionId() : id;
  if (sessions_.contains(name)) {
    return absl::AlreadyExistsError(absl::StrCat("session '", name, "' exists already"));
  }
  std::shared_ptr<Slot> slot = std::move(lease.slot_);
  lease.slot_ = nullptr;  // the slot stays in use, now as a session
  slot->session.id = name;
  slot->session.tenant = tenant;
  slot->MarkIdle(tokens, bytes, /*changed=*/true);
  --unnamed_slots_;
  sessions_.emplace(name, slot);
  UpdateGauges();
  return Describe(*slot);
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& id, const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  RECUR_ASSIGN_OR_RETURN(const std::shared_ptr<Slot> slot, Find(id, tenant));
  return Describe(*slot);
}

absl::Status SessionStore::Close(const std::string& id, const std::string& tenant) {
  RECUR_ASSIGN_OR_RETURN(Lease lease, Checkout(id, tenant));  // an idle session only
  lease.CloseOnReturn();
  return absl::OkStatus();
}

absl::StatusOr<SessionInfo> SessionStore::Fork(const std::string& id, const std::string& tenant) {
  RECUR_ASSIGN_OR_RETURN(Lease source, Checkout(id, tenant));
  source.ReadOnly();
  RECUR_ASSIGN_OR_RETURN(Lease copy, Reserve());
  copy->state = source->state;
  copy->state.model = source->state.model.Clone();
  return Open(std::move(copy), tenant,
              NewSessionId(absl::string_view(id).substr(0, kRoutingKeyLength)));
}

absl::StatusOr<std::string> SessionStore::Export(const std::string& id, const std::string& tenant,
                                                 const ModelConfig& config) {
  RECUR_ASSIGN_OR_RETURN(Lease session, Checkout(id, tenant));
  session.ReadOnly();
  return EncodeSession(session->state, config);
}

absl::Status SessionStore::Restore(Session session) {
  RECUR_RETURN_IF_ERROR(CheckSessionId(session.id));
  const int64_t tokens = session.state.tokens();
  const int64_t bytes = session.state.Bytes();
  absl::MutexLock lock(&mu_);
  if (sessions_.contains(session.id)) {
    return absl::AlreadyExistsError(absl::StrCat("session '", session.id, "' is open already"));
  }
  if (SlotsInUse() >= options_.max_slots) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no free session slot for session '", session.id, "' (", options_.max_slots, " in use)"));
  }
  auto slot = std::make_shared<Slot>();
  slot->session = std::move(session);
  slot->MarkIdle(tokens, bytes, /*changed=*/false);
  slot->saved_revision = slot->revision;
  sessions_.emplace(slot->session.id, slot);
  UpdateGauges();
  return absl::OkStatus();
}

bool SessionStore::Holds(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return sessions_.contains(id);
}

std::vector<SessionStore::Snapshot> SessionStore::ChangedSessions(const ModelConfig& config) {
  std::vector<std::shared_ptr<Slot>> changed;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, slot] : sessions_) {
      if (!slot->busy && slot->revision != slot->saved_revision) changed.push_back(slot);
    }
  }
  std::vector<Snapshot> snapshots;
  for (const std::shared_ptr<Slot>& slot : changed) {
    int64_t revision = 0;
    bool saved_before = false;
    {
      absl::MutexLock lock(&mu_);
      if (slot->busy || !sessions_.contains(slot->session.id)) continue;  // the next save has it
      slot->saving = true;  // a checkout waits the encoding out (Checkout) instead of failing
      revision = slot->revision;
      saved_before = slot->saved_revision >= 0;
    }
    const Session& session = slot->session;
    auto bytes = EncodeSession(session.state, config, SessionLabels{session.id, session.tenant});
    {
      absl::MutexLock lock(&mu_);
      slot->saving = false;
    }
    if (!bytes.ok()) {
      LOG(WARNING) << "cannot save session " << session.id << ": " << bytes.status();
      continue;
    }
    snapshots.push_back({session.id, revision, *std::move(bytes), saved_before});
  }
  return snapshots;
}

bool SessionStore::MarkSaved(const std::string& id, int64_t revision) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  it->second->saved_revision = revision;
  return true;
}

std::vector<std::string> SessionStore::TakeClosedSaved() {
  absl::MutexLock lock(&mu_);
  return std::exchange(closed_saved_, {});
}

void SessionStore::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->busy || it->second->saving) return;
  sessions_.erase(it);
  UpdateGauges();
}

void SessionStore::Erase(absl::flat_hash_map<std::string, std::shared_ptr<Slot>>::iterator it) {
  if (it == sessions_.end()) return;
  if (it->second->saved_revision >= 0) closed_saved_.push_back(it->first);
  sessions_.erase(it);
}

void SessionStore::CloseIdle(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto current = it++;
    const Slot& slot = *current->second;
    if (!slot.busy && !slot.saving && now - slot.last_used > options_.idle_ttl) {
      LOG(INFO) << "closing session " << slot.session.id << ", idle for "
                << absl::FormatDuration(now - slot.last_used);
      Erase(current);
    }
  }
  UpdateGauges();
}

bool SessionStore::FullOfSessions() {
  absl::MutexLock lock(&mu_);
  return SlotsInUse() >= options_.max_slots && unnamed_slots_ == 0;
}

int64_t SessionStore::slots_in_use() {
  absl::MutexLock lock(&mu_);
  return SlotsInUse();
}

int64_t SessionStore::tokens_in_sessions() {
  absl::MutexLock lock(&mu_);
  int64_t tokens = 0;
  for (const auto& [id, slot] : sessions_) tokens += slot->tokens;
  return tokens;
}

int64_t SessionStore::state_bytes_in_use() {
  absl::MutexLock lock(&mu_);
  return StateBytesInUse();
}

SessionInfo SessionStore::Describe(const Slot& slot) const {
  return {slot.session.id, slot.tokens,
          options_.bytes_per_slot > 0 ? options_.bytes_per_slot : slot.state_bytes, slot.last_used,
          slot.busy};
}

int64_t SessionStore::SlotsInUse() const {
  return static_cast<int64_t>(sessions_.size()) + unnamed_slots_;
}

int64_t SessionStore::StateBytesInUse() const {
  // Linear attention: every slot costs the same. Softmax: the sessions' caches as of their last
  // lease (a running one-off request's cache is not counted until it ends).
  if (options_.bytes_per_slot > 0) return SlotsInUse() * options_.bytes_per_slot;
  int64_t bytes = 0;
  for (const auto& [id, slot] : sessions_) bytes += slot->state_bytes;
  return bytes;
}

void SessionStore::UpdateGauges() {
  metrics_.active_sessions.Set(static_cast<double>(SlotsInUse()));
  metrics_.session_slots_free.Set(static_cast<double>(options_.max_slots - SlotsInUse()));
  metrics_.state_bytes.Set(static_cast<double>(StateBytesInUse()));
}

}  // namespace recur
