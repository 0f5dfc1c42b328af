// The session store on its own: slot accounting, leases, idle closing, fork and export. The
// states are plain tensors (no model): the store never looks inside them but to copy and count.

#include "server/session_store.h"

#include <torch/torch.h>

#include "base/session_id.h"
#include "gtest/gtest.h"

namespace recur::testing {
namespace {

constexpr int64_t kVocab = 16;

// A state with one layer of linear-attention sums, `tokens` consumed, one token pending.
SessionState SomeState(int64_t tokens) {
  SessionState state;
  state.model.linear.push_back({torch::rand({1, 2, 4, 4}), torch::rand({1, 2, 4})});
  state.model.positions = torch::full({1}, tokens, torch::kInt64);
  state.consumed = tokens;
  state.pending = {3};
  state.seen = TokenSet(kVocab);
  state.seen.Insert(3);
  state.seen.Insert(5);
  return state;
}

SessionStoreOptions Options(int64_t slots) {
  SessionStoreOptions options;
  options.max_slots = slots;
  options.idle_ttl = absl::Minutes(1);
  return options;
}

// Opens a session of `tenant` holding SomeState(tokens).
SessionInfo OpenSession(SessionStore& store, int64_t tokens, const std::string& tenant = "") {
  auto slot = store.Reserve();
  EXPECT_TRUE(slot.ok()) << slot.status();
  (*slot)->state = SomeState(tokens);
  auto info = store.Open(*std::move(slot), tenant);
  EXPECT_TRUE(info.ok()) << info.status();
  return *info;
}

TEST(SessionStoreTest, SlotsAreCountedAndRefusedWhenAllAreTaken) {
  Metrics metrics;
  SessionStore store(Options(2), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  EXPECT_EQ(a.tokens, 5);
  EXPECT_FALSE(a.busy);
  auto one_off = store.Reserve();
  ASSERT_TRUE(one_off.ok());
  EXPECT_EQ(store.slots_in_use(), 2);
  EXPECT_EQ(metrics.active_sessions.Value(), 2);
  EXPECT_EQ(store.Reserve().status().code(), absl::StatusCode::kResourceExhausted);
  { auto gone = std::move(*one_off); }  // a one-off request's slot is freed when its lease ends
  EXPECT_EQ(store.slots_in_use(), 1);
  EXPECT_TRUE(store.Reserve().ok());
}

TEST(SessionStoreTest, ALeasedSessionIsBusyUntilTheLeaseEnds) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  {
    auto lease = store.Checkout(a.id, "");
    ASSERT_TRUE(lease.ok());
    EXPECT_TRUE(store.Get(a.id, "")->busy);
    EXPECT_EQ(store.Checkout(a.id, "").status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(store.Close(a.id, "").code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(store.Fork(a.id, "").status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(store.Export(a.id, "", ModelConfig()).status().code(),
              absl::StatusCode::kFailedPrecondition);
    (*lease)->state.consumed += 10;  // the holder works on the state
  }
  auto after = store.Get(a.id, "");
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->busy);
  EXPECT_EQ(after->tokens, 15) << "the count follows the state as the lease left it";
  EXPECT_EQ(store.Checkout("nope", "").status().code(), absl::StatusCode::kNotFound);
}

TEST(SessionStoreTest, ALeaseThatClosesOnReturnRemovesTheSession) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  {
    auto lease = store.Checkout(a.id, "");
    ASSERT_TRUE(lease.ok());
    lease->CloseOnReturn();
  }
  EXPECT_EQ(store.Get(a.id, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.slots_in_use(), 0);
}

TEST(SessionStoreTest, AMovedLeaseReturnsItsSlotOnce) {
  Metrics metrics;
  SessionStore store(Options(2), kVocab, metrics);
  {
    auto slot = store.Reserve();
    ASSERT_TRUE(slot.ok());
    SessionStore::Lease moved = *std::move(slot);
    SessionStore::Lease again = std::move(moved);
    EXPECT_EQ(store.slots_in_use(), 1);
    auto other = store.Reserve();
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(store.slots_in_use(), 2);
    again = *std::move(other);  // the overwritten lease's slot goes back
    EXPECT_EQ(store.slots_in_use(), 1);
  }
  EXPECT_EQ(store.slots_in_use(), 0);
}

TEST(SessionStoreTest, ForkCopiesTheStateDeeply) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  auto b = store.Fork(a.id, "");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(b->id, a.id);
  EXPECT_EQ(b->tokens, a.tokens);
  auto la = store.Checkout(a.id, "");
  auto lb = store.Checkout(b->id, "");
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_TRUE(torch::equal((*la)->state.model.linear[0].s, (*lb)->state.model.linear[0].s));
  (*lb)->state.model.linear[0].s.add_(1.0);
  EXPECT_FALSE(torch::equal((*la)->state.model.linear[0].s, (*lb)->state.model.linear[0].s));
  EXPECT_EQ((*lb)->state.seen, (*la)->state.seen);
  EXPECT_TRUE((*lb)->state.seen.Contains(5));
  EXPECT_FALSE((*lb)->state.seen.Contains(4));
}

TEST(SessionStoreTest, AChosenIdIsKeptAndATakenOrMalformedOneRefused) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const std::string id = "s-00112233445566778899aabbccddeeff";
  auto open = [&](const std::string& name) {
    auto slot = store.Reserve();
    EXPECT_TRUE(slot.ok());
    (*slot)->state = SomeState(2);
    return store.Open(*std::move(slot), "", name);
  };
  auto first = open(id);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->id, id);
  EXPECT_EQ(open(id).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(open("s-00112233445566778899AABBCCDDEEFF").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.slots_in_use(), 1);  // the refused ones' slots went back
}

// Behind a proxy hashing the routing key (the id's first 8 hex digits), a fork lands with its
// source.
TEST(SessionStoreTest, AForkSharesItsSourcesRoutingKey) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  auto b = store.Fork(a.id, "");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->id.substr(0, 10), a.id.substr(0, 10));
  EXPECT_NE(b->id, a.id);
  EXPECT_TRUE(IsSessionId(b->id));
}

