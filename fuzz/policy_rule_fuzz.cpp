// libFuzzer target for the one-line egress rule syntax.
//
// Input: a rule text. Properties checked (trap on failure): no crash or sanitizer report; the
// parser either returns a rule or a non-empty error; a parsed rule's canonical text parses to an
// equal rule and prints the same text again; decisions over the rule never crash. IPv4 inside
// IPv6 (issue 12, item 2): with any rule, no default rule allows an IPv6 form of the metadata
// address; the input's first 16 bytes, read as an IPv6 address, are in every group one of their
// embedded IPv4 readings is in and then never public, and a CIDR deny that the address reaches
// (itself or a reading) denies it, in connections and DNS answers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"
#include "policy/rule.hpp"

namespace {

using namespace airlock;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

class NoPins : public secrets::PinQuery {
 public:
  bool pinned(const IpAddress&, const HostPattern& p) const override { return p.matches("api.example.com"); }
};

}  // namespace

// The input's first 16 bytes as an IPv6 address (any input: rule texts never start like an
// embedding prefix): group membership follows every embedded reading, and a CIDR deny covers
// what reaches its range.
void check_embedded(const std::uint8_t* data, std::size_t size) {
  static const policy::Policy deny = policy::Policy::from_text(
      std::vector<std::string>{"deny@10.0.0.0/8", "deny@169.254.169.254", "allow@[64:ff9b::/96]", "allow@[2002::/16]",
                               "allow@[2001::/32]", "allow@[::/96]", "allow@[64:ff9b:1::/48]"},
      {*IpAddress::parse("192.0.2.53")});
  IpAddress v6;
  v6.family = IpAddress::Family::kV6;
  for (std::size_t i = 0; i < v6.bytes.size() && i < size; ++i) v6.bytes[i] = data[i];
  const policy::EmbeddedIpv4 readings = policy::embedded_ipv4(v6);
  check(readings.count <= readings.readings.size());
  const auto& groups = deny.groups();
  for (const IpAddress& r : readings) {
    check(r.is_v4());
    for (auto g : {policy::Group::kPrivate, policy::Group::kLoopback, policy::Group::kLinkLocal,
                   policy::Group::kMetadata, policy::Group::kMulticast, policy::Group::kHost}) {
      if (groups.contains(g, r)) {
        check(groups.contains(g, v6));
        check(!groups.contains(policy::Group::kPublic, v6));
      }
    }
    if (policy::is_reserved(r)) check(policy::is_reserved(v6));
  }
  const bool to_ten = policy::reaches(*policy::Cidr::parse("10.0.0.0/8"), v6);
  const bool to_metadata = policy::reaches(*policy::Cidr::parse("169.254.169.254"), v6);
  if (to_ten || to_metadata) {
    check(!deny.decide(policy::Flow{v6, policy::Protocol::kTcp, 443, {}}, nullptr).allowed());
    check(!deny.answer_address_allowed(v6));
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_embedded(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const policy::RuleParseResult result = policy::parse_rule(text);
  if (!result.rule) {
    check(!result.error.empty());
    return 0;
  }
  check(result.error.empty());
  const std::string canonical = result.rule->to_string();
  const policy::RuleParseResult again = policy::parse_rule(canonical);
  check(again.rule.has_value());
  check(*again.rule == *result.rule);
  check(again.rule->to_string() == canonical);

  const policy::Policy p({*result.rule}, {*IpAddress::parse("192.0.2.53")});
  const NoPins pins;
  for (const char* dst : {"10.0.0.1", "8.8.8.8", "169.254.169.254", "2001:db8::1", "::ffff:127.0.0.1"}) {
    for (auto proto : {policy::Protocol::kTcp, policy::Protocol::kUdp, policy::Protocol::kIcmp}) {
      (void)p.decide(policy::Flow{*IpAddress::parse(dst), proto, 443, "api.example.com"}, &pins);
      (void)p.decide(policy::Flow{*IpAddress::parse(dst), proto, 53, {}}, &pins);
    }
    (void)p.answer_address_allowed(*IpAddress::parse(dst));
  }
  (void)p.denies_domain("api.example.com");

  // No default rule lets a metadata form through, whatever the configured rule.
  for (const char* dst : {"64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::a9fe:a9fe", "64:ff9b:1:a9fe:a9:fe00::",
                          "2001:0:a9fe:a9fe::", "2001:0:808:808::5601:5601"}) {
    const policy::Decision d = p.decide(policy::Flow{*IpAddress::parse(dst), policy::Protocol::kTcp, 80, {}}, &pins);
    check(!d.allowed() || d.rule < p.configured_rules());
    check(p.groups().contains(policy::Group::kMetadata, *IpAddress::parse(dst)));
  }

  return 0;
}
