#include "policy/rule.hpp"

#include <airlock/errors.hpp>

#include <algorithm>
#include <charconv>

namespace airlock::policy {
namespace {

// Echo of user text for an error message: printable ASCII kept, the rest as \xNN, capped.
std::string show(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < text.size() && i < 100; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (text.size() > 100) out += "...";
  return out + "'";
}

struct Fail {
  std::string message;
};

std::optional<std::uint16_t> parse_port(std::string_view s) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value < 1 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::variant<std::vector<PortRange>, Fail> parse_ports(std::string_view text) {
  std::vector<PortRange> out;
  if (text.empty()) return Fail{"the port list is empty (write ports after the protocol, or drop the ':')"};
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == text.npos ? text.npos : comma - start);
    if (item.empty()) return Fail{"empty entry in the port list " + show(text)};
    if (out.size() == kMaxPortItems) {
      return Fail{"more than " + std::to_string(kMaxPortItems) + " entries in the port list"};
    }
    const std::size_t dash = item.find('-');
    if (dash == item.npos) {
      auto p = parse_port(item);
      if (!p) return Fail{"port " + show(item) + " is not a number from 1 to 65535"};
      out.push_back({*p, *p});
    } else {
      auto a = parse_port(item.substr(0, dash));
      auto b = parse_port(item.substr(dash + 1));
      if (!a || !b) return Fail{"port range " + show(item) + " needs two numbers from 1 to 65535"};
      if (*a > *b) return Fail{"port range " + show(item) + " runs backwards"};
      out.push_back({*a, *b});
    }
    if (comma == text.npos) break;
    start = comma + 1;
  }
  return out;
}

std::variant<Destination, Fail> parse_destination(std::string_view text) {
  if (text.empty()) return Fail{"the destination is empty"};
  if (auto g = parse_group(text)) return Destination{*g};
  if (text.front() == '[') {
    // [v6] or [v6/len]; also [v6]/len.
    const std::size_t close = text.find(']');
    if (close == text.npos) return Fail{"unclosed '[' in " + show(text)};
    std::string inner(text.substr(1, close - 1));
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != '/' || inner.find('/') != std::string::npos) {
        return Fail{"unexpected " + show(after) + " after ']'"};
      }
      inner += after;
    }
    if (inner.find(':') == std::string::npos) {
      return Fail{show(text) + ": brackets are for IPv6 addresses; write IPv4 without them"};
    }
    std::string error;
    auto cidr = Cidr::parse(inner, &error);
    if (!cidr) return Fail{error};
    return Destination{*cidr};
  }
  if (text.find(':') != text.npos) {
    return Fail{"IPv6 addresses must be in brackets, e.g. allow@[2001:db8::1]:tcp:443"};
  }
  // An IPv4 address or network: only digits, dots and one slash.
  const bool numeric = std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '/';
  });
  if (text.front() != '.' && (numeric || text.find('/') != text.npos)) {
    std::string error;
    auto cidr = Cidr::parse(text, &error);
    if (!cidr) return Fail{error};
    return Destination{*cidr};
  }
  // A domain.
  DomainMatch domain;
  try {
    if (text.front() == '.') {
      const std::string_view apex = text.substr(1);
      if (apex.empty()) return Fail{"domain suffix " + show(text) + " is empty"};
      if (apex.front() == '.') return Fail{"domain suffix " + show(text) + " has an empty label"};
      const HostPattern wild = HostPattern::wildcard("*." + std::string(apex));
      domain.patterns = {HostPattern::exact(apex), wild};
      domain.text = wild.text().substr(1);
    } else if (text.find('*') != text.npos) {
      domain.patterns = {HostPattern::wildcard(text)};
      domain.text = domain.patterns[0].text();
    } else {
      domain.patterns = {HostPattern::exact(text)};
      domain.text = domain.patterns[0].text();
    }
  } catch (const ConfigError& e) {
    return Fail{std::string("bad domain: ") + e.what()};
  }
  return Destination{std::move(domain)};
}

