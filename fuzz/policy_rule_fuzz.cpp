// libFuzzer target for the one-line egress rule syntax.
//
// Input: a rule text. Properties checked (trap on failure): no crash or sanitizer report; the
// parser either returns a rule or a non-empty error; a parsed rule's canonical text parses to an
// equal rule and prints the same text again; decisions over the rule never crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
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
  return 0;
}