// What --session_dir saves: sessions changed since their last save (a read-only lease is no
// change), and the saved sessions closed since.
TEST(SessionStoreTest, ChangedSessionsAreThoseChangedSinceTheirSave) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const ModelConfig config;
  const SessionInfo a = OpenSession(store, 4);
  const SessionInfo b = OpenSession(store, 6);
  auto changed = store.ChangedSessions(config);
  ASSERT_EQ(changed.size(), 2u);
  for (const auto& snapshot : changed) {
    EXPECT_TRUE(store.MarkSaved(snapshot.id, snapshot.revision));
    EXPECT_NE(snapshot.bytes.find("\"session_id\":\"" + snapshot.id + "\""), std::string::npos);
  }
  EXPECT_TRUE(store.ChangedSessions(config).empty());
  ASSERT_TRUE(store.Export(a.id, "", config).ok());  // reads only
  EXPECT_TRUE(store.ChangedSessions(config).empty());
  { auto lease = store.Checkout(b.id, ""); }  // may have changed it
  changed = store.ChangedSessions(config);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].id, b.id);
  {
    auto busy = store.Checkout(a.id, "");
    EXPECT_EQ(store.ChangedSessions(config).size(), 1u);
  }  // busy: left for the next save
  ASSERT_TRUE(store.Close(a.id, "").ok());
  EXPECT_EQ(store.TakeClosedSaved(), std::vector<std::string>{a.id});
  EXPECT_TRUE(store.TakeClosedSaved().empty());
  EXPECT_FALSE(store.MarkSaved(a.id, 1));
}

// Another tenant's session does not exist for the caller: every call answers as for an unknown id.
TEST(SessionStoreTest, ASessionIsFoundOnlyByItsTenant) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4, "alice");
  for (const std::string other : {"bob", ""}) {
    EXPECT_EQ(store.Get(a.id, other).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store.Checkout(a.id, other).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store.Close(a.id, other).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store.Fork(a.id, other).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store.Export(a.id, other, ModelConfig()).status().code(),
              absl::StatusCode::kNotFound);
    EXPECT_EQ(store.Get(a.id, other).status().message(), "no session '" + a.id + "'");
  }
  auto fork = store.Fork(a.id, "alice");
  ASSERT_TRUE(fork.ok()) << fork.status();
  EXPECT_TRUE(store.Get(fork->id, "alice").ok()) << "a fork belongs to the same tenant";
  EXPECT_EQ(store.Get(fork->id, "bob").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Close(a.id, "alice").ok());
}

TEST(SessionStoreTest, ForkNeedsAFreeSlot) {
  Metrics metrics;
  SessionStore store(Options(1), kVocab, metrics);
  const SessionInfo a = OpenSession(store, 4);
  EXPECT_EQ(store.Fork(a.id, "").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(store.Get(a.id, "")->busy) << "the source goes back when the fork fails";
}

TEST(SessionStoreTest, IdleSessionsCloseAfterTheirTtlButBusyOnesStay) {
  Metrics metrics;
  SessionStore store(Options(4), kVocab, metrics);
  const SessionInfo idle = OpenSession(store, 1);
  const SessionInfo busy = OpenSession(store, 1);
  auto lease = store.Checkout(busy.id, "");
  ASSERT_TRUE(lease.ok());
  store.CloseIdle(absl::Now() + absl::Seconds(30));
  EXPECT_TRUE(store.Get(idle.id, "").ok()) << "within the TTL";
  store.CloseIdle(absl::Now() + absl::Minutes(2));
  EXPECT_EQ(store.Get(idle.id, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Get(busy.id, "").ok());
}

TEST(SessionStoreTest, StateBytesAreFixedPerSlotOrEachSessionsOwn) {
  Metrics metrics;
  SessionStoreOptions fixed = Options(4);
  fixed.bytes_per_slot = 1000;
  SessionStore linear(fixed, kVocab, metrics);
  OpenSession(linear, 1);
  auto one_off = linear.Reserve();
  EXPECT_EQ(linear.state_bytes_in_use(), 2000);
  EXPECT_EQ(linear.Get(OpenSession(linear, 9).id, "")->state_bytes, 1000);

  Metrics other;
  SessionStore growing(Options(4), kVocab, other);
  const SessionInfo a = OpenSession(growing, 1);
  const int64_t bytes = SomeState(1).Bytes();
  EXPECT_EQ(a.state_bytes, bytes);
  EXPECT_EQ(growing.state_bytes_in_use(), bytes);
  EXPECT_EQ(other.state_bytes.Value(), bytes);
}

}  // namespace
}  // namespace recur::testing