std::variant<Rule, Fail> parse(std::string_view text) {
  if (text.empty()) return Fail{"the rule is empty"};
  if (text.size() > kMaxRuleBytes) return Fail{"the rule is longer than " + std::to_string(kMaxRuleBytes) + " bytes"};
  const std::size_t at = text.find('@');
  if (at == text.npos) {
    return Fail{"expected <allow|deny>@<destination>[:<tcp|udp|icmp|any>[:<ports>]]"};
  }
  Rule rule;
  const std::string_view action = text.substr(0, at);
  if (action == "allow") {
    rule.action = Action::kAllow;
  } else if (action == "deny") {
    rule.action = Action::kDeny;
  } else {
    return Fail{"unknown action " + show(action) + " (allow or deny)"};
  }
  std::string_view rest = text.substr(at + 1);
  // The destination ends at the first ':' outside brackets.
  std::size_t dest_end = 0;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == rest.npos) return Fail{"unclosed '[' in " + show(rest)};
    dest_end = rest.find(':', close);
  } else {
    dest_end = rest.find(':');
    // `allow@2001:db8::1`: an unbracketed IPv6 address, not a destination with a protocol.
    if (dest_end != rest.npos) {
      const std::string_view next = rest.substr(dest_end + 1);
      const std::string_view proto = next.substr(0, next.find(':'));
      if (proto != "tcp" && proto != "udp" && proto != "icmp" && proto != "any" &&
          IpAddress::parse(rest.substr(0, rest.find_first_of("/", 0))).has_value()) {
        return Fail{"IPv6 addresses must be in brackets, e.g. allow@[2001:db8::1]:tcp:443"};
      }
      if (proto != "tcp" && proto != "udp" && proto != "icmp" && proto != "any" && rest.find("::") != rest.npos) {
        return Fail{"IPv6 addresses must be in brackets, e.g. allow@[2001:db8::1]:tcp:443"};
      }
    }
  }
  auto dest = parse_destination(rest.substr(0, dest_end));
  if (auto* f = std::get_if<Fail>(&dest)) return *f;
  rule.destination = std::move(std::get<Destination>(dest));
  if (dest_end == rest.npos) return rule;

  rest = rest.substr(dest_end + 1);
  const std::size_t colon = rest.find(':');
  const std::string_view proto = rest.substr(0, colon);
  if (proto == "tcp") {
    rule.protocol = Protocol::kTcp;
  } else if (proto == "udp") {
    rule.protocol = Protocol::kUdp;
  } else if (proto == "any") {
    rule.protocol = Protocol::kAny;
  } else if (proto == "icmp") {
    rule.protocol = Protocol::kIcmp;
  } else if (!proto.empty() && parse_ports(proto).index() == 0) {
    return Fail{"expected a protocol before the ports: write :tcp:" + std::string(proto) +
                ", :udp:" + std::string(proto) + " or :any:" + std::string(proto)};
  } else {
    return Fail{"unknown protocol " + show(proto) + " (tcp, udp, icmp or any)"};
  }
  if (colon == rest.npos) return rule;
  if (rule.protocol == Protocol::kIcmp) return Fail{"icmp has no ports: write allow@<destination>:icmp"};
  const std::string_view ports = rest.substr(colon + 1);
  if (ports.find(':') != ports.npos) return Fail{"too many ':' fields after the ports in " + show(ports)};
  auto parsed = parse_ports(ports);
  if (auto* f = std::get_if<Fail>(&parsed)) return *f;
  rule.ports = std::move(std::get<std::vector<PortRange>>(parsed));
  return rule;
}

}  // namespace

std::string_view to_string(Action action) noexcept { return action == Action::kAllow ? "allow" : "deny"; }

std::string_view to_string(Protocol protocol) noexcept {
  switch (protocol) {
    case Protocol::kTcp: return "tcp";
    case Protocol::kUdp: return "udp";
    case Protocol::kIcmp: return "icmp";
    case Protocol::kAny: return "any";
  }
  return "?";
}

bool DomainMatch::matches(std::string_view name) const noexcept {
  return std::any_of(patterns.begin(), patterns.end(), [&](const HostPattern& p) { return p.matches(name); });
}

bool Rule::matches_protocol_and_port(Protocol p, std::uint16_t port) const noexcept {
  if (protocol != Protocol::kAny && protocol != p) return false;
  if (ports.empty()) return true;
  if (p == Protocol::kIcmp) return false;  // a rule limited to ports never matches ICMP
  return std::any_of(ports.begin(), ports.end(),
                     [&](const PortRange& r) { return port >= r.first && port <= r.last; });
}

std::string Rule::to_string() const {
  std::string out(policy::to_string(action));
  out += '@';
  if (const auto* c = std::get_if<Cidr>(&destination)) {
    if (c->network.is_v4()) {
      out += c->to_string();
    } else {
      out += '[' + c->to_string() + ']';
    }
  } else if (const auto* d = std::get_if<DomainMatch>(&destination)) {
    out += d->text;
    // A one-label host named like a group keeps its trailing dot, so it reads back as a host.
    if (parse_group(d->text)) out += '.';
  } else {
    out += policy::to_string(std::get<Group>(destination));
  }
  if (protocol == Protocol::kAny && ports.empty()) return out;
  out += ':';
  out += policy::to_string(protocol);
  for (std::size_t i = 0; i < ports.size(); ++i) {
    out += i == 0 ? ':' : ',';
    out += std::to_string(ports[i].first);
    if (ports[i].last != ports[i].first) out += '-' + std::to_string(ports[i].last);
  }
  return out;
}

RuleParseResult parse_rule(std::string_view text) {
  RuleParseResult result;
  try {
    auto parsed = parse(text);
    if (auto* f = std::get_if<Fail>(&parsed)) {
      result.error = std::move(f->message);
    } else {
      result.rule = std::move(std::get<Rule>(parsed));
    }
  } catch (const ConfigError& e) {
    result.error = e.what();
  }
  return result;
}

Rule parse_rule_or_throw(std::string_view text) {
  auto result = parse_rule(text);
  if (!result.rule) throw ConfigError("rule " + show(text) + ": " + result.error);
  return std::move(*result.rule);
}

}  // namespace airlock::policy
