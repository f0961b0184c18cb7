#pragma once
// The DNS pin set of secrets-spec §3 gate 2: which addresses this sandbox was given, for which
// names, until when. Filled from every answer the forwarder passes to the guest; read by the
// secrets engine and the policy on every connection. Time is always passed in; the clock used
// by the PinQuery interface is the function given at construction.
#include "dns/message.hpp"

#include <airlock/host_pattern.hpp>
#include <common/ip_address.hpp>
#include <secrets/engine/engine.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace airlock::dns {

using PinClock = std::chrono::steady_clock;
using PinTime = PinClock::time_point;

struct PinSetOptions {
  std::chrono::seconds min_hold{300};    // a pin lives at least this long (clients cache DNS)
  std::chrono::seconds max_hold{86400};  // ... and at most this long, whatever the TTL says
  std::size_t max_entries = 65536;       // (address, name) pairs; the soonest to expire goes first
};

class PinSet final : public secrets::PinQuery {
 public:
  using NowFn = std::function<PinTime()>;
  // `now` is the time source for pinned(ip, pattern) (the PinQuery interface); the gateway
  // passes steady_clock::now, tests a fake.
  explicit PinSet(NowFn now, PinSetOptions options = {});

  // Records an answer the guest is about to receive: follows the CNAME chain from the query
  // name (follow_chain: strict, anchored at the question) and pins each address of the asked
  // type owned by the chain's last name under the query name alone, never under the chain's
  // other names, held for max(TTL, min_hold) (TTL capped at max_hold; a pin is never
  // shortened). A chain that loops, forks or is too long pins nothing. Only NOERROR responses
  // to standard queries with one question count. Returns the number of (address, name) pairs
  // added or refreshed.
  std::size_t record(const Message& answer, PinTime now);
  // Pins one address under one name (normalized) for `hold`, clamped like record().
  void pin(const IpAddress& ip, std::string_view name, std::chrono::seconds hold, PinTime now);

  // Is a pin for `ip` under a name matching `pattern` held at `now`? IPv4-mapped IPv6 addresses
  // are looked up as their IPv4 form.
  bool pinned_at(const IpAddress& ip, const HostPattern& pattern, PinTime now) const;
  bool pinned(const IpAddress& ip, const HostPattern& pattern) const override;
  // The names `ip` is pinned to at `now` (for audit records).
  std::vector<std::string> names_for(const IpAddress& ip, PinTime now) const;

  std::size_t size() const;     // (address, name) pairs held, expired or not
  void expire(PinTime now);     // drops every expired pair
  PinTime now() const { return now_(); }
  const PinSetOptions& options() const noexcept { return options_; }

 private:
  struct Entry {
    std::string name;
    PinTime expires;
  };
  void insert_locked(const IpAddress& ip, std::string name, PinTime expires, PinTime now);
  void erase_index_locked(const IpAddress& ip, const std::string& name, PinTime expires);
  void drop_locked(const IpAddress& ip, const std::string& name);

  NowFn now_;
  PinSetOptions options_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<IpAddress, std::vector<Entry>, IpAddressHash> by_ip_;
  std::set<std::tuple<PinTime, IpAddress, std::string>> by_expiry_;  // eviction order
};

}  // namespace airlock::dns
