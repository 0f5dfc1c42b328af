#include "server/session_store.h"

#include <torch/torch.h>

#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status.h"
#include "glog/logging.h"

namespace recur {

struct SessionStore::Slot {
  Session session;  // the lease holder's while busy; under mu_ otherwise
  // The rest is guarded by the store's mu_.
  bool busy = false;
  absl::Time last_used;
  int64_t tokens = 0;       // as of the last lease
  int64_t state_bytes = 0;  // as of the last lease

  // The holder is done: the slot is idle, with the figures of the state as the holder left it
  // (read by the holder before taking the store's lock).
  void MarkIdle(int64_t state_tokens, int64_t bytes) {
    busy = false;
    last_used = absl::Now();
    tokens = state_tokens;
    state_bytes = bytes;
  }
};

namespace {

std::string NewSessionId() {
  absl::BitGen gen;
  return absl::StrFormat("s-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

constexpr size_t kSessionIdLength = 34;  // "s-" and 32 hex digits

// NOT_FOUND without looking the id up when it is not one this server could have made; the message
// quotes at most an excerpt of it (ids arrive from clients, of any length).
absl::Status CheckSessionId(absl::string_view id) {
  bool well_formed = id.size() == kSessionIdLength && absl::StartsWith(id, "s-");
  for (size_t i = 2; well_formed && i < id.size(); ++i) {
    well_formed = absl::ascii_isxdigit(id[i]) && !absl::ascii_isupper(id[i]);
  }
  if (well_formed) return absl::OkStatus();
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
      close_on_return_(other.close_on_return_) {
  other.slot_ = nullptr;
}

SessionStore::Lease& SessionStore::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Return();
    store_ = other.store_;
    slot_ = std::move(other.slot_);
    close_on_return_ = other.close_on_return_;
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
  slot_->MarkIdle(tokens, bytes);
  if (slot_->session.id.empty()) {
    --store_->unnamed_slots_;
  } else if (close_on_return_) {
    store_->sessions_.erase(slot_->session.id);
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

SessionInfo SessionStore::Open(Lease lease, const std::string& tenant) {
  std::shared_ptr<Slot> slot = std::move(lease.slot_);
  lease.slot_ = nullptr;  // the slot stays in use, now as a session
  Session& session = slot->session;
  session.id = NewSessionId();
  session.tenant = tenant;
  const int64_t tokens = session.state.tokens();
  const int64_t bytes = session.state.Bytes();
  absl::MutexLock lock(&mu_);
  slot->MarkIdle(tokens, bytes);
  --unnamed_slots_;
  sessions_.emplace(session.id, slot);
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
  RECUR_ASSIGN_OR_RETURN(const Lease source, Checkout(id, tenant));
  RECUR_ASSIGN_OR_RETURN(Lease copy, Reserve());
  copy->state = source->state;
  copy->state.model = source->state.model.Clone();
  return Open(std::move(copy), tenant);
}

absl::StatusOr<std::string> SessionStore::Export(const std::string& id, const std::string& tenant,
                                                 const ModelConfig& config) {
  RECUR_ASSIGN_OR_RETURN(const Lease session, Checkout(id, tenant));
  return EncodeSession(session->state, config);
}

void SessionStore::CloseIdle(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto current = it++;
    const Slot& slot = *current->second;
    if (!slot.busy && now - slot.last_used > options_.idle_ttl) {
      LOG(INFO) << "closing session " << slot.session.id << ", idle for "
                << absl::FormatDuration(now - slot.last_used);
      sessions_.erase(current);
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
