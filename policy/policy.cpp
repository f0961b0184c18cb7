#include "policy/policy.hpp"

#include <algorithm>

namespace airlock::policy {

std::string_view to_string(AnswerVerdict verdict) noexcept {
  switch (verdict) {
    case AnswerVerdict::kPass: return "pass";
    case AnswerVerdict::kDeniedDomain: return "denied-domain";
    case AnswerVerdict::kRebinding: return "rebinding";
  }
  return "?";
}

std::vector<Rule> Policy::default_rules() {
  Rule public_rule;
  public_rule.action = Action::kAllow;
  public_rule.destination = Group::kPublic;
  public_rule.protocol = Protocol::kTcp;
  Rule dns;
  dns.action = Action::kAllow;
  dns.destination = Group::kHost;
  dns.ports = {PortRange{53, 53}};
  return {public_rule, dns};
}

Policy::Policy(std::vector<Rule> rules, std::vector<IpAddress> host_addresses, bool append_defaults)
    : rules_(std::move(rules)), configured_(rules_.size()), groups_(std::move(host_addresses)) {
  if (append_defaults) {
    for (auto& r : default_rules()) rules_.push_back(std::move(r));
  }
}

Policy Policy::from_text(std::span<const std::string> lines, std::vector<IpAddress> host_addresses,
                         bool append_defaults) {
  std::vector<Rule> rules;
  rules.reserve(lines.size());
  for (const auto& line : lines) rules.push_back(parse_rule_or_throw(line));
  return Policy(std::move(rules), std::move(host_addresses), append_defaults);
}

bool Policy::destination_matches(const Rule& rule, const Flow& flow, const secrets::PinQuery* pins) const {
  if (const auto* cidr = std::get_if<Cidr>(&rule.destination)) {
    // A deny also covers the IPv6 forms that embed an address of its range; an allow names
    // exactly what it allows.
    return rule.action == Action::kDeny ? reaches(*cidr, flow.destination) : cidr->contains(flow.destination);
  }
  if (const auto* group = std::get_if<Group>(&rule.destination)) return groups_.contains(*group, flow.destination);
  const auto& domain = std::get<DomainMatch>(rule.destination);
  auto pinned = [&] {
    if (pins == nullptr) return false;
    return std::any_of(domain.patterns.begin(), domain.patterns.end(),
                       [&](const HostPattern& p) { return pins->pinned(flow.destination, p); });
  };
  if (rule.action == Action::kDeny) {
    return flow.sni.empty() ? pinned() : domain.matches(flow.sni);
  }
  if (!flow.sni.empty() && !domain.matches(flow.sni)) return false;
  return pinned();
}

Decision Policy::decide(const Flow& flow, const secrets::PinQuery* pins) const {
  if (flow.protocol == Protocol::kUdp && flow.port == 443) return Decision{Action::kDeny, Decision::kQuic};
  if (flow.protocol == Protocol::kTcp && flow.port == 853) return Decision{Action::kDeny, Decision::kDnsOverTls};
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    if (!rule.matches_protocol_and_port(flow.protocol, flow.port)) continue;
    if (destination_matches(rule, flow, pins)) return Decision{rule.action, i};
  }
  return Decision{Action::kDeny, Decision::kNoRule};
}

bool Policy::denies_domain(std::string_view name) const {
  for (const Rule& rule : rules_) {
    const auto* domain = std::get_if<DomainMatch>(&rule.destination);
    if (domain == nullptr || !domain->matches(name)) continue;
    return rule.action == Action::kDeny && rule.any_protocol_and_port();
  }
  return false;
}

bool Policy::answer_address_allowed(const IpAddress& ip) const {
  const bool sensitive = groups_.contains(Group::kPrivate, ip) || groups_.contains(Group::kLoopback, ip) ||
                         groups_.contains(Group::kLinkLocal, ip) || groups_.contains(Group::kMetadata, ip) ||
                         groups_.contains(Group::kHost, ip);
  if (!sensitive) return true;
  // Only rules the user wrote count: the default allow@host:any:53 must not let a name point
  // at the gateway.
  for (std::size_t i = 0; i < configured_; ++i) {
    const Rule& rule = rules_[i];
    bool contains = false;
    if (const auto* cidr = std::get_if<Cidr>(&rule.destination)) {
      contains = rule.action == Action::kDeny ? reaches(*cidr, ip) : cidr->contains(ip);
    } else if (const auto* group = std::get_if<Group>(&rule.destination)) {
      contains = *group != Group::kPublic && groups_.contains(*group, ip);
    }
    if (contains) return rule.action == Action::kAllow;
  }
  return false;
}

namespace {

bool overlap(const Cidr& a, const Cidr& b) {
  const IpAddress x = canonical(a.network), y = canonical(b.network);
  if (x.is_v4() != y.is_v4()) return false;
  return a.contains(y) || b.contains(x);
}

}  // namespace

bool Policy::opens(const Cidr& range) const {
  for (std::size_t i = 0; i < configured_; ++i) {
    const Rule& rule = rules_[i];
    if (rule.action != Action::kAllow) continue;
    if (const auto* cidr = std::get_if<Cidr>(&rule.destination)) {
      if (overlap(*cidr, range)) return true;
    } else if (const auto* group = std::get_if<Group>(&rule.destination)) {
      if (*group == Group::kPublic) continue;
      // A group holds the IPv6 forms of its IPv4 members too (AddressGroups::contains).
      std::vector<Cidr> members;
      if (*group == Group::kHost) {
        for (const IpAddress& ip : groups_.host_addresses()) members.push_back(Cidr::host(ip));
      } else {
        members = group_ranges(*group);
      }
      for (const Cidr& member : members) {
        if (overlap(member, range)) return true;
        if (!member.network.is_v4()) continue;
        for (const Cidr& form : embedding_networks(member))
          if (overlap(form, range)) return true;
        for (const Cidr& form : scattered_embedding_prefixes())
          if (overlap(form, range)) return true;
      }
    }
  }
  return false;
}

std::string Policy::explain(const Decision& decision) const {
  switch (decision.rule) {
    case Decision::kNoRule: return "no rule allows it";
    case Decision::kQuic: return "QUIC (UDP 443) is dropped so clients fall back to TCP";
    case Decision::kDnsOverTls: return "DNS over TLS (TCP 853) would bypass the sandbox's DNS";
    default: break;
  }
  if (decision.rule >= rules_.size()) return "?";
  std::string text = rules_[decision.rule].to_string();
  if (decision.rule >= configured_) text += " (default)";
  return text;
}

AnswerVerdict Policy::check_answer(std::span<const std::string> names, std::span<const IpAddress> addresses) const {
  for (const auto& name : names) {
    if (denies_domain(name)) return AnswerVerdict::kDeniedDomain;
  }
  for (const auto& ip : addresses) {
    if (!answer_address_allowed(ip)) return AnswerVerdict::kRebinding;
  }
  return AnswerVerdict::kPass;
}

}  // namespace airlock::policy
