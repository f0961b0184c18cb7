#pragma once
// Internal to the gateway: the bookkeeping of one event loop's pool of idle, verified upstream
// HTTP/1 TLS connections (issue 15). No I/O, no clock of its own, no locks: the loop that owns it
// is the only one that touches it. What makes a connection (connection.cpp) decides what goes in
// and watches what is held; this only keeps the order (LIFO per key), the bounds and the ages.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace airlock::gateway {

// Everything that made an upstream connection what it is. Two guest connections share one only
// when all of it is equal: the address it was connected to, the name it was verified against
// (the SNI; empty: the address), the ALPN offered and the protocol the upstream chose, the
// trust it was verified under, and whose it was (the listener and the guest's address: a gateway
// serving several clients never lends one client's connection to another).
struct UpstreamKey {
  std::string destination;  // "203.0.113.2:443"
  std::string sni;
  std::string alpn_offer;   // the offered protocols, comma-joined
  std::string protocol;     // the upstream's choice ("http/1.1"; empty: none)
  const void* trust = nullptr;  // the UpstreamVerifier it was verified with
  std::string owner;        // listener kind and client IP
  bool operator==(const UpstreamKey&) const = default;
};

struct UpstreamPoolLimits {
  std::size_t per_key = 32;   // idle connections to one key
  std::size_t total = 128;    // idle connections in one loop
  std::chrono::steady_clock::duration max_idle = std::chrono::seconds(30);
};

template <class T>
class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  explicit UpstreamPool(UpstreamPoolLimits limits = {}) : limits_(limits) {}
  void set_limits(UpstreamPoolLimits limits) { limits_ = limits; }
  const UpstreamPoolLimits& limits() const noexcept { return limits_; }
  bool enabled() const noexcept { return limits_.per_key > 0 && limits_.total > 0 && limits_.max_idle.count() > 0; }

  // Holds `value` under `key`; returns its id (0: not held, the pool is disabled; `value` then
  // goes to `evicted`). What the bounds push out (the key's oldest, then the loop's oldest) is
  // moved to `evicted` for the caller to close.
  std::uint64_t put(UpstreamKey key, T value, Clock::time_point now, std::vector<T>& evicted) {
    if (!enabled()) {
      evicted.push_back(std::move(value));
      return 0;
    }
    std::size_t same = 0;
    for (const Entry& e : entries_) same += e.key == key ? 1 : 0;
    while (same >= limits_.per_key) {
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->key == key) {
          evicted.push_back(std::move(it->value));
          entries_.erase(it);
          break;
        }
      }
      --same;
    }
    while (entries_.size() >= limits_.total) {
      evicted.push_back(std::move(entries_.front().value));
      entries_.erase(entries_.begin());
    }
    const std::uint64_t id = ++next_id_;
    entries_.push_back(Entry{std::move(key), std::move(value), now, id});
    return id;
  }

  // The most recently held connection of `key` that is not past max_idle (LIFO: the warmest, and
  // the others age out). Entries past max_idle met on the way are moved to `expired`.
  std::optional<T> take(const UpstreamKey& key, Clock::time_point now, std::vector<T>& expired) {
    drop_expired(now, expired);
    for (auto it = entries_.end(); it != entries_.begin();) {
      --it;
      if (it->key == key) {
        std::optional<T> out(std::move(it->value));
        entries_.erase(it);
        return out;
      }
    }
    return std::nullopt;
  }

  // The entry `id` leaves the pool (it became readable, or its expiry came): null when it is not
  // held any more (taken, evicted, or already removed).
  std::optional<T> remove(std::uint64_t id) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->id == id) {
        std::optional<T> out(std::move(it->value));
        entries_.erase(it);
        return out;
      }
    }
    return std::nullopt;
  }

  // Every entry held for max_idle or longer (entries are in the order they were held).
  void drop_expired(Clock::time_point now, std::vector<T>& expired) {
    while (!entries_.empty() && now - entries_.front().since >= limits_.max_idle) {
      expired.push_back(std::move(entries_.front().value));
      entries_.erase(entries_.begin());
    }
  }

  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t count(const UpstreamKey& key) const {
    std::size_t n = 0;
    for (const Entry& e : entries_) n += e.key == key ? 1 : 0;
    return n;
  }
  // Everything held, for the owner to close (the loop is stopping).
  std::vector<T> clear() {
    std::vector<T> out;
    for (Entry& e : entries_) out.push_back(std::move(e.value));
    entries_.clear();
    return out;
  }

 private:
  struct Entry {
    UpstreamKey key;
    T value;
    Clock::time_point since;
    std::uint64_t id;
  };
  UpstreamPoolLimits limits_;
  // Oldest first. Bounded by limits_.total (128 by default): linear scans cost less than a
  // handshake by orders of magnitude, and only release points and new connections touch it.
  std::vector<Entry> entries_;
  std::uint64_t next_id_ = 0;
};

}  // namespace airlock::gateway
