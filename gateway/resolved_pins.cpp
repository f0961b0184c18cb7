#include "gateway/resolved_pins.hpp"

#include <algorithm>

namespace airlock::gateway {

ResolvedPins::ResolvedPins(std::string name, std::vector<IpAddress> addresses)
    : name_(normalize_host(name)), addresses_(std::move(addresses)) {}

bool ResolvedPins::pinned(const IpAddress& ip, const HostPattern& pattern) const {
  if (name_.empty() || !pattern.matches(name_)) return false;
  return std::find(addresses_.begin(), addresses_.end(), ip) != addresses_.end();
}

}  // namespace airlock::gateway
