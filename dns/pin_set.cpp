#include "dns/pin_set.hpp"

#include "dns/answer.hpp"

#include <airlock/host_pattern.hpp>
#include <policy/address.hpp>

#include <algorithm>
#include <mutex>

namespace airlock::dns {

PinSet::PinSet(NowFn now, PinSetOptions options) : now_(std::move(now)), options_(options) {
  if (options_.max_entries == 0) options_.max_entries = 1;
  if (options_.max_hold < options_.min_hold) options_.max_hold = options_.min_hold;
}

std::size_t PinSet::record(const Message& answer, PinTime now) {
  if (!answer.header.qr() || answer.header.opcode() != 0 || answer.header.rcode() != rcode::kNoError ||
      answer.questions.size() != 1) {
    return 0;
  }
  const AnswerChain chain = follow_chain(answer);
  if (chain.addresses.empty()) return 0;
  std::size_t count = 0;
  std::unique_lock lock(mutex_);
  // Credited to the query name only (docs/security.md, "What a DNS answer pins"): the chain's
  // other names are the answer's claims about names nobody asked for.
  const std::string& asked = chain.names.front();
  for (const auto& a : chain.addresses) {
    const auto hold = std::clamp(std::chrono::seconds(a.ttl), options_.min_hold, options_.max_hold);
    insert_locked(policy::canonical(a.ip), asked, now + hold, now);
    ++count;
  }
  return count;
}

void PinSet::pin(const IpAddress& ip, std::string_view name, std::chrono::seconds hold, PinTime now) {
  hold = std::clamp(hold, options_.min_hold, options_.max_hold);
  std::unique_lock lock(mutex_);
  insert_locked(policy::canonical(ip), normalize_host(name), now + hold, now);
}

void PinSet::insert_locked(const IpAddress& ip, std::string name, PinTime expires, PinTime now) {
  auto& entries = by_ip_[ip];
  for (auto& e : entries) {
    if (e.name != name) continue;
    if (expires > e.expires) {
      erase_index_locked(ip, e.name, e.expires);
      e.expires = expires;
      by_expiry_.emplace(expires, ip, e.name);
    }
    return;
  }
  if (by_expiry_.size() >= options_.max_entries) {
    // Room first from what has expired, then from what expires soonest.
    auto it = by_expiry_.begin();
    if (std::get<0>(*it) <= now) {
      while (!by_expiry_.empty() && std::get<0>(*by_expiry_.begin()) <= now) {
        const auto [t, victim_ip, victim_name] = *by_expiry_.begin();
        drop_locked(victim_ip, victim_name);
      }
    } else {
      const auto [t, victim_ip, victim_name] = *it;
      drop_locked(victim_ip, victim_name);
    }
  }
  auto& slot = by_ip_[ip];  // drop_locked may have erased and rehashed
  slot.push_back(Entry{name, expires});
  by_expiry_.emplace(expires, ip, std::move(name));
}

void PinSet::erase_index_locked(const IpAddress& ip, const std::string& name, PinTime expires) {
  by_expiry_.erase(std::make_tuple(expires, ip, name));
}

void PinSet::drop_locked(const IpAddress& ip, const std::string& name) {
  auto it = by_ip_.find(ip);
  if (it == by_ip_.end()) return;
  auto& entries = it->second;
  for (auto e = entries.begin(); e != entries.end(); ++e) {
    if (e->name == name) {
      erase_index_locked(ip, e->name, e->expires);
      entries.erase(e);
      break;
    }
  }
  if (entries.empty()) by_ip_.erase(it);
}

bool PinSet::pinned_at(const IpAddress& ip, const HostPattern& pattern, PinTime now) const {
  std::shared_lock lock(mutex_);
  auto it = by_ip_.find(policy::canonical(ip));
  if (it == by_ip_.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(),
                     [&](const Entry& e) { return e.expires > now && pattern.matches(e.name); });
}

bool PinSet::pinned(const IpAddress& ip, const HostPattern& pattern) const {
  return pinned_at(ip, pattern, now_());
}

std::vector<std::string> PinSet::names_for(const IpAddress& ip, PinTime now) const {
  std::vector<std::string> out;
  std::shared_lock lock(mutex_);
  auto it = by_ip_.find(policy::canonical(ip));
  if (it == by_ip_.end()) return out;
  for (const auto& e : it->second) {
    if (e.expires > now) out.push_back(e.name);
  }
  return out;
}

std::size_t PinSet::size() const {
  std::shared_lock lock(mutex_);
  return by_expiry_.size();
}

void PinSet::expire(PinTime now) {
  std::unique_lock lock(mutex_);
  while (!by_expiry_.empty() && std::get<0>(*by_expiry_.begin()) <= now) {
    const auto [t, ip, name] = *by_expiry_.begin();
    drop_locked(ip, name);
  }
}

}  // namespace airlock::dns
