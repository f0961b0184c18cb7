#include "cli/egress.hpp"

#include <airlock/errors.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace airlock::cli {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::string error_of(std::string_view rule) {
  try {
    parse_egress_rule(rule);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Egress, RulesAirlockCannotHonourAreRefused) {
  EXPECT_THAT(error_of("allow@198.51.100.7:udp:123"), HasSubstr("rule 'allow@198.51.100.7:udp:123': airlock relays TCP"));
  EXPECT_THAT(error_of("allow@public:icmp"), HasSubstr("icmp is always dropped"));
  EXPECT_THAT(error_of("allow@"), HasSubstr("rule 'allow@'"));
  EXPECT_EQ(error_of("deny@198.51.100.7:udp"), "");  // a deny of what is dropped anyway is harmless
  EXPECT_EQ(error_of("allow@198.51.100.7"), "");     // any protocol: the TCP part is honoured
}

TEST(Egress, CommandLineRulesComeFirst) {
  auto p = make_egress_policy({"deny@198.51.100.7"}, {"allow@198.51.100.0/24:tcp"});
  ASSERT_EQ(p->configured_rules(), 2u);
  EXPECT_EQ(p->rules()[0].to_string(), "deny@198.51.100.7");
  const auto flow = [](const char* ip) { return policy::Flow{*IpAddress::parse(ip), policy::Protocol::kTcp, 443, {}}; };
  EXPECT_FALSE(p->decide(flow("198.51.100.7"), nullptr).allowed());
  EXPECT_TRUE(p->decide(flow("198.51.100.8"), nullptr).allowed());
}

TEST(Egress, TheGuardLetsThroughOnlyWhatAnAllowRuleOpens) {
  const auto defaults = guard_destinations(*make_egress_policy({}, {}));
  for (const char* cidr : {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "fc00::/7"})
    EXPECT_THAT(defaults, Contains(cidr));
  const auto opened = guard_destinations(*make_egress_policy({"allow@10.1.2.0/24:tcp:80", "deny@172.16.0.0/12"}, {}));
  EXPECT_THAT(opened, Not(Contains("10.0.0.0/8")));
  EXPECT_THAT(opened, Contains("172.16.0.0/12"));
  EXPECT_THAT(opened, Contains("169.254.0.0/16"));
  EXPECT_THAT(opened, Not(Contains("::ffff:0:0/96")));  // where ::ffff:10.1.2.x lives
  // Exactly the ranges that hold 10.1.2.0/24 as it is (IPv4 or IPv4-mapped) are opened; its
  // NAT64, 6to4 and IPv4-compatible forms stay blocked (an address allow names what it allows).
  std::vector<std::string> removed;
  for (const std::string& c : defaults)
    if (std::find(opened.begin(), opened.end(), c) == opened.end()) removed.push_back(c);
  EXPECT_EQ(removed, (std::vector<std::string>{"10.0.0.0/8", "::ffff:0:0/96", "::ffff:10.0.0.0/104"}));
  for (const char* form : {"64:ff9b::a00:0/104", "2002:a00::/24", "::10.0.0.0/104", "64:ff9b::a9fe:0/112",
                           "2002:a9fe::/32", "::ffff:169.254.0.0/112", "64:ff9b:1::/48", "2001::/32", "fec0::/10"})
    EXPECT_THAT(opened, Contains(form));
}

TEST(Egress, TheGuardCoversTheIpv6FormsOfEveryBlockedIpv4Range) {
  const auto guard = guard_destinations(*make_egress_policy({}, {}));
  for (const std::string& text : guard) {
    auto range = policy::Cidr::parse(text);
    ASSERT_TRUE(range) << text;
    if (text.find(':') != std::string::npos) continue;  // IPv6 text (::ffff:0:0/96 parses as IPv4)
    const std::string mapped = "::ffff:" + range->network.to_string() + "/" + std::to_string(96 + range->prefix);
    EXPECT_THAT(guard, Contains(mapped));
    for (const policy::Cidr& form : policy::embedding_networks(*range)) EXPECT_THAT(guard, Contains(form.to_string()));
  }
  // This host's own addresses too, in every form.
  const auto policy = make_egress_policy({}, {});
  for (const IpAddress& host : policy->groups().host_addresses()) {
    if (!host.is_v4()) continue;
    EXPECT_THAT(guard, Contains(policy::Cidr::host(host).to_string()));
    for (const policy::Cidr& form : policy::embedding_networks(policy::Cidr::host(host)))
      EXPECT_THAT(guard, Contains(form.to_string()));
  }
  // An allow of the link-local group opens its forms; one of the NAT64 form alone opens only it.
  const auto ll = guard_destinations(*make_egress_policy({"allow@link-local:tcp:80"}, {}));
  EXPECT_THAT(ll, Not(Contains("64:ff9b::a9fe:0/112")));
  EXPECT_THAT(ll, Not(Contains("2002:a9fe::/32")));
  EXPECT_THAT(ll, Contains("64:ff9b::a00:0/104"));
  const auto one = guard_destinations(*make_egress_policy({"allow@[64:ff9b::a9fe:a9fe]:tcp:80"}, {}));
  EXPECT_THAT(one, Not(Contains("64:ff9b::a9fe:0/112")));
  EXPECT_THAT(one, Contains("2002:a9fe::/32"));
  EXPECT_THAT(one, Contains("169.254.0.0/16"));
}

}  // namespace
}  // namespace airlock::cli
