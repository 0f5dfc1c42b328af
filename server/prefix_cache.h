#ifndef RECUR_SERVER_PREFIX_CACHE_H_
#define RECUR_SERVER_PREFIX_CACHE_H_

// An exact prefix-state cache: the model's state after the first L tokens of a prompt, kept so
// that a later request whose prompt starts with those same L tokens feeds only the rest. A
// recurrent state is constant-size, so a prefix of any length costs one state's bytes, and an
// entry can sit at any token (the end of a prompt), not only at block boundaries. The engine adds
// an entry at the end of every prompt, with the logits that predict the next token (so an
// identical prompt needs no model call at all), and every `interval` tokens of long prompts (so
// prompts that share a long beginning and then differ still share its state).
//
// Keys are the exact tokens and the tenant (server/authenticator.h): a hash picks the candidate,
// the tokens are compared, so a collision costs a miss, never someone else's state; and one tenant
// cannot time another's prompts through the cache. Bounded in bytes (states, logits and keys);
// the least recently used entries go first. Engine-thread only: not thread-safe.

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "model/model_state.h"
#include "server/metrics.h"

namespace recur {

struct PrefixHit {
  int64_t tokens = 0;    // the prompt's first `tokens` are in `state`
  ModelState state;      // a copy, the caller's to advance
  torch::Tensor logits;  // [V] float on the host predicting token `tokens`; may be undefined
};

class PrefixCache {
 public:
  // `capacity_bytes` 0 turns the cache off (every lookup misses, nothing is kept).
  PrefixCache(int64_t capacity_bytes, Metrics& metrics);

  bool enabled() const { return capacity_bytes_ > 0; }
  int64_t capacity_bytes() const { return capacity_bytes_; }

  // The longest kept prefix of `prompt` for `tenant`: shorter than the prompt, or all of it when
  // its entry has logits (then nothing needs feeding before sampling). Counts a lookup, and a hit.
  std::optional<PrefixHit> Lookup(const std::string& tenant, absl::Span<const int64_t> prompt);

  // Keeps a copy of `state`, the state after `prefix`, with `logits` ([V] on the host, may be
  // undefined) predicting the token after it. An entry already there is refreshed (and gains the
  // logits if it had none). Entries larger than the whole capacity are not kept.
  void Insert(const std::string& tenant, absl::Span<const int64_t> prefix, const ModelState& state,
              const torch::Tensor& logits);

  int64_t bytes() const { return bytes_; }
  int64_t entries() const { return static_cast<int64_t>(lru_.size()); }

 private:
  struct Entry {
    uint64_t key = 0;  // KeyOf(tenant, tokens)
    std::string tenant;
    std::vector<int32_t> tokens;  // token ids fit int32 (vocabularies are far smaller)
    ModelState state;
    torch::Tensor logits;
    int64_t bytes = 0;
  };
  using Entries = std::list<Entry>;

  // The key of `tokens` for `tenant`, and those of every prefix: result[L] keys the first L.
  // absl::Hash is seeded per process, so a client cannot aim collisions at it; a collision would
  // only cost a miss anyway (Matches compares the tokens).
  static uint64_t KeyOf(const std::string& tenant, absl::Span<const int64_t> tokens);
  static std::vector<uint64_t> PrefixKeys(const std::string& tenant,
                                          absl::Span<const int64_t> tokens);
  static bool Matches(const Entry& entry, const std::string& tenant,
                      absl::Span<const int64_t> tokens);
  static int64_t BytesOf(const Entry& entry);
  void Touch(Entries::iterator entry);
  void Erase(Entries::iterator entry);
  void EvictToCapacity();
  void UpdateGauges();

  const int64_t capacity_bytes_;
  Metrics& metrics_;
  Entries lru_;  // most recently used first
  absl::flat_hash_map<uint64_t, Entries::iterator> by_key_;
  // How many entries have each prefix length: a lookup tries only lengths that exist.
  std::map<int64_t, int64_t> lengths_;
  int64_t bytes_ = 0;
};

}  // namespace recur

#endif  // RECUR_SERVER_PREFIX_CACHE_H_
