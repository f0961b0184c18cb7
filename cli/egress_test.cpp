#include "cli/egress.hpp"

#include <airlock/errors.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  EXPECT_EQ(opened.size() + 2, defaults.size());
}

}  // namespace
}  // namespace airlock::cli
