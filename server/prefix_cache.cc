#include "server/prefix_cache.h"

#include <torch/torch.h>

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"

namespace recur {

PrefixCache::PrefixCache(int64_t capacity_bytes, Metrics& metrics)
    : capacity_bytes_(std::max<int64_t>(capacity_bytes, 0)), metrics_(metrics) {
  metrics_.prefix_cache_capacity_bytes.Set(static_cast<double>(capacity_bytes_));
}

namespace {

// The key of a prefix one token longer than the prefix `key` stands for.
uint64_t Extend(uint64_t key, int64_t token) { return absl::HashOf(key, token); }

}  // namespace

uint64_t PrefixCache::KeyOf(const std::string& tenant, absl::Span<const int64_t> tokens) {
  uint64_t key = absl::HashOf(tenant);
  for (int64_t token : tokens) key = Extend(key, token);
  return key;
}

std::vector<uint64_t> PrefixCache::PrefixKeys(const std::string& tenant,
                                              absl::Span<const int64_t> tokens) {
  std::vector<uint64_t> keys(tokens.size() + 1);
  keys[0] = KeyOf(tenant, {});
  for (size_t i = 0; i < tokens.size(); ++i) keys[i + 1] = Extend(keys[i], tokens[i]);
  return keys;
}

bool PrefixCache::Matches(const Entry& entry, const std::string& tenant,
                          absl::Span<const int64_t> tokens) {
  return entry.tenant == tenant && entry.tokens.size() == tokens.size() &&
         std::equal(entry.tokens.begin(), entry.tokens.end(), tokens.begin());
}

int64_t PrefixCache::BytesOf(const Entry& entry) {
  const int64_t logits = entry.logits.defined() ? entry.logits.numel() * 4 : 0;
  return entry.state.Bytes() + logits +
         static_cast<int64_t>(entry.tokens.size() * sizeof(int32_t) + entry.tenant.size());
}

std::optional<PrefixHit> PrefixCache::Lookup(const std::string& tenant,
                                             absl::Span<const int64_t> prompt) {
  if (!enabled()) return std::nullopt;
  metrics_.prefix_cache_lookups.Increment();
  const int64_t n = static_cast<int64_t>(prompt.size());
  std::vector<uint64_t> keys;
  for (auto length = lengths_.upper_bound(n); length != lengths_.begin();) {
    const int64_t l = (--length)->first;
    if (keys.empty()) keys = PrefixKeys(tenant, prompt);
    auto found = by_key_.find(keys[l]);
    if (found == by_key_.end()) continue;
    Entries::iterator entry = found->second;
    if (!Matches(*entry, tenant, prompt.subspan(0, l))) continue;
    if (l == n && !entry->logits.defined()) continue;  // something must be fed to sample from
    Touch(entry);
    metrics_.prefix_cache_hits.Increment();
    metrics_.prefix_cache_hit_tokens.Increment(static_cast<double>(l));
    return PrefixHit{l, entry->state.Clone(), entry->logits};
  }
  return std::nullopt;
}

void PrefixCache::Insert(const std::string& tenant, absl::Span<const int64_t> prefix,
                         const ModelState& state, const torch::Tensor& logits) {
  if (!enabled() || prefix.empty()) return;
  const uint64_t key = KeyOf(tenant, prefix);
  if (auto found = by_key_.find(key); found != by_key_.end()) {
    Entries::iterator entry = found->second;
    if (Matches(*entry, tenant, prefix)) {
      if (!entry->logits.defined() && logits.defined()) {
        bytes_ -= entry->bytes;
        entry->logits = logits.clone();
        entry->bytes = BytesOf(*entry);
        bytes_ += entry->bytes;
      }
      Touch(entry);
      EvictToCapacity();
      UpdateGauges();
      return;
    }
    Erase(entry);  // a different prefix with the same hash: the newer one stays
  }
  Entry entry;
  entry.key = key;
  entry.tenant = tenant;
  entry.tokens.assign(prefix.begin(), prefix.end());
  entry.state = state.Clone();
  if (logits.defined()) entry.logits = logits.clone();
  entry.bytes = BytesOf(entry);
  if (entry.bytes > capacity_bytes_) return;
  lru_.push_front(std::move(entry));
  by_key_[key] = lru_.begin();
  lengths_[static_cast<int64_t>(prefix.size())] += 1;
  bytes_ += lru_.front().bytes;
  EvictToCapacity();
  UpdateGauges();
}

void PrefixCache::Touch(Entries::iterator entry) { lru_.splice(lru_.begin(), lru_, entry); }

void PrefixCache::Erase(Entries::iterator entry) {
  const int64_t length = static_cast<int64_t>(entry->tokens.size());
  if (--lengths_[length] == 0) lengths_.erase(length);
  by_key_.erase(entry->key);
  bytes_ -= entry->bytes;
  lru_.erase(entry);
}

void PrefixCache::EvictToCapacity() {
  while (bytes_ > capacity_bytes_ && !lru_.empty()) {
    Erase(std::prev(lru_.end()));
    metrics_.prefix_cache_evictions.Increment();
  }
}

void PrefixCache::UpdateGauges() {
  metrics_.prefix_cache_bytes.Set(static_cast<double>(bytes_));
  metrics_.prefix_cache_entries.Set(static_cast<double>(lru_.size()));
}

}  // namespace recur
