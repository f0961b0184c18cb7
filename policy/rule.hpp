#pragma once
// One egress rule and its one-line syntax:
//
//   <action>@<destination>[:<protocol>[:<ports>]]
//
//   action       allow | deny
//   destination  an IPv4 address or CIDR (198.51.100.7, 10.1.2.0/24),
//                an IPv6 address or CIDR in brackets ([2001:db8::1], [2001:db8::/32]),
//                an exact domain (api.example.com),
//                a domain suffix: *.example.com (subdomains only) or .example.com (the domain
//                and its subdomains),
//                or a group: public, private, loopback, link-local, metadata, multicast, host
//                (case-insensitive; `metadata.` with a trailing dot is the host named metadata)
//   protocol     tcp | udp | icmp | any (default any); icmp takes no ports
//   ports        a port, a range or a comma list of both (443, 80,443, 443-450, 80,8000-8100);
//                default all
//
// Examples: allow@api.example.com:tcp:443, deny@private, allow@10.1.2.0/24:tcp:80,443,
// allow@*.example.com, deny@metadata, allow@[2001:db8::1]:tcp:443-450, allow@host:any:53.
#include "policy/address.hpp"

#include <airlock/host_pattern.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace airlock::policy {

enum class Action : std::uint8_t { kAllow, kDeny };
enum class Protocol : std::uint8_t { kAny, kTcp, kUdp, kIcmp };
std::string_view to_string(Action action) noexcept;
std::string_view to_string(Protocol protocol) noexcept;

struct PortRange {
  std::uint16_t first = 1;
  std::uint16_t last = 65535;
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

// A domain destination. `*.example.com` holds one wildcard pattern; `.example.com` holds the
// exact apex and the wildcard; `api.example.com` holds one exact pattern.
struct DomainMatch {
  std::vector<HostPattern> patterns;
  std::string text;  // as the canonical rule writes it
  bool matches(std::string_view name) const noexcept;
  friend bool operator==(const DomainMatch&, const DomainMatch&) = default;
};

using Destination = std::variant<Cidr, DomainMatch, Group>;

struct Rule {
  Action action = Action::kDeny;
  Destination destination = Group::kPublic;
  Protocol protocol = Protocol::kAny;
  std::vector<PortRange> ports;  // empty: every port (and ICMP, which has none)

  bool matches_protocol_and_port(Protocol p, std::uint16_t port) const noexcept;
  bool any_protocol_and_port() const noexcept { return protocol == Protocol::kAny && ports.empty(); }
  std::string to_string() const;  // canonical one-line form; parses back to an equal rule
  friend bool operator==(const Rule&, const Rule&) = default;
};

inline constexpr std::size_t kMaxRuleBytes = 1024;
inline constexpr std::size_t kMaxPortItems = 64;

struct RuleParseResult {
  std::optional<Rule> rule;
  std::string error;  // set when rule is empty: what is wrong, naming the offending part
};

// Data-path safe: never throws.
RuleParseResult parse_rule(std::string_view text);
// Control path (config, CLI): throws ConfigError("rule '<text>': <error>").
Rule parse_rule_or_throw(std::string_view text);

}  // namespace airlock::policy
